#include "access.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ctl_proto.h"

/* Ranges, first and last address included, in host order. */
struct access_r4 {
	uint32_t lo, hi;
};

struct access_u128 {
	uint64_t h, l;
};

struct access_r6 {
	struct access_u128 lo, hi;
};

struct access_set {
	_Atomic unsigned refs;
	LIST_ENTRY(access_set) link; /* in access_live */
	uint64_t digest;
	size_t n4, n6;
	struct access_r4 *r4; /* sorted by lo, disjoint and not adjacent */
	struct access_r6 *r6;
};

/*
 * The live sets, for interning. Taken when a set is built (main thread,
 * at configuration load) and when one is freed (any thread, rarely); never
 * on a lookup.
 */
static pthread_mutex_t access_lock = PTHREAD_MUTEX_INITIALIZER;
static LIST_HEAD(, access_set) access_live = LIST_HEAD_INITIALIZER(access_live);

/* ---- prefixes ---- */

static unsigned access_family_bits(int family)
{
	return family == AF_INET ? 32 : 128;
}

/* Clears the bits of ADDR past LEN; returns true if any was set. */
static bool access_mask(unsigned char *addr, unsigned len, unsigned bits)
{
	bool changed = false;

	for (unsigned i = 0; i < bits / 8; i++) {
		unsigned keep = len >= (i + 1) * 8 ? 8 : len > i * 8 ? len - i * 8 : 0;
		unsigned char m = (unsigned char)(keep ? 0xff << (8 - keep) : 0);

		changed |= (addr[i] & ~m) != 0;
		addr[i] &= m;
	}
	return changed;
}

int access_prefix_parse(const char *text, struct access_prefix *p, char *err, size_t errlen)
{
	static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	char addr[ACCESS_ENTRY_MAX + 1], net[ACCESS_PREFIX_STRLEN];
	const char *slash = strchr(text, '/');
	size_t alen = slash ? (size_t)(slash - text) : strlen(text);
	unsigned bits;

	memset(p, 0, sizeof(*p));
	if (!*text) {
		snprintf(err, errlen, "an empty entry");
		return -1;
	}
	if (strlen(text) > ACCESS_ENTRY_MAX) {
		snprintf(err, errlen, "longer than %d characters", ACCESS_ENTRY_MAX);
		return -1;
	}
	memcpy(addr, text, alen);
	addr[alen] = '\0';
	if (inet_pton(AF_INET, addr, p->addr) == 1)
		p->family = AF_INET;
	else if (inet_pton(AF_INET6, addr, p->addr) == 1)
		p->family = AF_INET6;
	else {
		snprintf(err, errlen, "not an IPv4 or IPv6 address%s",
			 slash ? "" : " or CIDR (address/length)");
		return -1;
	}
	bits = access_family_bits(p->family);
	p->len = bits;
	if (slash) {
		const char *n = slash + 1;
		unsigned long v = 0;

		if (!*n) {
			snprintf(err, errlen, "the prefix length after \"/\" is missing");
			return -1;
		}
		for (const char *c = n; *c; c++) {
			if (!isdigit((unsigned char)*c) || c - n >= 3) {
				snprintf(err, errlen, "prefix length \"%.8s\" is not a number of bits (0-%u)",
					 n, bits);
				return -1;
			}
			v = v * 10 + (unsigned long)(*c - '0');
		}
		if (v > bits) {
			snprintf(err, errlen, "prefix length %lu is out of range for %s (0-%u)", v,
				 p->family == AF_INET ? "IPv4" : "IPv6", bits);
			return -1;
		}
		p->len = (unsigned)v;
	}
	if (access_mask(p->addr, p->len, bits)) {
		snprintf(err, errlen, "bits are set past the /%u prefix (the network is %s)", p->len,
			 access_prefix_format(p, net, sizeof(net)));
		return -1;
	}
	/* ::ffff:a.b.c.d/len, len >= 96: the IPv4 prefix, as clients are matched. */
	if (p->family == AF_INET6 && p->len >= 96 && memcmp(p->addr, mapped, 12) == 0) {
		memmove(p->addr, p->addr + 12, 4);
		memset(p->addr + 4, 0, 12);
		p->family = AF_INET;
		p->len -= 96;
	}
	return 0;
}

const char *access_prefix_format(const struct access_prefix *p, char *buf, size_t len)
{
	char a[INET6_ADDRSTRLEN];

	if (!inet_ntop(p->family, p->addr, a, sizeof(a)))
		snprintf(a, sizeof(a), "?");
	if (p->len == access_family_bits(p->family))
		snprintf(buf, len, "%s", a);
	else
		snprintf(buf, len, "%s/%u", a, p->len);
	return buf;
}

static struct access_u128 access_u128_load(const unsigned char *b)
{
	struct access_u128 v = { 0, 0 };

	for (int i = 0; i < 8; i++) {
		v.h = v.h << 8 | b[i];
		v.l = v.l << 8 | b[8 + i];
	}
	return v;
}

static int access_u128_cmp(struct access_u128 a, struct access_u128 b)
{
	if (a.h != b.h)
		return a.h < b.h ? -1 : 1;
	return a.l < b.l ? -1 : a.l > b.l;
}

/*
 * The family and value of SA's address, IPv4-mapped IPv6 as IPv4. Returns
 * AF_INET (*V4 set), AF_INET6 (*V6 set) or 0 for anything else.
 */
static int access_key(const struct sockaddr *sa, uint32_t *v4, struct access_u128 *v6)
{
	if (sa->sa_family == AF_INET) {
		*v4 = ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr);
		return AF_INET;
	}
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a)) {
			*v4 = (uint32_t)a->s6_addr[12] << 24 | (uint32_t)a->s6_addr[13] << 16 |
			      (uint32_t)a->s6_addr[14] << 8 | a->s6_addr[15];
			return AF_INET;
		}
		*v6 = access_u128_load(a->s6_addr);
		return AF_INET6;
	}
	return 0;
}

/* The first and last address of P. */
static struct access_r4 access_r4_of(const struct access_prefix *p)
{
	uint32_t a = (uint32_t)p->addr[0] << 24 | (uint32_t)p->addr[1] << 16 |
		     (uint32_t)p->addr[2] << 8 | p->addr[3];
	uint32_t host = p->len == 0 ? UINT32_MAX : p->len == 32 ? 0 : UINT32_MAX >> p->len;

	return (struct access_r4){ a, a | host };
}

static struct access_r6 access_r6_of(const struct access_prefix *p)
{
	struct access_u128 a = access_u128_load(p->addr), last = a;

	if (p->len < 64) {
		last.h |= p->len == 0 ? UINT64_MAX : UINT64_MAX >> p->len;
		last.l = UINT64_MAX;
	} else if (p->len < 128) {
		last.l |= p->len == 64 ? UINT64_MAX : UINT64_MAX >> (p->len - 64);
	}
	return (struct access_r6){ a, last };
}

bool access_prefix_contains(const struct access_prefix *p, const struct sockaddr *sa)
{
	struct access_u128 v6;
	uint32_t v4;
	int family = access_key(sa, &v4, &v6);

	if (family != p->family)
		return false;
	if (family == AF_INET) {
		struct access_r4 r = access_r4_of(p);

		return v4 >= r.lo && v4 <= r.hi;
	}
	struct access_r6 r = access_r6_of(p);

	return access_u128_cmp(v6, r.lo) >= 0 && access_u128_cmp(v6, r.hi) <= 0;
}

/* ---- building ---- */

static void *(*access_realloc)(void *, size_t) = realloc;

void access_set_realloc(void *(*fn)(void *, size_t))
{
	access_realloc = fn ? fn : realloc;
}

/* Makes room for one more element of SIZE in *ARR (N used of *CAP). */
static bool access_grow(void **arr, size_t n, size_t *cap, size_t size)
{
	void *grown;
	size_t want;

	if (n < *cap)
		return true;
	want = *cap ? *cap * 2 : 16;
	grown = access_realloc(*arr, want * size);
	if (!grown)
		return false;
	*arr = grown;
	*cap = want;
	return true;
}

/* Once out of memory, a builder takes nothing more: finish says so. */
static void access_add_r4(struct access_builder *b, struct access_r4 r)
{
	if (b->oom)
		return;
	if (!access_grow((void **)&b->r4, b->n4, &b->cap4, sizeof(r))) {
		b->oom = true;
		return;
	}
	b->r4[b->n4++] = r;
}

static void access_add_r6(struct access_builder *b, struct access_r6 r)
{
	if (b->oom)
		return;
	if (!access_grow((void **)&b->r6, b->n6, &b->cap6, sizeof(r))) {
		b->oom = true;
		return;
	}
	b->r6[b->n6++] = r;
}

void access_builder_add(struct access_builder *b, const struct access_prefix *p)
{
	if (p->family == AF_INET)
		access_add_r4(b, access_r4_of(p));
	else
		access_add_r6(b, access_r6_of(p));
}

void access_builder_add_set(struct access_builder *b, const struct access_set *s)
{
	for (size_t i = 0; s && i < s->n4; i++)
		access_add_r4(b, s->r4[i]);
	for (size_t i = 0; s && i < s->n6; i++)
		access_add_r6(b, s->r6[i]);
}

void access_builder_free(struct access_builder *b)
{
	free(b->r4);
	free(b->r6);
	memset(b, 0, sizeof(*b));
}

static int access_r4_cmp(const void *a, const void *b)
{
	const struct access_r4 *x = a, *y = b;

	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static int access_r6_cmp(const void *a, const void *b)
{
	const struct access_r6 *x = a, *y = b;

	return access_u128_cmp(x->lo, y->lo);
}

/* Sorts and merges overlapping and adjacent ranges; returns how many remain. */
static size_t access_merge4(struct access_r4 *r, size_t n)
{
	size_t out = 0;

	if (n == 0)
		return 0; /* qsort wants an array, even of none */
	qsort(r, n, sizeof(*r), access_r4_cmp);
	for (size_t i = 0; i < n; i++) {
		/* Touches the last one kept: r[i].lo <= hi + 1, without overflow. */
		if (out && (r[out - 1].hi == UINT32_MAX || r[i].lo <= r[out - 1].hi + 1)) {
			if (r[i].hi > r[out - 1].hi)
				r[out - 1].hi = r[i].hi;
		} else {
			r[out++] = r[i];
		}
	}
	return out;
}

static size_t access_merge6(struct access_r6 *r, size_t n)
{
	size_t out = 0;

	if (n == 0)
		return 0; /* qsort wants an array, even of none */
	qsort(r, n, sizeof(*r), access_r6_cmp);
	for (size_t i = 0; i < n; i++) {
		if (out) {
			struct access_u128 next = r[out - 1].hi;
			bool top = next.h == UINT64_MAX && next.l == UINT64_MAX;

			/* next = hi + 1 */
			if (++next.l == 0)
				next.h++;
			if (top || access_u128_cmp(r[i].lo, next) <= 0) {
				if (access_u128_cmp(r[i].hi, r[out - 1].hi) > 0)
					r[out - 1].hi = r[i].hi;
				continue;
			}
		}
		r[out++] = r[i];
	}
	return out;
}

/* FNV-1a over the ranges: only to find candidates for interning. */
static uint64_t access_digest(const struct access_set *s)
{
	const unsigned char *p[2] = { (const unsigned char *)s->r4, (const unsigned char *)s->r6 };
	size_t len[2] = { s->n4 * sizeof(*s->r4), s->n6 * sizeof(*s->r6) };
	uint64_t h = 1469598103934665603ULL ^ s->n4 ^ (s->n6 << 32);

	for (int k = 0; k < 2; k++)
		for (size_t i = 0; i < len[k]; i++)
			h = (h ^ p[k][i]) * 1099511628211ULL;
	return h;
}

static bool access_set_same(const struct access_set *a, const struct access_set *b)
{
	return a->digest == b->digest && a->n4 == b->n4 && a->n6 == b->n6 &&
	       (a->n4 == 0 || memcmp(a->r4, b->r4, a->n4 * sizeof(*a->r4)) == 0) &&
	       (a->n6 == 0 || memcmp(a->r6, b->r6, a->n6 * sizeof(*a->r6)) == 0);
}

static void access_set_free(struct access_set *s)
{
	free(s->r4);
	free(s->r6);
	free(s);
}

/* A reference to the live set with S's addresses, S itself if none. */
static struct access_set *access_intern(struct access_set *s)
{
	struct access_set *o;

	pthread_mutex_lock(&access_lock);
	LIST_FOREACH(o, &access_live, link) {
		unsigned refs = atomic_load(&o->refs);

		if (!access_set_same(o, s))
			continue;
		/* A set whose last reference is gone is on its way out: never revive it. */
		while (refs > 0 && !atomic_compare_exchange_weak(&o->refs, &refs, refs + 1))
			;
		if (refs > 0) {
			pthread_mutex_unlock(&access_lock);
			access_set_free(s);
			return o;
		}
	}
	LIST_INSERT_HEAD(&access_live, s, link);
	pthread_mutex_unlock(&access_lock);
	return s;
}

struct access_set *access_builder_finish(struct access_builder *b)
{
	struct access_set *s = b->oom ? NULL : calloc(1, sizeof(*s));

	if (!s) {
		access_builder_free(b);
		return NULL;
	}
	atomic_init(&s->refs, 1);
	s->n4 = access_merge4(b->r4, b->n4);
	s->n6 = access_merge6(b->r6, b->n6);
	/* Give back what merging freed; a shrinking realloc that fails keeps the old. */
	s->r4 = s->n4 ? realloc(b->r4, s->n4 * sizeof(*s->r4)) : NULL;
	s->r6 = s->n6 ? realloc(b->r6, s->n6 * sizeof(*s->r6)) : NULL;
	if (s->n4 && !s->r4)
		s->r4 = b->r4;
	if (s->n6 && !s->r6)
		s->r6 = b->r6;
	if (!s->n4)
		free(b->r4);
	if (!s->n6)
		free(b->r6);
	memset(b, 0, sizeof(*b));
	s->digest = access_digest(s);
	return access_intern(s);
}

struct access_set *access_set_ref(struct access_set *s)
{
	if (s)
		atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
	return s;
}

void access_set_unref(struct access_set *s)
{
	/* acq_rel: the last owner sees every other owner's reads done. */
	if (!s || atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) != 1)
		return;
	pthread_mutex_lock(&access_lock);
	LIST_REMOVE(s, link);
	pthread_mutex_unlock(&access_lock);
	access_set_free(s);
}

/* ---- lookups ---- */

bool access_set_contains(const struct access_set *s, const struct sockaddr *sa)
{
	struct access_u128 v6;
	uint32_t v4;
	size_t lo = 0, hi;

	if (!s)
		return false;
	switch (access_key(sa, &v4, &v6)) {
	case AF_INET:
		/* The first range starting past the address; the one before may hold it. */
		hi = s->n4;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;

			if (s->r4[mid].lo <= v4)
				lo = mid + 1;
			else
				hi = mid;
		}
		return lo > 0 && v4 <= s->r4[lo - 1].hi;
	case AF_INET6:
		hi = s->n6;
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;

			if (access_u128_cmp(s->r6[mid].lo, v6) <= 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		return lo > 0 && access_u128_cmp(v6, s->r6[lo - 1].hi) <= 0;
	default:
		return false;
	}
}

size_t access_set_ranges4(const struct access_set *s)
{
	return s ? s->n4 : 0;
}

size_t access_set_ranges6(const struct access_set *s)
{
	return s ? s->n6 : 0;
}

/* ---- built-in lists ---- */

static const struct {
	const char *name;
	const char *entries[6];
} access_builtins[] = {
	{ "private", { "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7" } },
	{ "loopback", { "127.0.0.0/8", "::1" } },
	{ "link-local", { "169.254.0.0/16", "fe80::/10" } },
};

int access_builtin_add(const char *name, struct access_builder *b)
{
	for (size_t i = 0; i < sizeof(access_builtins) / sizeof(access_builtins[0]); i++) {
		if (strcmp(name, access_builtins[i].name) != 0)
			continue;
		for (const char *const *e = access_builtins[i].entries; *e; e++) {
			struct access_prefix p;
			char err[8];

			if (access_prefix_parse(*e, &p, err, sizeof(err)) == 0)
				access_builder_add(b, &p);
		}
		return 0;
	}
	return -1;
}

const char *access_builtin_of(const struct sockaddr *sa)
{
	for (size_t i = 0; i < sizeof(access_builtins) / sizeof(access_builtins[0]); i++) {
		for (const char *const *e = access_builtins[i].entries; *e; e++) {
			struct access_prefix p;
			char err[8];

			if (access_prefix_parse(*e, &p, err, sizeof(err)) == 0 &&
			    access_prefix_contains(&p, sa))
				return access_builtins[i].name;
		}
	}
	return NULL;
}

/* ---- list files ---- */

/* Quotes at most 64 characters of TEXT, anything unprintable as '?'. */
static void access_quote(const char *text, size_t len, char *out, size_t outlen)
{
	size_t n = 0;

	for (size_t i = 0; i < len && i < 64 && n + 2 < outlen; i++)
		out[n++] = isprint((unsigned char)text[i]) ? text[i] : '?';
	if (len > 64 && n + 5 < outlen) {
		memcpy(out + n, "...", 3);
		n += 3;
	}
	out[n] = '\0';
}

/* One line of a list file: its entry, if any, into B. Returns 0, or -1 with ERR. */
static int access_file_line(char *line, size_t len, struct access_builder *b, size_t *entries,
			    char *err, size_t errlen)
{
	char *hash = memchr(line, '#', len), *end, why[160], quoted[80];
	struct access_prefix p;

	if (memchr(line, '\0', len)) {
		snprintf(err, errlen, "the line contains a NUL byte");
		return -1;
	}
	if (hash)
		*hash = '\0';
	else
		line[len] = '\0';
	while (*line && isspace((unsigned char)*line))
		line++;
	end = line + strlen(line);
	while (end > line && isspace((unsigned char)end[-1]))
		*--end = '\0';
	if (!*line)
		return 0;
	if (access_prefix_parse(line, &p, why, sizeof(why)) < 0) {
		access_quote(line, (size_t)(end - line), quoted, sizeof(quoted));
		snprintf(err, errlen, "\"%s\": %s", quoted, why);
		return -1;
	}
	access_builder_add(b, &p);
	(*entries)++;
	return 0;
}

long access_file_read(const char *path, struct access_builder *b, size_t *entries,
		      void (*err)(void *arg, unsigned line, const char *msg), void *arg)
{
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	unsigned long long total = 0;
	char *line = NULL, msg[320];
	size_t cap = 0;
	unsigned lineno = 0;
	long bad = 0;
	struct stat st;
	ssize_t n;
	FILE *fp;
	int e;

	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0)
		e = errno;
	else
		e = !S_ISREG(st.st_mode) ? EINVAL : st.st_size > ACCESS_FILE_MAX ? EFBIG : 0;
	fp = e ? NULL : fdopen(fd, "r");
	if (!fp) {
		e = e ? e : errno;
		close(fd);
		errno = e;
		return -1;
	}
	while ((n = getline(&line, &cap, fp)) >= 0) {
		lineno++;
		/* The file may grow while it is read: the bound holds for what is read. */
		total += (unsigned long long)n;
		if (total > ACCESS_FILE_MAX) {
			free(line);
			fclose(fp);
			errno = EFBIG;
			return -1;
		}
		if (n > 0 && line[n - 1] == '\n')
			n--;
		if (access_file_line(line, (size_t)n, b, entries, msg, sizeof(msg)) < 0) {
			bad++;
			err(arg, lineno, msg);
		}
	}
	e = ferror(fp) ? errno : 0;
	free(line);
	fclose(fp);
	if (e) {
		errno = e;
		return -1;
	}
	return bad;
}

_Static_assert(ACCESS_FILE_MAX == 67108864, "access_file_error names the limit");

const char *access_file_error(int e)
{
	/* The rest as the configuration file's own errors say it. */
	return e == EFBIG ? "larger than 67108864 bytes" : ctl_proto_file_error(e);
}

void access_lists_free(struct access_list *lists, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(lists[i].file);
		access_set_unref(lists[i].set);
	}
	free(lists);
}

/* ---- policies ---- */

struct access_policy *access_policy_new(struct access_set *allow, const char *allow_text,
					struct access_set *deny, const char *deny_text, bool *oom)
{
	struct access_policy *p;

	if (!allow && !deny)
		return NULL;
	p = calloc(1, sizeof(*p));
	if (!p || (allow && !(p->allow_text = strdup(allow_text ? allow_text : ""))) ||
	    (deny && !(p->deny_text = strdup(deny_text ? deny_text : "")))) {
		if (p)
			free(p->allow_text);
		free(p);
		*oom = true;
		return NULL;
	}
	atomic_init(&p->refs, 1);
	p->allow = access_set_ref(allow);
	p->deny = access_set_ref(deny);
	return p;
}

struct access_policy *access_policy_ref(struct access_policy *p)
{
	if (p)
		atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
	return p;
}

void access_policy_unref(struct access_policy *p)
{
	if (!p || atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) != 1)
		return;
	access_set_unref(p->allow);
	access_set_unref(p->deny);
	free(p->allow_text);
	free(p->deny_text);
	free(p);
}

bool access_policy_equal(const struct access_policy *a, const struct access_policy *b)
{
	/* Interned sets: the same addresses are the same set. */
	return (a ? a->allow : NULL) == (b ? b->allow : NULL) &&
	       (a ? a->deny : NULL) == (b ? b->deny : NULL);
}

bool access_set_covers_family(const struct access_set *s, int family)
{
	if (!s)
		return false;
	if (family == AF_INET)
		return s->n4 == 1 && s->r4[0].lo == 0 && s->r4[0].hi == UINT32_MAX;
	return s->n6 == 1 && s->r6[0].lo.h == 0 && s->r6[0].lo.l == 0 &&
	       s->r6[0].hi.h == UINT64_MAX && s->r6[0].hi.l == UINT64_MAX;
}

bool access_policy_has_allow(const struct access_policy *p)
{
	return p && p->allow;
}

enum access_verdict access_policy_check(const struct access_policy *p, const struct sockaddr *sa)
{
	if (!p)
		return ACCESS_ALLOWED;
	if (p->deny && access_set_contains(p->deny, sa))
		return ACCESS_DENIED_LIST;
	if (p->allow && !access_set_contains(p->allow, sa))
		return ACCESS_NOT_ALLOWED;
	return ACCESS_ALLOWED;
}
