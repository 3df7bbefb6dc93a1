/* SPDX-License-Identifier: Apache-2.0
 *
 * Ports: parse --port arguments, open the kernel-facing file descriptors and write the SWX
 * I/O spec ("iospec") that rte_swx_pipeline_build_from_lib() reads.
 *
 * SWX input port N writes N into m.port_in, so input port numbers must equal P4 port
 * numbers: a port without an input side (sink, unnamed number) gets an idle ring as its input,
 * and the input count is padded with idle rings to a power of two (the pipeline requires it).
 */
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>

#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>
#include <rte_errno.h>

#include "swxd.h"

#define MEMPOOL_NAME "MEMPOOL0"
#define SUPER_POOL_NAME "MEMPOOL_GSO"
#define SUPER_POOL_SIZE 511   /* mbufs of 64 KiB: 32 MiB */
#define IDLE_RING_NAME "SWXD_IDLE"
#define FD_MTU 2000   /* smallest frame size the ports read (fits the default mbuf) */
#define BURST 32

/* "P=afpacket:IF" | "P=afxdp:IF" | "P=tap:NAME" | "P=source:FILE.pcap[:loop]" | "P=sink[:FILE.pcap]" */
int ports_parse(const char *spec)
{
	char buf[512], *eq, *kind, *arg, *end;
	struct port_cfg *pc;
	unsigned long n;

	if (strlen(spec) >= sizeof(buf))
		return -EINVAL;
	strcpy(buf, spec);
	eq = strchr(buf, '=');
	if (!eq)
		return -EINVAL;
	*eq = 0;
	n = strtoul(buf, &end, 0);
	if (!buf[0] || *end || n >= SWXD_MAX_PORTS)
		return -EINVAL;
	pc = &g.ports[n];
	if (pc->kind != PORT_UNSET)
		return -EEXIST;
	kind = eq + 1;
	arg = strchr(kind, ':');
	if (arg)
		*arg++ = 0;

	if (!strcmp(kind, "afpacket") || !strcmp(kind, "afxdp") || !strcmp(kind, "tap")) {
		if (!arg || !*arg || strlen(arg) >= IFNAMSIZ)
			return -EINVAL;
		pc->kind = !strcmp(kind, "afpacket") ? PORT_AFPACKET :
			   !strcmp(kind, "afxdp") ? PORT_AFXDP : PORT_TAP;
		strcpy(pc->arg, arg);
	} else if (!strcmp(kind, "source")) {
		char *loop;

		if (!arg || !*arg)
			return -EINVAL;
		loop = strrchr(arg, ':');
		if (loop && !strcmp(loop, ":loop")) {
			*loop = 0;
			pc->loop = 1;
		}
		if (strlen(arg) >= sizeof(pc->arg))
			return -EINVAL;
		pc->kind = PORT_SOURCE;
		strcpy(pc->arg, arg);
	} else if (!strcmp(kind, "sink")) {
		if (arg && strlen(arg) >= sizeof(pc->arg))
			return -EINVAL;
		pc->kind = PORT_SINK;
		strcpy(pc->arg, arg ? arg : "");
	} else {
		return -EINVAL;
	}
	if (n + 1 > g.n_ports)
		g.n_ports = n + 1;
	return 0;
}

static int if_mtu(const char *ifname, uint32_t *mtu)
{
	struct ifreq ifr;
	int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), rc = -1;

	if (s < 0)
		return -1;
	memset(&ifr, 0, sizeof(ifr));
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", ifname);
	if (ioctl(s, SIOCGIFMTU, &ifr) == 0 && ifr.ifr_mtu > 0) {
		*mtu = (uint32_t)ifr.ifr_mtu;
		rc = 0;
	}
	close(s);
	return rc;
}

/* An AF_PACKET socket bound to ifindex: protocol ETH_P_ALL receives, 0 only transmits (with
 * a virtio-net header in front of every frame if vnet). */
static int packet_socket(const char *ifname, unsigned int ifindex, uint16_t proto, int vnet)
{
	struct sockaddr_ll sll;
	int fd, one = 1, bufsz = 4 << 20;

	fd = socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(proto));
	if (fd < 0) {
		LOG_ERR("AF_PACKET socket: %s", strerror(errno));
		return -1;
	}
	memset(&sll, 0, sizeof(sll));
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(proto);
	sll.sll_ifindex = (int)ifindex;
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll)) < 0) {
		LOG_ERR("bind to %s: %s", ifname, strerror(errno));
		close(fd);
		return -1;
	}
	if (proto) {
		/* Without this the socket also sees every frame the pipeline transmits. */
		if (setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one)) < 0) {
			LOG_ERR("PACKET_IGNORE_OUTGOING on %s: %s", ifname, strerror(errno));
			close(fd);
			return -1;
		}
		/* Every frame comes with a virtio-net header telling partial checksums and
		 * super-frames apart (offload.c); before the receive ring, as the kernel wants. */
		if (setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof(one)) < 0) {
			LOG_ERR("PACKET_VNET_HDR on %s: %s", ifname, strerror(errno));
			close(fd);
			return -1;
		}
		setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bufsz, sizeof(bufsz));
	} else {
		/* Super-frames leave whole, their GSO and checksum state in the header. */
		if (vnet && setsockopt(fd, SOL_PACKET, PACKET_VNET_HDR, &one, sizeof(one)) < 0) {
			LOG_ERR("PACKET_VNET_HDR on %s: %s", ifname, strerror(errno));
			close(fd);
			return -1;
		}
		/* Transmit straight to the driver (veths have no queue to bypass anyway). */
		setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof(one));
		setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bufsz, sizeof(bufsz));
	}
	return fd;
}

/* Two sockets: the receive side carries virtio-net headers; the transmit side does too with
 * gso_pass (a zero header for an ordinary frame), else not. */
static int open_afpacket(struct port_cfg *pc)
{
	unsigned int ifindex = if_nametoindex(pc->arg);

	if (!ifindex) {
		LOG_ERR("interface %s: %s", pc->arg, strerror(errno));
		return -1;
	}
	if (if_mtu(pc->arg, &pc->mtu) < 0) {
		LOG_ERR("interface %s: MTU: %s", pc->arg, strerror(errno));
		return -1;
	}
	pc->fd = packet_socket(pc->arg, ifindex, ETH_P_ALL, 1);
	if (pc->fd < 0)
		return -1;
	pc->tx_fd = packet_socket(pc->arg, ifindex, 0, g.gso_pass);
	if (pc->tx_fd < 0) {
		close(pc->fd);
		pc->fd = -1;
		return -1;
	}
	return 0;
}

static int open_tap(const char *name)
{
	struct ifreq ifr;
	int fd, s;

	fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		LOG_ERR("/dev/net/tun: %s", strerror(errno));
		return -1;
	}
	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	snprintf(ifr.ifr_name, IFNAMSIZ, "%s", name);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		LOG_ERR("TUNSETIFF %s: %s", name, strerror(errno));
		close(fd);
		return -1;
	}
	/* Bring the device up; its addresses and routes are the caller's business. */
	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s >= 0) {
		if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
			ifr.ifr_flags |= IFF_UP;
			ioctl(s, SIOCSIFFLAGS, &ifr);
		}
		close(s);
	}
	return fd;
}

/* P4CS_SWXD_GSO: "pass" (default) or "cut", see offload.c. */
static int gso_mode(void)
{
	const char *v = getenv("P4CS_SWXD_GSO");

	if (!v || !strcmp(v, "pass"))
		g.gso_pass = 1;
	else if (!strcmp(v, "cut"))
		g.gso_pass = 0;
	else {
		LOG_ERR("P4CS_SWXD_GSO=%s: want pass or cut", v);
		return -EINVAL;
	}
	return 0;
}

int ports_open(void)
{
	uint32_t i, max_mtu = 0, data_room, n_afpacket = 0;

	if (gso_mode())
		return -EINVAL;

	if (g.cpu_port >= 0) {
		struct port_cfg *pc;

		if (g.cpu_port >= SWXD_MAX_PORTS)
			return -EINVAL;
		pc = &g.ports[g.cpu_port];
		if (pc->kind != PORT_UNSET) {
			LOG_ERR("--cpu-port %d is also given as --port", g.cpu_port);
			return -EINVAL;
		}
		pc->kind = PORT_CPU;
		if ((uint32_t)g.cpu_port + 1 > g.n_ports)
			g.n_ports = g.cpu_port + 1;
	}
	if (g.copy_fd >= 0) {
		/* The copy port: the first free number above the highest data port (never the
		 * CPU port). It is an ordinary SWX output port, so mirror sessions can name it. */
		uint32_t p = 0;

		for (i = 0; i < g.n_ports; i++)
			if (g.ports[i].kind != PORT_UNSET && g.ports[i].kind != PORT_CPU)
				p = i + 1;
		while (p < SWXD_MAX_PORTS && (g.ports[p].kind != PORT_UNSET || (int)p == g.cpu_port))
			p++;
		if (p >= SWXD_MAX_PORTS) {
			LOG_ERR("no free port number below %d for the copy port", SWXD_MAX_PORTS);
			return -EINVAL;
		}
		g.copy_port = (int)p;
		g.ports[p].kind = PORT_COPY;
		if (p + 1 > g.n_ports)
			g.n_ports = p + 1;
	}
	if (!g.n_ports) {
		LOG_ERR("no ports");
		return -EINVAL;
	}
	/* SWX's `drop` instruction transmits to the last output port: give it a sink of its own
	 * after every named port (else drops would leave on the highest data / CPU / copy port). */
	g.drop_port = g.n_ports;

	for (i = 0; i < g.n_ports; i++) {
		struct port_cfg *pc = &g.ports[i];

		pc->fd = pc->tx_fd = -1;
		switch (pc->kind) {
		case PORT_AFXDP: {
			char why[256];

			if (if_mtu(pc->arg, &pc->mtu) == 0 && afxdp_open(pc, why, sizeof(why)) == 0) {
				LOG_NOTE("port %u = afxdp:%s, mtu %u: %s mode, partial checksums completed "
					 "in the port", i, pc->arg, pc->mtu,
					 afxdp_zerocopy(pc->xsk) ? "zero-copy" : "copy");
				break;
			}
			if (!pc->mtu)
				snprintf(why, sizeof(why), "MTU: %s", strerror(errno));
			LOG_NOTE("port %u: no AF_XDP on %s (%s): AF_PACKET instead", i, pc->arg, why);
			pc->kind = PORT_AFPACKET;
		}
			/* fall through */
		case PORT_AFPACKET:
			open_afpacket(pc);
			break;
		case PORT_TAP:
			pc->fd = open_tap(pc->arg);
			if (pc->fd >= 0 && if_mtu(pc->arg, &pc->mtu) < 0)
				pc->mtu = ETH_DATA_LEN;
			break;
		case PORT_CPU:
		case PORT_COPY:
			pc->fd = pc->kind == PORT_CPU ? g.cpu_fd : g.copy_fd;
			if (fcntl(pc->fd, F_SETFL, fcntl(pc->fd, F_GETFL) | O_NONBLOCK) < 0) {
				LOG_ERR("--%s-fd %d: %s", pc->kind == PORT_CPU ? "cpu" : "copy", pc->fd,
					strerror(errno));
				pc->fd = -1;
			}
			break;
		default:
			continue;
		}
		if (pc->fd < 0)
			return -EIO;
		if (pc->tx_fd < 0)
			pc->tx_fd = pc->fd;
		if (pc->mtu > max_mtu)
			max_mtu = pc->mtu;
		n_afpacket += pc->kind == PORT_AFPACKET;
	}

	g.n_ports_in = 1;
	while (g.n_ports_in < g.n_ports)
		g.n_ports_in <<= 1;

	/* One mbuf holds one frame of the largest MTU (jumbo frames stay in one segment). */
	g.frame_max = max_mtu + ETH_HLEN + 8;   /* + two VLAN tags */
	if (g.frame_max < FD_MTU)
		g.frame_max = FD_MTU;
	data_room = RTE_PKTMBUF_HEADROOM + g.frame_max;
	if (data_room > UINT16_MAX) {
		LOG_ERR("MTU %u too large for an mbuf (at most %u)", max_mtu,
			UINT16_MAX - RTE_PKTMBUF_HEADROOM - ETH_HLEN - 8);
		return -EINVAL;
	}
	if (data_room < RTE_MBUF_DEFAULT_BUF_SIZE)
		data_room = RTE_MBUF_DEFAULT_BUF_SIZE;
	g.pool = rte_pktmbuf_pool_create(MEMPOOL_NAME, 16383, 256, 0, (uint16_t)data_room,
					 SOCKET_ID_ANY);
	if (!g.pool) {
		LOG_ERR("mempool: %s", rte_strerror(rte_errno));
		return -ENOMEM;
	}
	/* Super-frames (up to 64 KiB) crossing the pipeline whole: a pool of their own. A
	 * super-frame that finds it empty, or does not fit, is cut in the port instead. */
	if (g.gso_pass && n_afpacket) {
		g.super_pool = rte_pktmbuf_pool_create(SUPER_POOL_NAME, SUPER_POOL_SIZE, 32, 0,
						       UINT16_MAX, SOCKET_ID_ANY);
		if (!g.super_pool) {
			LOG_ERR("mempool for super-frames: %s", rte_strerror(rte_errno));
			return -ENOMEM;
		}
	}
	return 0;
}

static int port_has_input(const struct port_cfg *pc)
{
	return pc->kind == PORT_AFPACKET || pc->kind == PORT_AFXDP || pc->kind == PORT_TAP ||
	       pc->kind == PORT_CPU || pc->kind == PORT_SOURCE;
}

int ports_write_iospec(const char *path)
{
	FILE *f = fopen(path, "w");
	uint32_t i, n_idle = 0;

	if (!f)
		return -errno;
	fprintf(f, "; generated by p4cs-swxd\n");
	for (i = 0; i < g.n_ports_in; i++) {
		const struct port_cfg *pc = i < g.n_ports ? &g.ports[i] : NULL;

		if (pc && port_has_input(pc)) {
			if (pc->kind == PORT_SOURCE)
				/* "loop 0" replays forever, "loop 1" reads the file once. */
				fprintf(f, "port in %u source mempool %s file %s loop %d packets 0\n",
					i, MEMPOOL_NAME, pc->arg, pc->loop ? 0 : 1);
			else
				fprintf(f, "port in %u fd %d mtu %u mempool %s bsz %d\n",
					i, pc->fd, g.frame_max, MEMPOOL_NAME, BURST);
			continue;
		}
		/* One idle ring serves as every padding input: nothing ever enqueues to it. */
		if (!n_idle++ &&
		    !rte_ring_create(IDLE_RING_NAME, 64, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ)) {
			fclose(f);
			return -ENOMEM;
		}
		fprintf(f, "port in %u ring %s bsz %d\n", i, IDLE_RING_NAME, BURST);
	}
	for (i = 0; i < g.n_ports; i++) {
		const struct port_cfg *pc = &g.ports[i];

		if (pc->tx_fd >= 0)
			fprintf(f, "port out %u fd %d bsz %d\n", i, pc->tx_fd, BURST);
		else if (pc->kind == PORT_SINK && pc->arg[0])
			fprintf(f, "port out %u sink file %s\n", i, pc->arg);
		else
			fprintf(f, "port out %u sink file none\n", i);
	}
	fprintf(f, "port out %u sink file none\n", g.drop_port);
	if (fclose(f))
		return -errno;
	return 0;
}

void ports_close(void)
{
	uint32_t i;

	for (i = 0; i < g.n_ports; i++) {
		struct port_cfg *pc = &g.ports[i];

		if (pc->kind == PORT_CPU || pc->kind == PORT_COPY)
			continue;
		if (pc->kind == PORT_AFXDP) {
			afxdp_close(pc);
			continue;
		}
		if (pc->tx_fd >= 0 && pc->tx_fd != pc->fd)
			close(pc->tx_fd);
		if (pc->fd >= 0)
			close(pc->fd);
	}
}
