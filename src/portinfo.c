#include "portinfo.h"

#include <dirent.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rule.h"

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
