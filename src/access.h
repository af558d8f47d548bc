/*
 * Who may connect, as data: immutable, reference-counted sets of IPv4 and
 * IPv6 addresses, the parser of their entries ("192.0.2.7", "10.0.0.0/8",
 * "fd00::/8"), the built-in lists, list files, and a rule's policy (an
 * allow set and a deny set). It knows nothing of connections: the data path
 * asks access_policy_check() about one address.
 *
 * A set is sorted, merged ranges per family, looked up by binary search:
 * about 18 comparisons for 200,000 entries, 4 for 10, and never a scan.
 * Sets are interned: building a set with the same addresses as one still
 * alive returns that one, so a list named by many rules (or kept by a
 * reload) exists once, and two sets are the same addresses exactly when
 * they are the same pointer. References may be dropped on any thread.
 */
#ifndef PORTFWD_ACCESS_H
#define PORTFWD_ACCESS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Longest list name, as a rule name. */
#define ACCESS_NAME_MAX 64
/* The most bytes of one list file (200,000 CIDRs are about 4 MB). */
#define ACCESS_FILE_MAX (64 << 20)
/* The most characters of one entry worth reading (an IPv6 CIDR is <= 43). */
#define ACCESS_ENTRY_MAX 128
/* "ffff:...:ffff/128" and a NUL, or an IPv4 CIDR. */
#define ACCESS_PREFIX_STRLEN 50

/* An address and how many of its leading bits count. */
struct access_prefix {
	int family;             /* AF_INET or AF_INET6 */
	unsigned char addr[16]; /* network order; IPv4 in the first 4 bytes */
	unsigned len;           /* 0-32 or 0-128 */
};

/*
 * Parses an address ("192.0.2.7", "2001:db8::1") or a CIDR
 * ("10.0.0.0/8", "fd00::/8"). An IPv4-mapped IPv6 prefix
 * ("::ffff:192.0.2.0/120") is taken as the IPv4 one it maps. Bits set past
 * the prefix are an error (a typo more often than not). Returns 0, or -1
 * with a sentence in ERR.
 */
int access_prefix_parse(const char *text, struct access_prefix *p, char *err, size_t errlen);

/* "10.0.0.0/8", or the bare address for a single one (/32, /128). */
const char *access_prefix_format(const struct access_prefix *p, char *buf, size_t len);

/* True if P covers the address of SA (IPv4-mapped IPv6 taken as IPv4). */
bool access_prefix_contains(const struct access_prefix *p, const struct sockaddr *sa);

struct access_set;

/* Collects prefixes and sets for one new set. Zero it to start. */
struct access_builder {
	struct access_r4 *r4;
	size_t n4, cap4;
	struct access_r6 *r6;
	size_t n6, cap6;
	bool oom;
};

/* Adds P, or every address of S. Out of memory shows in finish. */
void access_builder_add(struct access_builder *b, const struct access_prefix *p);
void access_builder_add_set(struct access_builder *b, const struct access_set *s);

/*
 * Sorts and merges what B holds into a set and returns a reference to it,
 * or to the live set with the same addresses. B is left empty. NULL when
 * out of memory.
 */
struct access_set *access_builder_finish(struct access_builder *b);

/* Frees what B holds (after an error, instead of finish). */
void access_builder_free(struct access_builder *b);

/* For tests of running out of memory: the builders grow with FN instead of
 * realloc(3); NULL restores realloc. */
void access_set_realloc(void *(*fn)(void *, size_t));

struct access_set *access_set_ref(struct access_set *s);
void access_set_unref(struct access_set *s);

/* True if SA's address is in S (IPv4-mapped IPv6 is matched as IPv4).
 * S may be NULL (the empty set). */
bool access_set_contains(const struct access_set *s, const struct sockaddr *sa);

/* True if S holds every address of FAMILY (AF_INET: 0.0.0.0/0, AF_INET6:
 * ::/0, or ranges that add up to it): an allow list that keeps nobody of
 * that family out. */
bool access_set_covers_family(const struct access_set *s, int family);

/* Merged ranges of each family: what the set costs, and its size. */
size_t access_set_ranges4(const struct access_set *s);
size_t access_set_ranges6(const struct access_set *s);

/*
 * The built-in list NAME ("private": RFC 1918, 100.64.0.0/10, fc00::/7;
 * "loopback"; "link-local") added to B. Returns 0, or -1 if there is no
 * such list. ACCESS_BUILTINS names them for messages.
 */
int access_builtin_add(const char *name, struct access_builder *b);
#define ACCESS_BUILTINS "private, loopback, link-local"

/* The built-in list that holds SA's address ("private", "loopback",
 * "link-local"; IPv4-mapped IPv6 as IPv4), or NULL: a public address (or
 * a wildcard, which the caller tells apart). */
const char *access_builtin_of(const struct sockaddr *sa);

/*
 * Reads the list file PATH: one address or CIDR a line, "#" starts a
 * comment, blank lines and spaces around an entry are ignored. A regular
 * file of at most ACCESS_FILE_MAX bytes, opened without blocking. Each bad
 * line is passed to ERR (its line number and a sentence); the good ones go
 * into B and count in *ENTRIES. Returns the number of bad lines, or -1
 * with errno when the file cannot be read (EINVAL: not a regular file,
 * EFBIG: too large).
 */
long access_file_read(const char *path, struct access_builder *b, size_t *entries,
		      void (*err)(void *arg, unsigned line, const char *msg), void *arg);

/* What access_file_read's errno E means. */
const char *access_file_error(int e);

/* A named list of the configuration (lists = { NAME = ...; }), as status shows it. */
struct access_list {
	char name[ACCESS_NAME_MAX + 1];
	char *file;     /* the list file it was read from, or NULL */
	size_t entries; /* as written: the entries, or the file's lines with one */
	struct access_set *set;
	int line;       /* where it is defined */
};

/* Drops the sets and frees N LISTS. */
void access_lists_free(struct access_list *lists, size_t n);

/* The verdict on one client. */
enum access_verdict {
	ACCESS_ALLOWED = 0,
	ACCESS_DENIED_LIST,  /* on the deny list */
	ACCESS_NOT_ALLOWED,  /* not on the allow list */
};

/*
 * A rule's allow and deny sets, immutable and reference-counted: the rule's
 * snapshot holds one, so a worker never reads what a reload rewrites.
 * Deny wins; without an allow set everyone not denied is allowed. A rule
 * without either has no policy at all (NULL), which allows everyone.
 */
struct access_policy {
	_Atomic unsigned refs;
	struct access_set *allow; /* NULL: everyone */
	struct access_set *deny;  /* NULL: nobody */
	char *allow_text;         /* the entries as written ("@lan, 203.0.113.7"), for people */
	char *deny_text;
};

/* Takes a reference to each set (either may be NULL); the texts are copied
 * (NULL with no set). Returns NULL when both sets are NULL, or out of memory
 * (*OOM set). */
struct access_policy *access_policy_new(struct access_set *allow, const char *allow_text,
					struct access_set *deny, const char *deny_text, bool *oom);
struct access_policy *access_policy_ref(struct access_policy *p);
void access_policy_unref(struct access_policy *p);

/* Same addresses allowed and denied (the texts may differ). */
bool access_policy_equal(const struct access_policy *a, const struct access_policy *b);

/* True if the policy admits only the addresses of an allow list. */
bool access_policy_has_allow(const struct access_policy *p);

/* The verdict on the client at SA; P may be NULL (everyone allowed). */
enum access_verdict access_policy_check(const struct access_policy *p, const struct sockaddr *sa);

#endif
