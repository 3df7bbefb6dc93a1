"""Addresses of the PTF topology: a client behind port 1, a real server behind port 2, a third
network behind port 3, the switch's virtual service (VIP) and its own addresses."""

IP_TCP = 6

CLIENT_PORT, SERVER_PORT, OTHER_PORT = 1, 2, 3

CLIENT_MAC, CLIENT_IP = "02:00:00:00:01:0a", "10.0.1.10"
CLIENT2_IP = "10.0.1.11"
SERVER_MAC, SERVER_IP = "02:00:00:00:02:14", "10.0.2.20"
SERVER_PORT_NO = 8080
OTHER_MAC = "02:00:00:00:03:1e"

SW_MAC = {1: "02:00:00:00:00:01", 2: "02:00:00:00:00:02", 3: "02:00:00:00:00:03"}
GW_IP = {1: "10.0.1.1", 2: "10.0.2.1", 3: "10.0.3.1"}

VIP, VIP_PORT = "10.0.0.100", 80
SNAT_IP = "10.0.2.1"  # the switch's address towards the servers

# packet_in.reason (host/p4cs/constants.py)
REASON_VIP_MISS = 1
REASON_BACKEND_MISS = 2
REASON_LOCAL = 3
REASON_FLOW_END = 4
REASON_IP_EXCEPTION = 5
REASON_ARP = 6

FLOW_END_SESSION = 1  # clone / mirror session of FIN/RST copies (P4CS_FLOW_END_SESSION)
