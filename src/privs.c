#include "privs.h"

#include <cap-ng.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

int privs_drop(uid_t uid, gid_t gid, bool keep_bind, bool keep_raw, char *err, size_t errlen)
{
	int rc;

	capng_clear(CAPNG_SELECT_BOTH);
	if (keep_bind &&
	    capng_update(CAPNG_ADD, CAPNG_EFFECTIVE | CAPNG_PERMITTED, CAP_NET_BIND_SERVICE) < 0) {
		snprintf(err, errlen, "cannot keep CAP_NET_BIND_SERVICE");
		return -1;
	}
	if (keep_raw && capng_update(CAPNG_ADD, CAPNG_EFFECTIVE | CAPNG_PERMITTED, CAP_NET_RAW) < 0) {
		snprintf(err, errlen, "cannot keep CAP_NET_RAW");
		return -1;
	}
	/* setgroups(0), setresgid, setresuid keeping the set above, bounding set cleared. */
	rc = capng_change_id((int)uid, (int)gid, CAPNG_DROP_SUPP_GRP | CAPNG_CLEAR_BOUNDING);
	if (rc != 0) {
		snprintf(err, errlen, "cannot become uid %u gid %u (capng_change_id: %d, %s)",
			 (unsigned)uid, (unsigned)gid, rc, strerror(errno));
		return -1;
	}
	if (getuid() != uid || geteuid() != uid || getgid() != gid || getegid() != gid) {
		snprintf(err, errlen, "still uid %u/%u gid %u/%u after changing to %u:%u",
			 (unsigned)getuid(), (unsigned)geteuid(), (unsigned)getgid(),
			 (unsigned)getegid(), (unsigned)uid, (unsigned)gid);
		return -1;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
		snprintf(err, errlen, "cannot set no_new_privs: %s", strerror(errno));
		return -1;
	}
	return 0;
}

bool privs_can_bind_low(void)
{
	/* Root may lack it too (a container, a unit's CapabilityBoundingSet):
	 * the capability is what the kernel asks for. */
	if (capng_get_caps_process() < 0)
		return geteuid() == 0;
	return capng_have_capability(CAPNG_EFFECTIVE, CAP_NET_BIND_SERVICE);
}
