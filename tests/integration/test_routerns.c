/*
 * The router topology the router mapping tests use (tests/routerns.h),
 * proved with the real client tools on the LAN host: natpmpc (NAT-PMP),
 * upnpc (UPnP-IGD) and the harness's own PCP request (Debian ships no PCP
 * client). For each: nothing forwarded before, an echo through the router
 * from the WAN client after the mapping (TCP and UDP, bytes checked), the
 * mapping in the router's ruleset, gone after deleting it and after a
 * reboot. Then what miniupnpd 2.3.1 does behind a carrier-grade NAT
 * (WAN 100.64.0.1): by itself it refuses; made to report the address, it
 * reports 100.64.0.1 and maps.
 */
#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check_run.h"
#include "harness.h"
#include "routerns.h"

/* Runs a command line on the LAN host (bounded: a client that gets no
 * answer retries for minutes); returns its exit status, *OUT its output. */
static int lan_run(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int lan_run(char **out, const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return h_sh(out, "timeout 20 ip netns exec %s %s 2>&1", h_rt.lan, cmd);
}

/* Echo backends on the LAN host, on every address it has. */
static void lan_backends(struct h_backend *tcp, struct h_backend *udp)
{
	h_netns_enter(h_rt.lan);
	h_backend_start_at(tcp, H_ECHO, "0.0.0.0", 0);
	h_backend_start_at(udp, H_UDP_ECHO, "0.0.0.0", 0);
	h_netns_enter(NULL);
}

static void need_tool(const char *tool)
{
	char *out;
	int rc = h_sh(&out, "command -v %s", tool);

	free(out);
	ck_assert_msg(rc == 0, "%s is missing (scripts/install-deps test installs it)", tool);
}

/* Nothing forwarded: refused from the WAN, no rule. */
static void assert_closed(const char *proto, unsigned port)
{
	ck_assert_msg(!h_router_wan_exchange(&h_rt, proto, port, 2), "%s %u reached the LAN unmapped", proto, port);
	ck_assert_msg(!h_router_has_mapping(&h_rt, proto, port), "%s %u mapped: %s", proto, port, h_rt.why);
}

/* Forwarded to the LAN host's PORT: the echo comes back whole. */
static void assert_open(const char *proto, unsigned ext_port, unsigned port)
{
	char to[64], want[64];

	ck_assert_msg(h_router_mapping(&h_rt, proto, ext_port, to, sizeof(to)) == 1, "%s %u: %s", proto, ext_port,
		      h_rt.why);
	snprintf(want, sizeof(want), "%s:%u", h_rt.lan_addr, port);
	ck_assert_str_eq(to, want);
	ck_assert_msg(h_router_wan_exchange(&h_rt, proto, ext_port, 10), "%s %u: %s", proto, ext_port, h_rt.why);
}

/* natpmpc's epoch, from its last "epoch = N" line; -1 if none. */
static long natpmp_epoch(const char *out)
{
	const char *p = out, *last = NULL;

	while ((p = strstr(p, "epoch = ")))
		last = p++;
	return last ? strtol(last + 8, NULL, 10) : -1;
}

static void start_router(void)
{
	ck_assert_msg(h_router_start(&h_rt), "%s", h_rt.why);
}

START_TEST(test_natpmp)
{
	struct h_backend tcp, udp;
	char *out;
	long epoch;
	int rc;

	if (!h_router_ready(&h_rt))
		return;
	need_tool("natpmpc");
	start_router();
	lan_backends(&tcp, &udp);
	assert_closed("tcp", tcp.port);
	assert_closed("udp", udp.port);

	rc = lan_run(&out, "natpmpc -g %s", h_rt.gw_addr);
	ck_assert_msg(rc == 0 && strstr(out, "Public IP address : 11.0.0.1"), "exit %d: %s", rc, out);
	free(out);
	rc = lan_run(&out, "natpmpc -g %s -a %u %u tcp 60", h_rt.gw_addr, tcp.port, tcp.port);
	ck_assert_msg(rc == 0 && strstr(out, "Mapped public port"), "exit %d: %s", rc, out);
	free(out);
	rc = lan_run(&out, "natpmpc -g %s -a %u %u udp 60", h_rt.gw_addr, udp.port, udp.port);
	ck_assert_msg(rc == 0 && strstr(out, "Mapped public port"), "exit %d: %s", rc, out);
	free(out);
	assert_open("tcp", tcp.port, tcp.port);
	assert_open("udp", udp.port, udp.port);
	ck_assert_int_eq(h_router_mapping_count(&h_rt), 2);

	/* Deleted: lifetime 0. */
	rc = lan_run(&out, "natpmpc -g %s -a %u %u tcp 0", h_rt.gw_addr, tcp.port, tcp.port);
	ck_assert_msg(rc == 0, "exit %d: %s", rc, out);
	free(out);
	assert_closed("tcp", tcp.port);
	ck_assert(h_router_has_mapping(&h_rt, "udp", udp.port));

	/* A short lease (what a refresh test uses) is taken as it is, and ends. */
	rc = lan_run(&out, "natpmpc -g %s -a %u %u tcp 2", h_rt.gw_addr, tcp.port, tcp.port);
	ck_assert_msg(rc == 0 && strstr(out, "liftime 2"), "exit %d: %s", rc, out);
	free(out);
	ck_assert(h_router_has_mapping(&h_rt, "tcp", tcp.port));
	ck_assert_msg(h_router_wait_mapping(&h_rt, "tcp", tcp.port, false, 5), "a 2 s lease still mapped after 5 s");

	/* A stop by itself: the router still forwards what was mapped, and the
	 * start takes it up again from the lease file (epoch from 0 again).
	 * The 2 s lease has ended, so the epoch (whole seconds since the
	 * start) is 2 at least; after the start it is 0 or 1. */
	rc = lan_run(&out, "natpmpc -g %s", h_rt.gw_addr);
	epoch = natpmp_epoch(out);
	free(out);
	ck_assert_msg(epoch >= 2, "epoch %ld", epoch);
	h_router_stop(&h_rt, false);
	assert_open("udp", udp.port, udp.port);
	rc = lan_run(&out, "natpmpc -g %s", h_rt.gw_addr);
	ck_assert_msg(rc != 0, "NAT-PMP answered with miniupnpd stopped: %s", out);
	free(out);
	start_router();
	assert_open("udp", udp.port, udp.port);
	rc = lan_run(&out, "natpmpc -g %s", h_rt.gw_addr);
	ck_assert_msg(rc == 0 && natpmp_epoch(out) < epoch, "epoch %ld then: %s", epoch, out);
	free(out);

	/* A reboot: every mapping gone, and still gone after the start. */
	h_router_stop(&h_rt, true);
	assert_closed("udp", udp.port);
	ck_assert_int_eq(h_router_mapping_count(&h_rt), 0);
	start_router();
	assert_closed("udp", udp.port);
	ck_assert_int_eq(h_router_mapping_count(&h_rt), 0);
	h_router_stop(&h_rt, false);
	h_backend_stop(&tcp);
	h_backend_stop(&udp);
}
END_TEST

START_TEST(test_upnp)
{
	struct h_backend tcp, udp;
	char want_tcp[64], want_udp[64], *out;
	unsigned ext;
	int rc;

	if (!h_router_ready(&h_rt))
		return;
	need_tool("upnpc");
	start_router();
	lan_backends(&tcp, &udp);
	assert_closed("tcp", tcp.port);
	assert_closed("udp", udp.port);

	/* Found by SSDP on the LAN (2 s of discovery), connected, its address. */
	rc = lan_run(&out, "upnpc -s");
	ck_assert_msg(rc == 0 && strstr(out, "Found valid IGD") && strstr(out, "ExternalIPAddress = 11.0.0.1"),
		      "exit %d: %s", rc, out);
	free(out);
	/* The rest with the description's URL: no discovery each time. An
	 * external port other than the internal one for TCP. */
	ext = tcp.port == 65535 ? tcp.port - 1 : tcp.port + 1;
	rc = lan_run(&out, "upnpc -u %s -a %s %u %u TCP 60", h_rt.root_desc, h_rt.lan_addr, tcp.port, ext);
	ck_assert_msg(rc == 0 && strstr(out, "is redirected to internal"), "exit %d: %s", rc, out);
	free(out);
	rc = lan_run(&out, "upnpc -u %s -a %s %u %u UDP 60", h_rt.root_desc, h_rt.lan_addr, udp.port, udp.port);
	ck_assert_msg(rc == 0 && strstr(out, "is redirected to internal"), "exit %d: %s", rc, out);
	free(out);
	assert_open("tcp", ext, tcp.port);
	assert_open("udp", udp.port, udp.port);
	/* Listed as "TCP  EXT->ADDR:PORT", in a line each. */
	rc = lan_run(&out, "upnpc -u %s -l", h_rt.root_desc);
	snprintf(want_tcp, sizeof(want_tcp), "TCP %5u->%s:%-5u", ext, h_rt.lan_addr, tcp.port);
	snprintf(want_udp, sizeof(want_udp), "UDP %5u->%s:%-5u", udp.port, h_rt.lan_addr, udp.port);
	ck_assert_msg(rc == 0 && strstr(out, want_tcp) && strstr(out, want_udp), "exit %d: %s", rc, out);
	free(out);

	/* secure_mode: a host maps only to itself. */
	rc = lan_run(&out, "upnpc -u %s -a 192.168.77.3 %u %u TCP 60", h_rt.root_desc, tcp.port, tcp.port);
	ck_assert_msg(rc != 0 && strstr(out, "failed with code 718 (ConflictInMappingEntry)"), "exit %d: %s", rc, out);
	free(out);
	ck_assert(!h_router_has_mapping(&h_rt, "tcp", tcp.port));

	rc = lan_run(&out, "upnpc -u %s -d %u TCP", h_rt.root_desc, ext);
	ck_assert_msg(rc == 0, "exit %d: %s", rc, out);
	free(out);
	assert_closed("tcp", ext);
	ck_assert(h_router_has_mapping(&h_rt, "udp", udp.port));

	/* A reboot. */
	h_router_stop(&h_rt, true);
	start_router();
	assert_closed("udp", udp.port);
	rc = lan_run(&out, "upnpc -u %s -l", h_rt.root_desc);
	ck_assert_msg(rc == 0 && !strstr(out, "TCP ") && !strstr(out, "UDP "), "exit %d: %s", rc, out);
	free(out);
	h_router_stop(&h_rt, false);
	h_backend_stop(&tcp);
	h_backend_stop(&udp);
}
END_TEST

START_TEST(test_pcp)
{
	struct h_backend tcp, udp;
	struct h_pcp_reply rep;
	unsigned epoch;
	int rc;

	if (!h_router_ready(&h_rt))
		return;
	start_router();
	lan_backends(&tcp, &udp);
	assert_closed("tcp", tcp.port);
	assert_closed("udp", udp.port);

	/* 6 s: min_lifetime=1 lets a short lease through as it is. */
	rc = h_router_pcp_map(&h_rt, "tcp", tcp.port, tcp.port, 6, &rep);
	ck_assert_msg(rc == 0, "result %d: %s", rc, h_rt.why);
	ck_assert_str_eq(rep.ext_addr, "11.0.0.1");
	ck_assert_uint_eq(rep.ext_port, tcp.port);
	ck_assert_uint_eq(rep.lifetime, 6);
	rc = h_router_pcp_map(&h_rt, "udp", udp.port, udp.port, 60, &rep);
	ck_assert_msg(rc == 0, "result %d: %s", rc, h_rt.why);
	assert_open("tcp", tcp.port, tcp.port);
	assert_open("udp", udp.port, udp.port);
	/* Deleted: lifetime 0, the same nonce. */
	rc = h_router_pcp_map(&h_rt, "tcp", tcp.port, tcp.port, 0, &rep);
	ck_assert_msg(rc == 0, "result %d: %s", rc, h_rt.why);
	assert_closed("tcp", tcp.port);

	/* A reboot: gone, and the epoch starts again. */
	sleep(2);
	rc = h_router_pcp_map(&h_rt, "udp", udp.port, udp.port, 60, &rep);
	ck_assert_msg(rc == 0 && rep.epoch >= 2, "result %d, epoch %u", rc, rep.epoch);
	epoch = rep.epoch;
	h_router_stop(&h_rt, true);
	start_router();
	assert_closed("udp", udp.port);
	rc = h_router_pcp_map(&h_rt, "tcp", tcp.port, tcp.port, 60, &rep);
	ck_assert_msg(rc == 0 && rep.epoch < epoch, "result %d, epoch %u then %u", rc, epoch, rep.epoch);
	assert_open("tcp", tcp.port, tcp.port);
	h_router_stop(&h_rt, false);
	h_backend_stop(&tcp);
	h_backend_stop(&udp);
}
END_TEST

/*
 * Behind a carrier-grade NAT (WAN 100.64.0.1), miniupnpd 2.3.1 by itself
 * starts, says port forwarding is impossible, and refuses: NAT-PMP answers
 * "network failure" (3) to the public address request (and to a mapping
 * request), UPnP reports an empty external address and AddPortMapping
 * fails with 501, PCP answers NO_RESOURCES (8) but names 100.64.0.1. It
 * refuses to start with ext_ip set to such an address.
 */
START_TEST(test_cgnat_refuses)
{
	struct h_backend tcp, udp;
	struct h_pcp_reply rep;
	char *out;
	int rc;

	if (!h_router_ready(&h_rt))
		return;
	need_tool("natpmpc");
	need_tool("upnpc");
	start_router();
	ck_assert_msg(h_sh(&out, "grep -q 'Reserved / private IP address 100.64.0.1' %s", h_rt.log) == 0,
		      "no word of the reserved address in %s", h_rt.log);
	free(out);
	lan_backends(&tcp, &udp);

	rc = lan_run(&out, "natpmpc -g %s", h_rt.gw_addr);
	ck_assert_msg(rc != 0 && strstr(out, "network failure"), "exit %d: %s", rc, out);
	free(out);
	rc = lan_run(&out, "upnpc -u %s -s", h_rt.root_desc);
	ck_assert_msg(strstr(out, "GetExternalIPAddress failed. (empty string)"), "exit %d: %s", rc, out);
	free(out);
	rc = lan_run(&out, "upnpc -u %s -a %s %u %u TCP 60", h_rt.root_desc, h_rt.lan_addr, tcp.port, tcp.port);
	ck_assert_msg(rc != 0 && strstr(out, "failed with code 501"), "exit %d: %s", rc, out);
	free(out);
	rc = h_router_pcp_map(&h_rt, "udp", udp.port, udp.port, 60, &rep);
	ck_assert_msg(rc == 8, "result %d: %s", rc, h_rt.why);
	ck_assert_str_eq(rep.ext_addr, "100.64.0.1");
	assert_closed("tcp", tcp.port);
	assert_closed("udp", udp.port);
	ck_assert_int_eq(h_router_mapping_count(&h_rt), 0);
	h_router_stop(&h_rt, true);

	h_rt.extra_conf = "ext_ip=100.64.0.1\n";
	ck_assert(!h_router_start(&h_rt));
	ck_assert_msg(strstr(h_rt.why, "ext_ip contains reserved / private address 100.64.0.1"), "%s", h_rt.why);
	h_backend_stop(&tcp);
	h_backend_stop(&udp);
}
END_TEST

/*
 * The same router made to report its address (report_private: what newer
 * miniupnpd's ext_allow_private_ipv4 does): NAT-PMP, UPnP and PCP say
 * 100.64.0.1 and map, and the carrier's side (the WAN client) reaches the
 * LAN through it. libminiupnpc 2.2.4's discovery takes such an IGD for
 * "not connected" and upnpc stops there; with the URL it goes on.
 */
START_TEST(test_cgnat_reports)
{
	struct h_backend tcp, udp;
	struct h_pcp_reply rep;
	char *out;
	int rc;

	if (!h_router_ready(&h_rt))
		return;
	need_tool("natpmpc");
	need_tool("upnpc");
	h_rt.report_private = true;
	start_router();
	lan_backends(&tcp, &udp);
	assert_closed("tcp", tcp.port);

	rc = lan_run(&out, "natpmpc -g %s -a %u %u tcp 60", h_rt.gw_addr, tcp.port, tcp.port);
	ck_assert_msg(rc == 0 && strstr(out, "Public IP address : 100.64.0.1") && strstr(out, "Mapped public port"),
		      "exit %d: %s", rc, out);
	free(out);
	assert_open("tcp", tcp.port, tcp.port);

	rc = lan_run(&out, "upnpc -s");
	ck_assert_msg(rc != 0 && strstr(out, "Found a (not connected?) IGD"), "exit %d: %s", rc, out);
	free(out);
	rc = lan_run(&out, "upnpc -u %s -a %s %u %u UDP 60", h_rt.root_desc, h_rt.lan_addr, udp.port, udp.port);
	ck_assert_msg(rc == 0 && strstr(out, "ExternalIPAddress = 100.64.0.1") &&
			      strstr(out, "is redirected to internal"),
		      "exit %d: %s", rc, out);
	free(out);
	assert_open("udp", udp.port, udp.port);

	rc = lan_run(&out, "natpmpc -g %s -a %u %u tcp 0", h_rt.gw_addr, tcp.port, tcp.port);
	ck_assert_msg(rc == 0, "exit %d: %s", rc, out);
	free(out);
	assert_closed("tcp", tcp.port);
	rc = h_router_pcp_map(&h_rt, "tcp", tcp.port, tcp.port, 60, &rep);
	ck_assert_msg(rc == 0, "result %d: %s", rc, h_rt.why);
	ck_assert_str_eq(rep.ext_addr, "100.64.0.1");
	assert_open("tcp", tcp.port, tcp.port);
	h_router_stop(&h_rt, false);
	h_backend_stop(&tcp);
	h_backend_stop(&udp);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("routerns");
	TCase *tc = h_router_tcase("router");
	TCase *cg = h_router_cgnat_tcase("cgnat");

	tcase_add_test(tc, test_natpmp);
	tcase_add_test(tc, test_upnp);
	tcase_add_test(tc, test_pcp);
	suite_add_tcase(s, tc);
	tcase_add_test(cg, test_cgnat_refuses);
	tcase_add_test(cg, test_cgnat_reports);
	suite_add_tcase(s, cg);
	return check_run(s);
}
