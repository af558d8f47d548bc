/* A home router in network namespaces running miniupnpd: see routerns.h. */
#include "routerns.h"

#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RN_PCP_PORT 5351
#define RN_STUN_PORT 3478

struct h_router h_rt;

static void rn_sleep(double s)
{
	struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };

	nanosleep(&ts, NULL);
}

static void rn_why(struct h_router *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void rn_why(struct h_router *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->why, sizeof(r->why), fmt, ap);
	va_end(ap);
}

/* A socket in namespace NS (sockets stay in the namespace they were made
 * in); the calling thread's namespace is put back. -1, errno set, on failure. */
static int rn_socket(const char *ns, int domain, int type, int protocol)
{
	char path[96];
	int own = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC), fd, there, err;

	if (own < 0)
		return -1;
	snprintf(path, sizeof(path), "/run/netns/%s", ns);
	there = open(path, O_RDONLY | O_CLOEXEC);
	if (there < 0 || setns(there, CLONE_NEWNET) < 0) {
		err = errno;
		if (there >= 0)
			close(there);
		close(own);
		errno = err;
		return -1;
	}
	fd = socket(domain, type | SOCK_CLOEXEC, protocol);
	err = errno;
	if (setns(own, CLONE_NEWNET) < 0) {
		/* Cannot happen to root; and a thread left in the wrong place must not go on. */
		fprintf(stderr, "routerns: setns back: %s\n", strerror(errno));
		abort();
	}
	close(there);
	close(own);
	errno = err;
	return fd;
}

static bool rn_have(const char *prog)
{
	char *out = NULL;
	int rc = h_sh(&out, "command -v %s || test -x /usr/sbin/%s", prog, prog);

	free(out);
	return rc == 0;
}

bool h_router_make(struct h_router *r, const char *wan_cidr)
{
	static unsigned made;
	int pid = (int)getpid();
	unsigned a, b, c, d, len;
	char ruleset[96], *out = NULL;
	FILE *fp;
	int rc;

	memset(r, 0, sizeof(*r));
	r->stun_fd = -1;
	if (geteuid() != 0) {
		r->skip = true;
		rn_why(r, "the router namespace tests need root");
		return false;
	}
	if (!rn_have("miniupnpd") || !rn_have("nft")) {
		r->skip = true;
		rn_why(r, "the router namespace tests need miniupnpd and nft (Debian: miniupnpd-nftables, nftables; "
			  "scripts/install-deps test)");
		return false;
	}
	if (sscanf(wan_cidr, "%u.%u.%u.%u/%u", &a, &b, &c, &d, &len) != 5 || len != 24 || d != 1) {
		rn_why(r, "WAN %s: want a.b.c.1/24", wan_cidr);
		return false;
	}
	snprintf(r->wan_addr, sizeof(r->wan_addr), "%u.%u.%u.1", a, b, c);
	snprintf(r->client_addr, sizeof(r->client_addr), "%u.%u.%u.2", a, b, c);
	snprintf(r->gw_addr, sizeof(r->gw_addr), "192.168.77.1");
	snprintf(r->lan_addr, sizeof(r->lan_addr), "192.168.77.2");
	snprintf(r->root_desc, sizeof(r->root_desc), "http://%s:%d/rootDesc.xml", r->gw_addr, H_ROUTER_HTTP_PORT);
	/* A second router of the same process gets names of its own. */
	snprintf(r->wan, sizeof(r->wan), "pf%d-%u-wan", pid, made);
	snprintf(r->rtr, sizeof(r->rtr), "pf%d-%u-rtr", pid, made);
	snprintf(r->lan, sizeof(r->lan), "pf%d-%u-lan", pid, made);
	made++;
	snprintf(r->dir, sizeof(r->dir), "/tmp/portfwd-router.XXXXXX");
	if (!mkdtemp(r->dir)) {
		rn_why(r, "mkdtemp: %s", strerror(errno));
		r->dir[0] = '\0';
		return false;
	}
	snprintf(r->conf, sizeof(r->conf), "%s/miniupnpd.conf", r->dir);
	snprintf(r->log, sizeof(r->log), "%s/miniupnpd.log", r->dir);
	snprintf(r->pidfile, sizeof(r->pidfile), "%s/miniupnpd.pid", r->dir);
	snprintf(r->leases, sizeof(r->leases), "%s/leases", r->dir);

	/*
	 * miniupnpd's nftables backend adds to chains of one table (its
	 * default `inet filter`, for filter and NAT alike) and makes none: the
	 * forward chain jumps to `miniupnpd` (its accept rules), the NAT
	 * chains to `prerouting_miniupnpd` (its DNAT rules) and
	 * `postrouting_miniupnpd`. Debian's nft_init.sh would lay them out
	 * but sources a helper the package does not ship.
	 */
	snprintf(ruleset, sizeof(ruleset), "%s/ruleset.nft", r->dir);
	fp = fopen(ruleset, "w");
	if (!fp) {
		rn_why(r, "%s: %s", ruleset, strerror(errno));
		h_router_destroy(r);
		return false;
	}
	fprintf(fp,
		"table inet filter {\n"
		"\tchain forward {\n"
		"\t\ttype filter hook forward priority 0; policy drop;\n"
		"\t\tct state established,related accept\n"
		"\t\tiifname \"%1$s\" oifname \"%2$s\" accept\n"
		"\t\tjump miniupnpd\n"
		"\t}\n"
		"\tchain miniupnpd {\n\t}\n"
		"\tchain prerouting {\n"
		"\t\ttype nat hook prerouting priority -100; policy accept;\n"
		"\t\tjump prerouting_miniupnpd\n"
		"\t}\n"
		"\tchain postrouting {\n"
		"\t\ttype nat hook postrouting priority 100; policy accept;\n"
		"\t\tjump postrouting_miniupnpd\n"
		"\t\toifname \"%2$s\" masquerade\n"
		"\t}\n"
		"\tchain prerouting_miniupnpd {\n\t}\n"
		"\tchain postrouting_miniupnpd {\n\t}\n"
		"}\n",
		H_ROUTER_LAN_IF, H_ROUTER_WAN_IF);
	fclose(fp);

	/* The interfaces are made in their namespaces, so their names are the
	 * same in every router. */
	rc = h_sh(&out,
		  "set -e; ip netns add %1$s; ip netns add %2$s; ip netns add %3$s;"
		  " ip link add %4$s netns %2$s type veth peer name %6$s netns %1$s;"
		  " ip link add %5$s netns %2$s type veth peer name %6$s netns %3$s;"
		  " for ns in %1$s %2$s %3$s; do ip -n $ns link set lo up; done;"
		  " ip -n %2$s addr add %7$s dev %4$s; ip -n %1$s addr add %8$s/24 dev %6$s;"
		  " ip -n %2$s addr add %9$s/24 dev %5$s; ip -n %3$s addr add %10$s/24 dev %6$s;"
		  " ip -n %2$s link set %4$s up; ip -n %2$s link set %5$s up;"
		  " ip -n %1$s link set %6$s up; ip -n %3$s link set %6$s up;"
		  " ip -n %3$s route add default via %9$s;"
		  " ip netns exec %2$s sysctl -qw net.ipv4.ip_forward=1;"
		  " ip netns exec %2$s nft -f %11$s",
		  r->wan, r->rtr, r->lan, H_ROUTER_WAN_IF, H_ROUTER_LAN_IF, H_ROUTER_HOST_IF, wan_cidr,
		  r->client_addr, r->gw_addr, r->lan_addr, ruleset);
	if (rc != 0) {
		rn_why(r, "cannot make the router namespaces (exit %d): %s", rc, out ? out : "");
		fprintf(stderr, "%s\n", r->why);
		free(out);
		h_router_destroy(r);
		return false;
	}
	free(out);
	r->ok = true;
	return true;
}

bool h_router_ready(const struct h_router *r)
{
	if (r->ok)
		return true;
	ck_assert_msg(r->skip, "the router topology could not be made: %s", r->why);
	fprintf(stderr, "%s: skipped\n", r->why);
	return false;
}

/* ---- the STUN responder (report_private) ---- */

/* Answers every Binding Request with the address and port it came from
 * (MAPPED-ADDRESS, from where it was sent: no CHANGE-REQUEST is honoured,
 * and miniupnpd takes four answers alike as "no NAT that filters"). */
static void *rn_stun_thread(void *p)
{
	struct h_router *r = p;
	unsigned char in[1500], out[64];

	while (!r->stun_stop) {
		struct pollfd pf = { .fd = r->stun_fd, .events = POLLIN };
		struct sockaddr_in from;
		socklen_t fl = sizeof(from);
		ssize_t n;

		if (poll(&pf, 1, 100) <= 0)
			continue;
		n = recvfrom(r->stun_fd, in, sizeof(in), 0, (struct sockaddr *)&from, &fl);
		if (n < 20 || in[0] != 0x00 || in[1] != 0x01 || fl != sizeof(from))
			continue;
		memset(out, 0, sizeof(out));
		out[0] = 0x01; /* Binding Success Response */
		out[1] = 0x01;
		out[3] = 12; /* one attribute of 4 + 8 bytes */
		memcpy(out + 4, in + 4, 16); /* magic cookie and transaction id */
		out[21] = 0x01; /* MAPPED-ADDRESS */
		out[23] = 8;
		out[25] = 0x01; /* IPv4 */
		memcpy(out + 26, &from.sin_port, 2);
		memcpy(out + 28, &from.sin_addr, 4);
		sendto(r->stun_fd, out, 32, 0, (struct sockaddr *)&from, fl);
	}
	return NULL;
}

static bool rn_stun_start(struct h_router *r)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(RN_STUN_PORT) };
	int one = 1;

	if (r->stun_fd >= 0)
		return true;
	inet_pton(AF_INET, r->client_addr, &sin.sin_addr);
	r->stun_fd = rn_socket(r->wan, AF_INET, SOCK_DGRAM, 0);
	if (r->stun_fd < 0) {
		rn_why(r, "STUN socket in %s: %s", r->wan, strerror(errno));
		return false;
	}
	setsockopt(r->stun_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(r->stun_fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
		rn_why(r, "STUN bind %s:%d: %s", r->client_addr, RN_STUN_PORT, strerror(errno));
		close(r->stun_fd);
		r->stun_fd = -1;
		return false;
	}
	r->stun_stop = false;
	if (pthread_create(&r->stun_thread, NULL, rn_stun_thread, r) != 0) {
		rn_why(r, "STUN thread: %s", strerror(errno));
		close(r->stun_fd);
		r->stun_fd = -1;
		return false;
	}
	return true;
}

static void rn_stun_stop(struct h_router *r)
{
	if (r->stun_fd < 0)
		return;
	r->stun_stop = true;
	pthread_join(r->stun_thread, NULL);
	close(r->stun_fd);
	r->stun_fd = -1;
}

/* ---- miniupnpd ---- */

static bool rn_write_conf(struct h_router *r)
{
	FILE *fp = fopen(r->conf, "w");

	if (!fp) {
		rn_why(r, "%s: %s", r->conf, strerror(errno));
		return false;
	}
	fprintf(fp,
		"ext_ifname=%s\n"
		/* SSDP, HTTP, NAT-PMP and PCP on the LAN side only. */
		"listening_ip=%s\n"
		"http_port=%d\n"
		"enable_upnp=yes\n"
		"enable_natpmp=%s\n"
		"ipv6_disable=yes\n"
		/* A client maps only to its own address, as on a real router. */
		"secure_mode=yes\n"
		/* The daemon's uptime, not the machine's: NAT-PMP's and PCP's
		 * epoch (and UPnP's uptime) restart with miniupnpd, as a reboot
		 * restarts them. */
		"system_uptime=no\n"
		/* PCP raises a shorter lifetime to min_lifetime (120 s by default,
		 * at most 120 accepted); NAT-PMP and UPnP take any. */
		"min_lifetime=1\n"
		"max_lifetime=86400\n"
		"lease_file=%s\n"
		"uuid=6f7e3a52-8c1d-4b0e-9f2a-%012x\n"
		"friendly_name=portfwd test router\n",
		H_ROUTER_WAN_IF, H_ROUTER_LAN_IF, H_ROUTER_HTTP_PORT, r->no_natpmp ? "no" : "yes", r->leases,
		(unsigned)getpid());
	if (r->report_private)
		fprintf(fp, "ext_perform_stun=yes\next_stun_host=%s\next_stun_port=%d\n", r->client_addr,
			RN_STUN_PORT);
	if (r->extra_conf)
		fputs(r->extra_conf, fp);
	/* The first rule that matches decides. */
	fprintf(fp, "allow 1-65535 192.168.77.0/24 1-65535\n"
		    "deny 0-65535 0.0.0.0/0 0-65535\n");
	fclose(fp);
	return true;
}

/* Whether miniupnpd answers on the LAN: a NAT-PMP public address request
 * gets an answer (whatever its result), and its HTTP port a connection. */
static bool rn_answers(struct h_router *r)
{
	static const unsigned char req[2] = { 0, 0 };
	struct sockaddr_in gw = { .sin_family = AF_INET, .sin_port = htons(RN_PCP_PORT) };
	unsigned char buf[64];
	struct pollfd pf;
	bool ok = false;
	int u, t;

	inet_pton(AF_INET, r->gw_addr, &gw.sin_addr);
	if (r->no_natpmp)
		goto http; /* UPnP-IGD only: its HTTP port is the sign */
	u = rn_socket(r->lan, AF_INET, SOCK_DGRAM, 0);
	if (u < 0)
		return false;
	if (connect(u, (struct sockaddr *)&gw, sizeof(gw)) == 0 && send(u, req, sizeof(req), 0) == 2) {
		pf = (struct pollfd){ .fd = u, .events = POLLIN };
		ok = poll(&pf, 1, 200) == 1 && recv(u, buf, sizeof(buf), 0) >= 8 && buf[1] == 128;
	}
	close(u);
	if (!ok)
		return false;
http:
	gw.sin_port = htons(H_ROUTER_HTTP_PORT);
	t = rn_socket(r->lan, AF_INET, SOCK_STREAM, 0);
	if (t < 0)
		return false;
	ok = connect(t, (struct sockaddr *)&gw, sizeof(gw)) == 0;
	close(t);
	return ok;
}

/* The last lines of miniupnpd's log that fit in BUF. */
static void rn_tail_log(struct h_router *r, char *buf, size_t size)
{
	FILE *fp = fopen(r->log, "r");
	char *nl;
	long end;
	size_t n;

	buf[0] = '\0';
	if (!fp)
		return;
	fseek(fp, 0, SEEK_END);
	end = ftell(fp);
	fseek(fp, end > (long)size - 1 ? end - (long)size + 1 : 0, SEEK_SET);
	n = fread(buf, 1, size - 1, fp);
	buf[n] = '\0';
	fclose(fp);
	if (end > (long)size - 1 && (nl = strchr(buf, '\n')))
		memmove(buf, nl + 1, strlen(nl + 1) + 1);
}

bool h_router_start(struct h_router *r)
{
	char path[96], tail[192];
	double deadline;
	int ns, st;
	pid_t pid, parent;

	if (!r->ok) {
		rn_why(r, "no router: %s", r->why);
		return false;
	}
	if (r->miniupnpd > 0) {
		rn_why(r, "miniupnpd is running already (pid %d)", (int)r->miniupnpd);
		return false;
	}
	if (r->report_private && !rn_stun_start(r))
		return false;
	if (!rn_write_conf(r))
		return false;
	snprintf(path, sizeof(path), "/run/netns/%s", r->rtr);
	ns = open(path, O_RDONLY | O_CLOEXEC);
	if (ns < 0) {
		rn_why(r, "%s: %s", path, strerror(errno));
		return false;
	}
	parent = getpid();
	pid = fork();
	if (pid < 0) {
		rn_why(r, "fork: %s", strerror(errno));
		close(ns);
		return false;
	}
	if (pid == 0) {
		char *argv[] = { "miniupnpd", "-f", r->conf, "-d", "-P", r->pidfile, NULL };
		int log = open(r->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

		/* Gone with the test that started it, whatever ends that. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent || log < 0 || setns(ns, CLONE_NEWNET) < 0)
			_exit(126);
		dup2(log, 1);
		dup2(log, 2);
		execvp("miniupnpd", argv);
		execv("/usr/sbin/miniupnpd", argv);
		_exit(127);
	}
	close(ns);
	r->miniupnpd = pid;
	/* STUN, when asked, is done before it answers: a few round trips here. */
	deadline = h_now() + 10;
	for (;;) {
		if (waitpid(pid, &st, WNOHANG) == pid) {
			r->miniupnpd = 0;
			rn_tail_log(r, tail, sizeof(tail));
			rn_why(r, "miniupnpd exited (status 0x%x) while starting; %s ends: %s", st, r->log, tail);
			return false;
		}
		if (rn_answers(r))
			return true;
		if (h_now() > deadline)
			break;
		rn_sleep(0.02);
	}
	rn_tail_log(r, tail, sizeof(tail));
	rn_why(r, "miniupnpd did not answer within 10 s; %s ends: %s", r->log, tail);
	h_router_stop(r, false);
	return false;
}

/* Empties the conntrack table of the router's namespace (what `conntrack
 * -F` does), over netlink, without the conntrack tool. */
static void rn_conntrack_flush(struct h_router *r)
{
	struct {
		struct nlmsghdr nh;
		struct nfgenmsg nfg;
	} req = {
		.nh = { .nlmsg_len = sizeof(req),
			.nlmsg_type = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE,
			.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK },
		.nfg = { .nfgen_family = AF_UNSPEC, .version = NFNETLINK_V0 },
	};
	char buf[512];
	struct pollfd pf;
	int fd = rn_socket(r->rtr, AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER);

	if (fd < 0) {
		fprintf(stderr, "routerns: conntrack netlink socket: %s\n", strerror(errno));
		return;
	}
	if (send(fd, &req, sizeof(req), 0) == (ssize_t)sizeof(req)) {
		pf = (struct pollfd){ .fd = fd, .events = POLLIN };
		if (poll(&pf, 1, 2000) == 1) {
			ssize_t n = recv(fd, buf, sizeof(buf), 0);
			struct nlmsghdr *nh = (struct nlmsghdr *)buf;

			/* ENOENT: the table was empty. */
			if (n >= (ssize_t)(NLMSG_HDRLEN + sizeof(struct nlmsgerr)) && nh->nlmsg_type == NLMSG_ERROR) {
				int err = ((struct nlmsgerr *)NLMSG_DATA(nh))->error;

				if (err != 0 && err != -ENOENT)
					fprintf(stderr, "routerns: conntrack flush: %s\n", strerror(-err));
			}
		}
	}
	close(fd);
}

/* Signals every process in namespace NS (only this suite's processes are
 * there) and waits, SECONDS at most, until none is left. */
static bool rn_kill_ns(const char *ns, int sig, double seconds)
{
	double deadline = h_now() + seconds;
	char *out = NULL;
	int rc;

	for (;;) {
		rc = h_sh(&out, "p=$(ip netns pids %s 2>/dev/null); [ -z \"$p\" ] && exit 0; kill -%d $p 2>/dev/null; exit 1",
			  ns, sig);
		free(out);
		out = NULL;
		if (rc == 0)
			return true;
		if (h_now() > deadline)
			return false;
		rn_sleep(0.02);
	}
}

void h_router_stop(struct h_router *r, bool forget)
{
	char *out = NULL;

	if (r->miniupnpd > 0) {
		double deadline = h_now() + 5, next = 0;
		int st;

		/* Again every 100 ms: miniupnpd notes the signal and looks at the
		 * note before it waits in select(), so one that comes between the
		 * two (as one does right after it answered) waits out select's
		 * timeout, seconds. */
		while (waitpid(r->miniupnpd, &st, WNOHANG) == 0 && h_now() < deadline) {
			if (h_now() >= next) {
				kill(r->miniupnpd, SIGTERM);
				next = h_now() + 0.1;
			}
			rn_sleep(0.01);
		}
		if (h_now() >= deadline) {
			kill(r->miniupnpd, SIGKILL);
			waitpid(r->miniupnpd, &st, 0);
		}
		r->miniupnpd = 0;
	}
	if (!r->ok)
		return;
	/* A miniupnpd of a test that ended without stopping it: going by its
	 * parent-death signal, and a new one must not find its ports taken. */
	if (!rn_kill_ns(r->rtr, SIGTERM, 5))
		rn_kill_ns(r->rtr, SIGKILL, 2);
	/* Left by one killed (or one whose exit is not seen yet): a start would
	 * take a pid in it that is still there, if only as a zombie, for a
	 * running miniupnpd and exit. */
	unlink(r->pidfile);
	if (!forget)
		return;
	unlink(r->leases);
	if (h_sh(&out,
		 "ip netns exec %1$s nft flush chain inet filter miniupnpd &&"
		 " ip netns exec %1$s nft flush chain inet filter prerouting_miniupnpd &&"
		 " ip netns exec %1$s nft flush chain inet filter postrouting_miniupnpd",
		 r->rtr) != 0)
		fprintf(stderr, "routerns: cannot flush miniupnpd's chains: %s\n", out ? out : "");
	free(out);
	rn_conntrack_flush(r);
}

/* ---- the mappings, from the ruleset ---- */

/* PROTO of a rule's expressions: 6, 17, or 0 if it does not say. */
static int rn_rule_proto(json_t *exprs)
{
	size_t i;
	json_t *e;

	json_array_foreach (exprs, i, e) {
		json_t *m = json_object_get(e, "match"), *left, *right, *pl, *meta;

		if (!m)
			continue;
		left = json_object_get(m, "left");
		right = json_object_get(m, "right");
		pl = json_object_get(left, "payload");
		meta = json_object_get(left, "meta");
		/* miniupnpd's: the IPv4 header's protocol byte, as nft 1.0.6
		 * shows it (@nh,72,8); newer nft may name it. */
		if ((pl && json_integer_value(json_object_get(pl, "offset")) == 72 &&
		     json_integer_value(json_object_get(pl, "len")) == 8 &&
		     !strcmp(json_string_value(json_object_get(pl, "base")) ?: "", "nh")) ||
		    (pl && !strcmp(json_string_value(json_object_get(pl, "field")) ?: "", "protocol")) ||
		    (meta && !strcmp(json_string_value(json_object_get(meta, "key")) ?: "", "l4proto"))) {
			if (json_is_integer(right))
				return (int)json_integer_value(right);
			if (json_is_string(right))
				return !strcmp(json_string_value(right), "tcp")	  ? 6
				       : !strcmp(json_string_value(right), "udp") ? 17
										  : -1;
		}
	}
	return 0;
}

/* The destination port a rule matches, or 0. */
static unsigned rn_rule_dport(json_t *exprs)
{
	size_t i;
	json_t *e;

	json_array_foreach (exprs, i, e) {
		json_t *m = json_object_get(e, "match"), *pl;

		if (!m)
			continue;
		pl = json_object_get(json_object_get(m, "left"), "payload");
		if (pl && !strcmp(json_string_value(json_object_get(pl, "field")) ?: "", "dport") &&
		    json_is_integer(json_object_get(m, "right")))
			return (unsigned)json_integer_value(json_object_get(m, "right"));
	}
	return 0;
}

static json_t *rn_rule_expr(json_t *exprs, const char *key)
{
	size_t i;
	json_t *e;

	json_array_foreach (exprs, i, e) {
		if (json_object_get(e, key))
			return json_object_get(e, key);
	}
	return NULL;
}

/* The rules of CHAIN (in table inet filter of the router), each a JSON
 * object with "expr"; NULL (R->why) if nft fails. */
static json_t *rn_chain_rules(struct h_router *r, const char *chain)
{
	json_t *doc, *items, *item, *rules;
	json_error_t jerr;
	char *out = NULL;
	size_t i;
	int rc;

	rc = h_sh(&out, "ip netns exec %s nft -j list chain inet filter %s", r->rtr, chain);
	if (rc != 0) {
		rn_why(r, "nft list chain %s (exit %d): %s", chain, rc, out ? out : "");
		free(out);
		return NULL;
	}
	doc = json_loads(out, 0, &jerr);
	free(out);
	if (!doc) {
		rn_why(r, "nft -j: %s", jerr.text);
		return NULL;
	}
	rules = json_array();
	items = json_object_get(doc, "nftables");
	json_array_foreach (items, i, item) {
		json_t *rule = json_object_get(item, "rule");

		if (rule)
			json_array_append(rules, rule);
	}
	json_decref(doc);
	return rules;
}

int h_router_mapping(struct h_router *r, const char *proto, unsigned ext_port, char *to, size_t to_len)
{
	int want = !strcmp(proto, "tcp") ? 6 : !strcmp(proto, "udp") ? 17 : -1;
	json_t *dnats, *accepts, *rule;
	unsigned iport = 0;
	int found = 0;
	size_t i;

	if (want < 0) {
		rn_why(r, "protocol %s: tcp or udp", proto);
		return -1;
	}
	dnats = rn_chain_rules(r, "prerouting_miniupnpd");
	if (!dnats)
		return -1;
	json_array_foreach (dnats, i, rule) {
		json_t *exprs = json_object_get(rule, "expr"), *dnat = rn_rule_expr(exprs, "dnat");

		if (!dnat || rn_rule_proto(exprs) != want || rn_rule_dport(exprs) != ext_port)
			continue;
		iport = (unsigned)json_integer_value(json_object_get(dnat, "port"));
		if (to)
			snprintf(to, to_len, "%s:%u", json_string_value(json_object_get(dnat, "addr")) ?: "?", iport);
		found = 1;
		break;
	}
	json_decref(dnats);
	if (!found) {
		rn_why(r, "no DNAT rule for %s port %u", proto, ext_port);
		return 0;
	}
	/* The filter rule matches after DNAT: the internal port. */
	accepts = rn_chain_rules(r, "miniupnpd");
	if (!accepts)
		return -1;
	found = 0;
	json_array_foreach (accepts, i, rule) {
		json_t *exprs = json_object_get(rule, "expr");

		if (rn_rule_expr(exprs, "accept") && rn_rule_proto(exprs) == want && rn_rule_dport(exprs) == iport)
			found = 1;
	}
	json_decref(accepts);
	if (!found)
		rn_why(r, "a DNAT rule for %s port %u, but no accept rule for its port %u", proto, ext_port, iport);
	return found;
}

bool h_router_has_mapping(struct h_router *r, const char *proto, unsigned ext_port)
{
	return h_router_mapping(r, proto, ext_port, NULL, 0) == 1;
}

int h_router_mapping_count(struct h_router *r)
{
	json_t *dnats = rn_chain_rules(r, "prerouting_miniupnpd"), *rule;
	int n = 0;
	size_t i;

	if (!dnats)
		return -1;
	json_array_foreach (dnats, i, rule) {
		if (rn_rule_expr(json_object_get(rule, "expr"), "dnat"))
			n++;
	}
	json_decref(dnats);
	return n;
}

bool h_router_wait_mapping(struct h_router *r, const char *proto, unsigned ext_port, bool want,
			   double seconds)
{
	double deadline = h_now() + seconds;

	for (;;) {
		int m = h_router_mapping(r, proto, ext_port, NULL, 0);

		if (m >= 0 && (m == 1) == want)
			return true;
		if (h_now() > deadline)
			return false;
		rn_sleep(0.05);
	}
}

/* ---- traffic from the WAN ---- */

static bool rn_connect(struct h_router *r, int fd, const struct sockaddr_in *to, double deadline)
{
	struct pollfd pf = { .fd = fd, .events = POLLOUT };
	int err = 0;
	socklen_t el = sizeof(err);

	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	if (connect(fd, (const struct sockaddr *)to, sizeof(*to)) == 0)
		return true;
	if (errno != EINPROGRESS) {
		rn_why(r, "connect: %s", strerror(errno));
		return false;
	}
	while (poll(&pf, 1, 50) == 0) {
		if (h_now() > deadline) {
			rn_why(r, "connect: no answer in time");
			return false;
		}
	}
	getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
	if (err) {
		rn_why(r, "connect: %s", strerror(err));
		return false;
	}
	return true;
}

bool h_router_wan_exchange(struct h_router *r, const char *proto, unsigned port, double seconds)
{
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	double deadline = h_now() + seconds;
	bool udp = !strcmp(proto, "udp");
	int fd, rc;

	inet_pton(AF_INET, r->wan_addr, &to.sin_addr);
	fd = rn_socket(r->wan, AF_INET, udp ? SOCK_DGRAM : SOCK_STREAM, 0);
	if (fd < 0) {
		rn_why(r, "socket in %s: %s", r->wan, strerror(errno));
		return false;
	}
	if (!udp) {
		if (!rn_connect(r, fd, &to, deadline)) {
			close(fd);
			return false;
		}
		rc = h_echo_exchange(fd, 65536, (uint64_t)port * 7919, deadline - h_now());
		close(fd);
		if (rc != 0)
			rn_why(r, "TCP %s:%u: the echo did not come back whole (%d)", r->wan_addr, port, rc);
		return rc == 0;
	}
	/* Connected: an ICMP port unreachable (nothing mapped) is ECONNREFUSED. */
	if (connect(fd, (struct sockaddr *)&to, sizeof(to)) < 0) {
		rn_why(r, "connect: %s", strerror(errno));
		close(fd);
		return false;
	}
	{
		unsigned char out[1000], in[1500];
		struct h_stream s;
		double next = 0;

		h_stream_init(&s, (uint64_t)port * 104729 + (uint64_t)getpid());
		h_stream_fill(&s, out, sizeof(out));
		for (;;) {
			struct pollfd pf = { .fd = fd, .events = POLLIN };
			ssize_t n;

			if (h_now() >= next) {
				if (send(fd, out, sizeof(out), 0) < 0 && errno != ECONNREFUSED) {
					rn_why(r, "send: %s", strerror(errno));
					break;
				}
				next = h_now() + 0.25;
			}
			if (poll(&pf, 1, 50) == 1) {
				n = recv(fd, in, sizeof(in), 0);
				if (n < 0) {
					rn_why(r, "UDP %s:%u: %s", r->wan_addr, port, strerror(errno));
					break;
				}
				if (n == (ssize_t)sizeof(out) && !memcmp(in, out, sizeof(out))) {
					close(fd);
					return true;
				}
				rn_why(r, "UDP %s:%u: %zd bytes came back, not the 1000 sent", r->wan_addr, port, n);
				break;
			}
			if (h_now() > deadline) {
				rn_why(r, "UDP %s:%u: no echo in time", r->wan_addr, port);
				break;
			}
		}
	}
	close(fd);
	return false;
}

/* ---- PCP ---- */

int h_router_pcp_map(struct h_router *r, const char *proto, unsigned int_port, unsigned ext_port,
		     unsigned lifetime, struct h_pcp_reply *rep)
{
	struct sockaddr_in gw = { .sin_family = AF_INET, .sin_port = htons(RN_PCP_PORT) };
	struct sockaddr_in me = { .sin_family = AF_INET };
	unsigned char req[60], res[1100];
	uint32_t v32;
	uint16_t v16;
	struct pollfd pf;
	double deadline = h_now() + 2, next = 0;
	int fd, result = -1;

	memset(rep, 0, sizeof(*rep));
	rep->result = -1;
	inet_pton(AF_INET, r->gw_addr, &gw.sin_addr);
	inet_pton(AF_INET, r->lan_addr, &me.sin_addr);
	/* The header: version 2, MAP, lifetime, the client's address (IPv4-mapped). */
	memset(req, 0, sizeof(req));
	req[0] = 2;
	req[1] = 1;
	v32 = htonl(lifetime);
	memcpy(req + 4, &v32, 4);
	req[18] = req[19] = 0xff;
	memcpy(req + 20, &me.sin_addr, 4);
	/* MAP: nonce, protocol, internal port, suggested external port and
	 * address (::ffff:0.0.0.0, any IPv4). */
	memcpy(req + 24, "portfwd-test", 12);
	req[34] = (unsigned char)(int_port >> 8);
	req[35] = (unsigned char)int_port;
	req[36] = !strcmp(proto, "udp") ? 17 : 6;
	v16 = htons((uint16_t)int_port);
	memcpy(req + 40, &v16, 2);
	v16 = htons((uint16_t)ext_port);
	memcpy(req + 42, &v16, 2);
	req[54] = req[55] = 0xff;

	fd = rn_socket(r->lan, AF_INET, SOCK_DGRAM, 0);
	if (fd < 0) {
		rn_why(r, "socket in %s: %s", r->lan, strerror(errno));
		return -1;
	}
	if (bind(fd, (struct sockaddr *)&me, sizeof(me)) < 0 ||
	    connect(fd, (struct sockaddr *)&gw, sizeof(gw)) < 0) {
		rn_why(r, "PCP socket: %s", strerror(errno));
		close(fd);
		return -1;
	}
	rn_why(r, "PCP: no answer from %s:%d within 2 s", r->gw_addr, RN_PCP_PORT);
	while (h_now() < deadline) {
		ssize_t n;

		if (h_now() >= next) {
			send(fd, req, sizeof(req), 0);
			next = h_now() + 0.25;
		}
		pf = (struct pollfd){ .fd = fd, .events = POLLIN };
		if (poll(&pf, 1, 50) != 1)
			continue;
		n = recv(fd, res, sizeof(res), 0);
		if (n < 0) {
			rn_why(r, "PCP: %s", strerror(errno));
			break;
		}
		/* Version 2, a MAP response, our nonce. */
		if (n < 60 || res[0] != 2 || res[1] != 0x81 || memcmp(res + 24, req + 24, 12) != 0)
			continue;
		result = res[3];
		memcpy(&v32, res + 4, 4);
		rep->lifetime = ntohl(v32);
		memcpy(&v32, res + 8, 4);
		rep->epoch = ntohl(v32);
		memcpy(&v16, res + 42, 2);
		rep->ext_port = ntohs(v16);
		if (!memcmp(res + 44, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12))
			inet_ntop(AF_INET, res + 56, rep->ext_addr, sizeof(rep->ext_addr));
		else
			inet_ntop(AF_INET6, res + 44, rep->ext_addr, sizeof(rep->ext_addr));
		rep->result = result;
		break;
	}
	close(fd);
	return result;
}

/* ---- the whole ---- */

void h_router_destroy(struct h_router *r)
{
	char *out = NULL;

	rn_stun_stop(r);
	if (r->miniupnpd > 0)
		h_router_stop(r, false);
	if (r->rtr[0]) {
		rn_kill_ns(r->rtr, SIGKILL, 2);
		rn_kill_ns(r->wan, SIGKILL, 2);
		rn_kill_ns(r->lan, SIGKILL, 2);
		h_sh(&out, "for ns in %s %s %s; do ip netns del $ns 2>/dev/null; done; true", r->wan, r->rtr, r->lan);
		free(out);
		out = NULL;
	}
	if (r->dir[0]) {
		h_sh(&out, "rm -rf '%s'", r->dir);
		free(out);
		r->dir[0] = '\0';
	}
	r->ok = false;
}

static void rn_setup_public(void)
{
	h_router_make(&h_rt, "11.0.0.1/24");
}

static void rn_setup_cgnat(void)
{
	h_router_make(&h_rt, "100.64.0.1/24");
}

static void rn_teardown(void)
{
	h_router_destroy(&h_rt);
}

/* Before each test, in its process: a router that has never run. */
static void rn_reset(void)
{
	if (!h_rt.ok)
		return;
	h_rt.report_private = false;
	h_rt.extra_conf = NULL;
	h_router_stop(&h_rt, true);
	unlink(h_rt.log);
}

static TCase *rn_tcase(const char *name, void (*setup)(void))
{
	TCase *tc = tcase_create(name);

	tcase_set_timeout(tc, 120);
	tcase_add_unchecked_fixture(tc, setup, rn_teardown);
	tcase_add_checked_fixture(tc, rn_reset, NULL);
	return tc;
}

TCase *h_router_tcase(const char *name)
{
	return rn_tcase(name, rn_setup_public);
}

TCase *h_router_cgnat_tcase(const char *name)
{
	return rn_tcase(name, rn_setup_cgnat);
}
