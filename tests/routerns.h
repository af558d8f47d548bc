/*
 * A home router in network namespaces, for the tests of portfwd's router
 * mappings (PCP, NAT-PMP, UPnP-IGD): the real miniupnpd between a WAN
 * client and the LAN host portfwd runs on (root only).
 *
 *   WAN client          router (nftables, ip_forward)           LAN host
 *   [wan] eth0 ------ wan0 [rtr] lan0 ----------------------- eth0 [lan]
 *   11.0.0.2/24       11.0.0.1/24   192.168.77.1/24       192.168.77.2/24
 *                     (or 100.64.0.1/24: carrier-grade NAT)  default via .1
 *
 * The router forwards LAN to WAN with masquerade, and WAN to LAN only what
 * miniupnpd maps: its nftables backend writes DNAT rules into the chain
 * prerouting_miniupnpd and accept rules into miniupnpd, both in
 * `table inet filter`, which h_router_make lays out. miniupnpd answers
 * UPnP (SSDP on lan0, HTTP on H_ROUTER_HTTP_PORT), NAT-PMP and PCP (UDP
 * 5351) on the LAN side only.
 *
 * Use: h_router_tcase() (or h_router_cgnat_tcase()) makes the namespaces
 * once for a test case, in the parent, and deletes them after its last
 * test; before each test the router is reset (miniupnpd stopped, every
 * mapping gone). A test starts with `if (!h_router_ready(&h_rt)) return;`
 * and then h_router_start(&h_rt). portfwd runs on the LAN host with
 * h_daemon_netns = h_rt.lan. Every wait here is bounded.
 */
#ifndef PORTFWD_TEST_ROUTERNS_H
#define PORTFWD_TEST_ROUTERNS_H

#include <check.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/types.h>

/* The interfaces: the router's WAN and LAN sides, and the one interface of
 * the WAN client and of the LAN host. */
#define H_ROUTER_WAN_IF "wan0"
#define H_ROUTER_LAN_IF "lan0"
#define H_ROUTER_HOST_IF "eth0"
/* miniupnpd's HTTP port (descriptions and SOAP), on the router's LAN address. */
#define H_ROUTER_HTTP_PORT 5000

struct h_router {
	bool ok;   /* made */
	bool skip; /* not made, and rightly so: not root, or miniupnpd or nft missing */
	char wan[32], rtr[32], lan[32];    /* namespace names, from the pid */
	char wan_addr[INET_ADDRSTRLEN];    /* the router's WAN address, e.g. 11.0.0.1 */
	char client_addr[INET_ADDRSTRLEN]; /* the WAN client, e.g. 11.0.0.2 */
	char gw_addr[INET_ADDRSTRLEN];     /* the router's LAN address, 192.168.77.1 */
	char lan_addr[INET_ADDRSTRLEN];    /* the LAN host (portfwd's), 192.168.77.2 */
	char root_desc[64];                /* UPnP root description, for `upnpc -u` */
	char dir[64];                      /* temporary: ruleset.nft, miniupnpd.conf, .log, .pid, leases */
	char conf[96], log[96], pidfile[96], leases[96];
	/*
	 * Set before h_router_start: make miniupnpd report its WAN address and
	 * map even when that address is private or shared (100.64.0.0/10),
	 * as a router behind a carrier's NAT that says so does. miniupnpd
	 * 2.3.1 refuses both by itself (and ext_ip= with such an address);
	 * it takes its address from STUN without that check, so this runs a
	 * STUN responder on the WAN client (UDP 3478) that answers with the
	 * address it sees, and miniupnpd asks it (ext_perform_stun).
	 */
	bool report_private;
	/* Set before h_router_start: more miniupnpd.conf lines (each ending in
	 * a newline), put before the permission rules: e.g. "ext_ip=11.0.0.9\n",
	 * the public address a router behind another NAT is told it has. */
	const char *extra_conf;
	/* Set before h_router_start: a router that speaks UPnP-IGD only (no
	 * NAT-PMP, no PCP: nothing listens on its port 5351). */
	bool no_natpmp;
	pid_t miniupnpd; /* running, or 0 */
	char why[384];   /* what the last call that failed says */
	/* the STUN responder (a thread of the process that started it) */
	int stun_fd;
	pthread_t stun_thread;
	atomic_bool stun_stop;
};

/*
 * Makes the three namespaces, their veth pairs and addresses (the router's
 * WAN side at WAN_CIDR, e.g. "11.0.0.1/24" or "100.64.0.1/24"; the client
 * takes .2 of it), the LAN host's default route through the router,
 * ip_forward and the nftables ruleset (in R->dir/ruleset.nft). Any
 * a.b.c.1/24 will do: 10.0.0.1/24 is a router behind another home router.
 * Returns R->ok; why not in R->why (on stderr too, unless R->skip: not
 * root, or miniupnpd or nft missing).
 */
bool h_router_make(struct h_router *r, const char *wan_cidr);

/* In a test: true if R is there to use. False, and the test is skipped (said
 * on stderr), when not root or the tools are missing; as root with the tools
 * there, a topology that could not be made fails the test. */
bool h_router_ready(const struct h_router *r);

/*
 * Writes miniupnpd.conf and starts miniupnpd in the router namespace
 * (foreground, debug log appended to R->log), with UPnP, NAT-PMP and PCP,
 * then waits (10 s at most) until it answers a NAT-PMP request and its
 * HTTP port takes connections. Mappings in R->leases (a stop without
 * forget keeps them) come back. Returns false, why in R->why, if it exits
 * or does not answer in time.
 */
bool h_router_start(struct h_router *r);

/*
 * Stops miniupnpd (SIGTERM, SIGKILL after 5 s), and whatever else runs in
 * the router's namespace (a miniupnpd of a test that ended without stopping
 * it, going by its parent-death signal). By itself that leaves its
 * nftables rules and lease file: the ports it mapped are still forwarded,
 * and a start takes them up again (NAT-PMP and PCP epochs restart at 0).
 * FORGET: also what a reboot loses: the rules, the lease file and the
 * connection tracking table (connections through a mapping are cut).
 */
void h_router_stop(struct h_router *r, bool forget);

/*
 * The router's mapping of PROTO ("tcp" or "udp") external port EXT_PORT,
 * read from its nftables ruleset: 1 when it forwards that port (a DNAT rule
 * and an accept rule for it), its target in TO ("192.168.77.2:7001") if
 * TO is not NULL; 0 when not; -1 when the ruleset cannot be read (R->why).
 */
int h_router_mapping(struct h_router *r, const char *proto, unsigned ext_port, char *to, size_t to_len);

/* h_router_mapping() == 1. */
bool h_router_has_mapping(struct h_router *r, const char *proto, unsigned ext_port);

/* How many ports the router maps now (DNAT rules); -1 if unknown. */
int h_router_mapping_count(struct h_router *r);

/* Polls (every 50 ms, SECONDS at most) until the mapping is there (WANT
 * true) or gone (false); returns whether it got there. */
bool h_router_wait_mapping(struct h_router *r, const char *proto, unsigned ext_port, bool want,
			   double seconds);

/*
 * From the WAN client to the router's WAN address and PORT: TCP connects
 * and sends 64 KiB that must come back exactly (an echo) before EOF; UDP
 * sends a datagram of 1000 bytes (again every 250 ms until an answer) that
 * must come back exactly. True if they did within SECONDS; false at once
 * when refused; why in R->why. The calling thread's namespace is kept.
 */
bool h_router_wan_exchange(struct h_router *r, const char *proto, unsigned port, double seconds);

/* PCP (RFC 6887) MAP's answer. */
struct h_pcp_reply {
	int result;                       /* 0 SUCCESS, 2 NOT_AUTHORIZED, 8 NO_RESOURCES, ... */
	unsigned lifetime, epoch;
	unsigned ext_port;                /* assigned */
	char ext_addr[INET6_ADDRSTRLEN];  /* assigned, e.g. "11.0.0.1" (IPv4-mapped shown as IPv4) */
};

/*
 * A PCP MAP request from the LAN host (its address, its namespace) to the
 * router, as a client would send it (no Debian package ships one): map
 * PROTO INT_PORT, suggesting EXT_PORT, for LIFETIME seconds (0: delete).
 * The nonce is the same for the same PROTO and INT_PORT, so a later
 * request renews or deletes the mapping. Returns the result code (REP
 * filled), or -1 without an answer within 2 s (R->why).
 */
int h_router_pcp_map(struct h_router *r, const char *proto, unsigned int_port, unsigned ext_port,
		     unsigned lifetime, struct h_pcp_reply *rep);

/* Stops miniupnpd and the STUN responder, kills whatever else runs in the
 * namespaces, deletes them and the temporary directory. */
void h_router_destroy(struct h_router *r);

/* The router of a suite's test case made by h_router_tcase. */
extern struct h_router h_rt;

/* A test case whose tests use h_rt, WAN at 11.0.0.1/24 (a public address:
 * miniupnpd maps). The namespaces are made before its first test and
 * deleted after its last, in the parent, so also when a test fails;
 * before each test miniupnpd is stopped and every mapping forgotten. */
TCase *h_router_tcase(const char *name);

/* The same with the WAN at 100.64.0.1/24, behind a carrier-grade NAT. */
TCase *h_router_cgnat_tcase(const char *name);

#endif
