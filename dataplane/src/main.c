/* SPDX-License-Identifier: Apache-2.0
 *
 * p4cs-swxd: the embedded DPDK SWX target's data-plane daemon (docs/interfaces.md section 1).
 *
 *   p4cs-swxd --spec FILE.spec --workdir DIR --ctl-fd N --cpu-fd N --cpu-port P [--copy-fd N]
 *             [--spread-fd CPU:COPY]...  (spare channel pairs for the workers, spread.c)
 *             [--port P=afxdp:IF | P=afpacket:IF | P=tap:NAME | P=source:FILE.pcap[:loop]
 *                     | P=sink[:FILE]]...
 *             [--learner-timeouts S1,S2,...] [--prefault] [--eal "EAL ARGS"] [--log-level N]
 *             [--dpdk-headers DIR] [--bench-packets N]
 *
 * Main loop (one thread): run the pipeline for a quantum of instructions, flush the outputs,
 * serve control messages and the sweeper at a packet boundary, and block in epoll_wait on every
 * input fd + the control fd whenever a quantum took no packet (no busy polling when idle).
 * Empty fd ports are not polled until epoll says they are readable (fastio.c).
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <rte_cycles.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_swx_pipeline.h>

#include "swxd.h"

#define DEFAULT_EAL "-l 0 --no-huge --no-pci --no-shconf -m 2048 --log-level=*:notice"
#define RUN_QUANTUM 1024         /* pipeline instructions per pass under load */
#define RUN_QUANTUM_IDLE 64      /* ... after a wake-up or a pass that took no packet */
#define RUN_CHUNK 64             /* a pass ends early, at a chunk boundary, once every input
                                  * port is dry and every packet has left the pipeline */
#define CTL_POLL_PASSES 16       /* under load, look at the control socket every this many passes */
#define MAX_WAIT_MS 100

struct swxd g = {
	.ctl_fd = -1,
	.cpu_fd = -1,
	.cpu_port = -1,
	.copy_fd = -1,
	.copy_port = -1,
	.log_level = 1,
	.epfd = -1,
};

static void usage(FILE *f)
{
	fprintf(f,
		"usage: p4cs-swxd --spec FILE.spec --workdir DIR --ctl-fd N [--cpu-fd N --cpu-port P]\n"
		"                 [--copy-fd N] [--spread-fd CPU:COPY]...\n"
		"                 [--port P=afxdp:IF|P=afpacket:IF|P=tap:NAME|P=source:FILE.pcap[:loop]\n"
		"                         |P=sink[:FILE.pcap]]...\n"
		"                 [--learner-timeouts S1,S2,...] [--prefault] [--eal \"EAL ARGS\"]\n"
		"                 [--log-level N]\n"
		"                 [--dpdk-headers DIR] [--bench-packets N]\n"
		"default EAL arguments: " DEFAULT_EAL "\n");
}

static void on_signal(int sig)
{
	(void)sig;
	g.stop = 1;
}

static int parse_int(const char *s, long min, long max, long *v)
{
	char *end;

	errno = 0;
	*v = strtol(s, &end, 0);
	return (!*s || *end || errno || *v < min || *v > max) ? -1 : 0;
}

/* --dpdk-headers, $P4CS_DPDK_HEADERS, <exe>/../../build/dpdk-headers, build-time default */
static const char *find_headers(const char *opt)
{
	static char path[PATH_MAX];
	char exe[PATH_MAX];
	ssize_t n;
	struct stat st;

	if (opt)
		return opt;
	if (getenv("P4CS_DPDK_HEADERS"))
		return getenv("P4CS_DPDK_HEADERS");
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n > 0) {
		exe[n] = 0;
		snprintf(path, sizeof(path), "%s/../../build/dpdk-headers/rte_swx_pipeline_internal.h",
			 dirname(exe));
		if (stat(path, &st) == 0) {
			char *real;

			*strrchr(path, '/') = 0;
			real = realpath(path, NULL);
			return real ? real : path;
		}
	}
	return P4CS_DPDK_HEADERS_DEFAULT;
}

static int parse_args(int argc, char **argv)
{
	static const struct option opts[] = {
		{"spec", required_argument, NULL, 's'},
		{"workdir", required_argument, NULL, 'w'},
		{"ctl-fd", required_argument, NULL, 'c'},
		{"cpu-fd", required_argument, NULL, 'f'},
		{"cpu-port", required_argument, NULL, 'P'},
		{"copy-fd", required_argument, NULL, 'C'},
		{"spread-fd", required_argument, NULL, 'S'},
		{"port", required_argument, NULL, 'p'},
		{"learner-timeouts", required_argument, NULL, 't'},
		{"prefault", no_argument, NULL, 'F'},
		{"eal", required_argument, NULL, 'e'},
		{"log-level", required_argument, NULL, 'l'},
		{"dpdk-headers", required_argument, NULL, 'H'},
		{"bench-packets", required_argument, NULL, 'b'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *headers = NULL;
	long v;
	int c, rc;

	g.eal_args = DEFAULT_EAL;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's': g.spec_path = optarg; break;
		case 'w': g.workdir = optarg; break;
		case 'F': g.prefault = 1; break;
		case 'e': g.eal_args = optarg; break;
		case 'H': headers = optarg; break;
		case 'c':
			if (parse_int(optarg, 0, INT_MAX, &v))
				goto bad;
			g.ctl_fd = (int)v;
			break;
		case 'f':
			if (parse_int(optarg, 0, INT_MAX, &v))
				goto bad;
			g.cpu_fd = (int)v;
			break;
		case 'C':
			if (parse_int(optarg, 0, INT_MAX, &v))
				goto bad;
			g.copy_fd = (int)v;
			break;
		case 'S':
			if (spread_fds_parse(optarg))
				goto bad;
			break;
		case 'P':
			if (parse_int(optarg, 0, SWXD_MAX_PORTS - 1, &v))
				goto bad;
			g.cpu_port = (int)v;
			break;
		case 'l':
			if (parse_int(optarg, 0, 9, &v))
				goto bad;
			g.log_level = (int)v;
			break;
		case 'b':
			if (parse_int(optarg, 1, LONG_MAX, &v))
				goto bad;
			g.bench_packets = (uint64_t)v;
			break;
		case 'p':
			rc = ports_parse(optarg);
			if (rc) {
				fprintf(stderr, "p4cs-swxd: bad --port '%s': %s\n", optarg, strerror(-rc));
				return -1;
			}
			break;
		case 't': {
			char *s = strdup(optarg), *save = NULL, *t;

			for (t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
				if (g.n_learner_timeouts == SWXD_MAX_TIMEOUTS ||
				    parse_int(t, 1, UINT32_MAX, &v)) {
					free(s);
					goto bad;
				}
				g.learner_timeouts[g.n_learner_timeouts++] = (uint32_t)v;
			}
			free(s);
			break;
		}
		case 'h':
			usage(stdout);
			exit(0);
		default:
			goto bad;
		}
	}
	if (optind != argc || !g.spec_path || !g.workdir || g.ctl_fd < 0 ||
	    ((g.cpu_fd < 0) != (g.cpu_port < 0)))
		goto bad;
	g.headers_dir = find_headers(headers);
	return 0;
bad:
	usage(stderr);
	return -1;
}

/*
 * EAL pins the main lcore's thread to its CPU (`-l 0`: CPU 0). The daemon's one thread then
 * waits for that CPU whenever anything else runs there (the endpoints, every other daemon of
 * the host), even with other CPUs idle (docs/benchmarks.md, "Keep-alive latency tail"). With
 * the default EAL arguments the thread gets back the affinity it was started with (a `taskset`
 * of the caller still applies); EAL arguments of the caller (--eal) keep EAL's placement.
 */
static int eal_init(void)
{
	char *s = strdup(g.eal_args), *save = NULL, *t;
	char *argv[64];
	int argc = 0, keep = !strcmp(g.eal_args, DEFAULT_EAL);
	cpu_set_t started;

	if (keep && sched_getaffinity(0, sizeof(started), &started) < 0)
		keep = 0;

	argv[argc++] = "p4cs-swxd";
	for (t = strtok_r(s, " \t", &save); t && argc < 63; t = strtok_r(NULL, " \t", &save))
		argv[argc++] = t;
	argv[argc] = NULL;
	/* rte_eal_init() permutes argv; the strings stay in s for the life of the process. */
	if (rte_eal_init(argc, argv) < 0) {
		fprintf(stderr, "p4cs-swxd: EAL init failed (%s): %s\n", g.eal_args,
			rte_strerror(rte_errno));
		return -1;
	}
	if (keep && sched_setaffinity(0, sizeof(started), &started) < 0)
		LOG_ERR("cannot restore the CPU affinity after EAL init: %s", strerror(errno));
	return 0;
}

static int epoll_setup(void)
{
	struct epoll_event ev;
	uint32_t i;

	g.epfd = epoll_create1(EPOLL_CLOEXEC);
	if (g.epfd < 0)
		return -errno;
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.fd = g.ctl_fd;
	if (epoll_ctl(g.epfd, EPOLL_CTL_ADD, g.ctl_fd, &ev) < 0)
		return -errno;
	for (i = 0; i < g.n_ports; i++) {
		/* The copy port is output only: the other end never writes into it. */
		if (g.ports[i].fd < 0 || g.ports[i].kind == PORT_COPY)
			continue;
		ev.data.fd = g.ports[i].fd;
		if (epoll_ctl(g.epfd, EPOLL_CTL_ADD, g.ports[i].fd, &ev) < 0)
			return -errno;
	}
	return 0;
}

/* Serves waiting control messages. Returns -1 when the control socket was closed. */
static int serve_control(void)
{
	int i, rc;

	for (i = 0; i < 64; i++) {
		rc = ctl_handle();
		if (rc <= 0)
			return rc;
	}
	return 0;
}

static void serve_sweeper(void)
{
	if (rte_get_tsc_cycles() < g.next_sweep_tsc)
		return;
	if (pipeline_quiesce() == 0)
		sweeper_tick(0);
	pipeline_resume();
	ctl_flush_pending();
}

/* One epoll_wait: re-opens the input ports whose fds are readable again (fastio.c) and serves
 * the control socket if it is. Returns -1 when the control socket was closed or on error. */
static int poll_events(int timeout_ms)
{
	struct epoll_event ev[SWXD_MAX_PORTS + 1];
	int n, i, ctl = 0;

	n = epoll_wait(g.epfd, ev, SWXD_MAX_PORTS + 1, timeout_ms);
	if (n < 0) {
		if (errno == EINTR)
			return 0;
		LOG_ERR("epoll_wait: %s", strerror(errno));
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (ev[i].data.fd == g.ctl_fd)
			ctl = 1;
		else
			fastio_mark_ready(ev[i].data.fd);
	}
	if (ctl && serve_control() < 0)
		return -1;
	return 0;
}

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* --bench-packets: the clock starts at the first transmitted packet (after the caller's
 * control messages took effect) and stops once N more went out. Returns 1 when done. */
static int bench_check(void)
{
	static uint64_t t0, tx0, cpu0;
	static int started;
	uint64_t tx = pipeline_tx_packets();

	if (!started) {
		if (tx) {
			started = 1;
			t0 = rte_get_tsc_cycles();
			tx0 = tx;
			cpu0 = thread_cpu_ns();
		}
		return 0;
	}
	if (tx - tx0 >= g.bench_packets) {
		double s = (double)(rte_get_tsc_cycles() - t0) / (double)g.hz;
		double cpu = (double)(thread_cpu_ns() - cpu0) / 1e9;
		uint64_t n = tx - tx0, rxs, txs;

		fastio_stats(&rxs, &txs);
		printf("{\"packets\":%llu,\"seconds\":%.6f,\"pps\":%.0f,\"cpu_seconds\":%.6f,"
		       "\"pps_per_cpu_second\":%.0f,\"rx_syscalls\":%llu,\"tx_syscalls\":%llu}\n",
		       (unsigned long long)n, s, n / s, cpu, cpu > 0 ? n / cpu : 0.0,
		       (unsigned long long)rxs, (unsigned long long)txs);
		fflush(stdout);
		return 1;
	}
	return 0;
}

/*
 * The loop: run the pipeline for a quantum of instructions and flush the outputs. Then
 *  - a pass that took no packet, or after which every input port is dry (nothing can arrive
 *    without epoll saying so), and that left every pipeline thread at a packet boundary, blocks
 *    in epoll_wait on the control fd and every input fd, at most until the sweeper's next slice;
 *  - under load, one non-blocking epoll_wait per pass while some fd port is dry (fastio.c:
 *    it is not read again until readable), else every CTL_POLL_PASSES passes, serves control
 *    messages at a packet boundary, and the sweeper when its slice is due.
 */
static int run(void)
{
	uint64_t passes = 0;
	int idle = 1;

	while (!g.stop) {
		uint64_t rx0 = g.rx_count;
		uint32_t n = 0, quantum = idle ? RUN_QUANTUM_IDLE : RUN_QUANTUM;

		/* In chunks: once every input is dry and every packet is out of the pipeline the
		 * rest of the quantum would only be rx attempts on empty ports. */
		do {
			rte_swx_pipeline_run(g.p, RUN_CHUNK);
			n += RUN_CHUNK;
		} while (n < quantum && !(fastio_all_dry() && pipeline_threads_idle()));
		rte_swx_pipeline_flush(g.p);
		sweeper_flush_ended();
		idle = g.rx_count == rx0 && !fastio_injected();
		passes++;

		if ((idle || fastio_all_dry()) && pipeline_threads_idle()) {
			uint64_t wait = sweeper_next_timeout_ms();

			if (wait > MAX_WAIT_MS)
				wait = MAX_WAIT_MS;
			if (ctl_pending_bytes() && wait > 10)
				wait = 10;   /* retry unsent notifications soon */
			if (wait > 1 && fastio_tx_unsent())
				wait = 1;    /* frames wait on an AF_XDP transmit ring: kick again */
			if (poll_events((int)wait) < 0)
				break;
			serve_sweeper();
			idle = 1;
		} else if (fastio_n_dry() || passes % CTL_POLL_PASSES == 0) {
			if (poll_events(0) < 0)
				break;
			serve_sweeper();
		}
		if (g.bench_packets && passes % CTL_POLL_PASSES == 0 && bench_check())
			break;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	int rc;

	if (parse_args(argc, argv))
		return 2;
	if (mkdir(g.workdir, 0755) < 0 && errno != EEXIST) {
		fprintf(stderr, "p4cs-swxd: workdir %s: %s\n", g.workdir, strerror(errno));
		return 1;
	}
	if (eal_init())
		return 1;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;   /* no SA_RESTART: epoll_wait returns EINTR */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	rc = ports_open();
	if (!rc)
		rc = pipeline_build();
	if (!rc)
		rc = pipeline_describe();
	if (!rc)
		rc = mirror_init();
	if (!rc)
		rc = learner_apply_timeouts();
	if (!rc && g.prefault) {
		uint64_t t0 = rte_get_tsc_cycles(), bytes;
		int prc = learner_prefault(&bytes);

		if (prc)
			LOG_ERR("prefault: %s", strerror(-prc));
		else
			LOG_INFO("prefault: %lu MiB of learner tables resident in %.0f ms",
				 (unsigned long)(bytes >> 20),
				 (double)(rte_get_tsc_cycles() - t0) * 1e3 / rte_get_tsc_hz());
	}
	if (!rc)
		rc = epoll_setup();
	if (!rc)
		rc = pipeline_install_rx_shims();
	if (rc) {
		LOG_ERR("startup failed: %s", strerror(rc < 0 ? -rc : rc));
		return 1;
	}
	sweeper_init();
	LOG_INFO("running: %u ports (%u inputs), %u tables, %u learners", g.n_ports, g.n_ports_in,
		 g.info.n_tables, g.info.n_learners);

	rc = run();
	ports_close();
	rte_eal_cleanup();
	return rc;
}
