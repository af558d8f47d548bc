#include "portinfo.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rule.h"
#include "suggest.h"

const char *portinfo_range(unsigned port)
{
	if (port < 1024)
		return "well-known";
	if (port < 49152)
		return "registered";
	return "dynamic";
}

/* Finds the inode and owner of a socket on PORT in one /proc/net table. */
static int portinfo_scan_table(const char *table, unsigned port,
			       unsigned want_state, unsigned long *inode,
			       unsigned *uid)
{
	char line[512];
	FILE *fp = fopen(table, "r");
	int found = -1;

	if (!fp)
		return -1;
	if (!fgets(line, sizeof(line), fp)) { /* header */
		fclose(fp);
		return -1;
	}
	while (fgets(line, sizeof(line), fp)) {
		unsigned lport, state, u;
		unsigned long ino;

		if (sscanf(line, " %*d: %*[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x %x %*x:%*x %*x:%*x %*x %u %*d %lu",
			   &lport, &state, &u, &ino) != 4)
			continue;
		if (lport == port && state == want_state && ino != 0) {
			*inode = ino;
			*uid = u;
			found = 0;
			break;
		}
	}
	fclose(fp);
	return found;
}

/* Finds the process with an fd on socket INODE. Returns its pid or -1. */
static long portinfo_find_pid(unsigned long inode, char *comm, size_t commlen)
{
	char want[64], path[600], link[64];
	DIR *proc = opendir("/proc");
	struct dirent *de;
	long pid = -1;

	if (!proc)
		return -1;
	snprintf(want, sizeof(want), "socket:[%lu]", inode);
	while (pid < 0 && (de = readdir(proc))) {
		DIR *fds;
		struct dirent *fe;

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/fd", de->d_name);
		fds = opendir(path);
		if (!fds)
			continue;
		while ((fe = readdir(fds))) {
			ssize_t n;

			snprintf(path, sizeof(path), "/proc/%s/fd/%s", de->d_name, fe->d_name);
			n = readlink(path, link, sizeof(link) - 1);
			if (n <= 0)
				continue;
			link[n] = '\0';
			if (strcmp(link, want) == 0) {
				pid = strtol(de->d_name, NULL, 10);
				break;
			}
		}
		closedir(fds);
	}
	closedir(proc);
	if (pid > 0) {
		FILE *fp;

		snprintf(path, sizeof(path), "/proc/%ld/comm", pid);
		comm[0] = '\0';
		if ((fp = fopen(path, "r"))) {
			if (fgets(comm, (int)commlen, fp))
				comm[strcspn(comm, "\n")] = '\0';
			fclose(fp);
		}
	}
	return pid;
}

int portinfo_holder(int socktype, unsigned port, char *out, size_t outlen)
{
	static const char *const tcp[] = { "/proc/net/tcp", "/proc/net/tcp6" };
	static const char *const udp[] = { "/proc/net/udp", "/proc/net/udp6" };
	const char *const *tables = socktype == SOCK_STREAM ? tcp : udp;
	/* TCP_LISTEN is 0x0A; a bound UDP socket shows TCP_CLOSE, 0x07. */
	unsigned state = socktype == SOCK_STREAM ? 0x0A : 0x07;
	unsigned long inode;
	unsigned uid;
	char comm[64];
	long pid;

	for (int i = 0; i < 2; i++) {
		if (portinfo_scan_table(tables[i], port, state, &inode, &uid) < 0)
			continue;
		pid = portinfo_find_pid(inode, comm, sizeof(comm));
		if (pid > 0)
			snprintf(out, outlen, "pid %ld (%s)", pid, comm[0] ? comm : "?");
		else
			snprintf(out, outlen, "a process of uid %u", uid);
		return 0;
	}
	return -1;
}

void portinfo_bind_error(int err, int socktype, const struct sockaddr *addr,
			 char *out, size_t outlen)
{
	unsigned port = rule_addr_port(addr);
	char holder[128], host[RULE_ADDR_STRLEN];

	switch (err) {
	case EACCES:
	case EPERM:
		if (port < 1024)
			snprintf(out, outlen,
				 "permission denied: port %u is in the well-known range (0-1023) and needs root or CAP_NET_BIND_SERVICE",
				 port);
		else
			snprintf(out, outlen, "permission denied: %s", strerror(err));
		break;
	case EADDRINUSE:
		if (portinfo_holder(socktype, port, holder, sizeof(holder)) == 0)
			snprintf(out, outlen, "address already in use: port %u/%s is held by %s",
				 port, socktype == SOCK_STREAM ? "tcp" : "udp", holder);
		else
			snprintf(out, outlen, "address already in use: port %u/%s is held by another socket (as root, `ss -%slnp 'sport = :%u'` shows which)",
				 port, socktype == SOCK_STREAM ? "tcp" : "udp",
				 socktype == SOCK_STREAM ? "t" : "u", port);
		break;
	case EADDRNOTAVAIL:
		rule_format_addr(addr, host, sizeof(host));
		snprintf(out, outlen, "address not available: no local interface has the address of %s", host);
		break;
	default:
		snprintf(out, outlen, "%s", strerror(err));
		break;
	}
}

/* ---- service names ---- */

/*
 * Ports that home labs forward and netbase's /etc/services (Debian 12)
 * does not name, each with where its number comes from. The database wins
 * where it names a port too.
 */
static const struct {
	const char *name;
	unsigned port;
	unsigned proto;
} portinfo_services[] = {
	{ "rdp", 3389, RULE_PROTO_TCP | RULE_PROTO_UDP },      /* IANA ms-wbt-server; the usual name */
	{ "home-assistant", 8123, RULE_PROTO_TCP },            /* Home Assistant's default web port */
	{ "jellyfin", 8096, RULE_PROTO_TCP },                  /* Jellyfin's default HTTP port */
	{ "syncthing", 22000, RULE_PROTO_TCP | RULE_PROTO_UDP }, /* Syncthing's sync protocol */
	{ "minecraft", 25565, RULE_PROTO_TCP | RULE_PROTO_UDP }, /* IANA minecraft */
	{ "plex", 32400, RULE_PROTO_TCP },                     /* Plex Media Server */
	{ "wireguard", 51820, RULE_PROTO_UDP },                /* wg-quick's customary ListenPort */
};

/* NAME's port in the services database for PROTO_NAME ("tcp", "udp"), or 0. */
static unsigned portinfo_db_port(const char *name, const char *proto_name)
{
	struct servent se, *res = NULL;
	char buf[1024];

	if (getservbyname_r(name, proto_name, &se, buf, sizeof(buf), &res) != 0 || !res)
		return 0;
	return ntohs((uint16_t)res->s_port);
}

/* NAME's port for one protocol P (RULE_PROTO_TCP or _UDP), or 0. */
static unsigned portinfo_one_port(const char *name, unsigned p)
{
	unsigned port = portinfo_db_port(name, p == RULE_PROTO_TCP ? "tcp" : "udp");

	for (size_t i = 0; !port && i < sizeof(portinfo_services) / sizeof(portinfo_services[0]); i++)
		if ((portinfo_services[i].proto & p) && strcmp(portinfo_services[i].name, name) == 0)
			port = portinfo_services[i].port;
	return port;
}

long portinfo_service_port(const char *name, unsigned proto, char *suggest, size_t len)
{
	unsigned tcp = proto & RULE_PROTO_TCP ? portinfo_one_port(name, RULE_PROTO_TCP) : 0;
	unsigned udp = proto & RULE_PROTO_UDP ? portinfo_one_port(name, RULE_PROTO_UDP) : 0;
	size_t d = (size_t)-1;
	struct servent se, *res;
	char buf[1024];

	if (len)
		suggest[0] = '\0';
	if (tcp && udp && tcp != udp)
		return -1;
	if (tcp || udp)
		return tcp ? tcp : udp;
	if (!len)
		return 0;
	/* Unknown: the closest name of either table, for any protocol asked. */
	for (size_t i = 0; i < sizeof(portinfo_services) / sizeof(portinfo_services[0]); i++)
		if (portinfo_services[i].proto & proto)
			suggest_offer(name, portinfo_services[i].name, suggest, len, &d);
	setservent(0);
	while (getservent_r(&se, buf, sizeof(buf), &res) == 0 && res) {
		if (!((proto & RULE_PROTO_TCP) && strcmp(res->s_proto, "tcp") == 0) &&
		    !((proto & RULE_PROTO_UDP) && strcmp(res->s_proto, "udp") == 0))
			continue;
		suggest_offer(name, res->s_name, suggest, len, &d);
		for (char **alias = res->s_aliases; alias && *alias; alias++)
			suggest_offer(name, *alias, suggest, len, &d);
	}
	endservent();
	return 0;
}
