# portfwd: plain GNU make. `make`, `make run`, `make check`, `make check SANITIZE=1`, `make deb`.

# The one version: src/version.h. The binaries, the man pages (installed),
# the package (debian/changelog must agree; `make deb` checks) all read it.
VERSION := $(shell sed -n 's/^\#define PORTFWD_VERSION "\(.*\)"$$/\1/p' src/version.h)

PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
SBINDIR ?= $(PREFIX)/sbin
MANDIR ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
# systemd reads units, sysusers.d and tmpfiles.d from /usr/local/lib as well as /usr/lib.
UNITDIR ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
COMPLETIONDIR ?= $(PREFIX)/share/bash-completion/completions
# auto: after a real install (no DESTDIR) on a running systemd, create the
# portfwd user and reload systemd; no: never (tests, packaging).
SYSTEMD_SETUP ?= auto
CC ?= cc
PKG_CONFIG ?= pkg-config

# yes: every compile and link first runs scripts/install-deps (quick when
# nothing is missing); no: never (package builds, which have Build-Depends).
INSTALL_DEPS ?= yes

PKGS := libevent libevent_pthreads libconfig jansson libcap-ng miniupnpc
# pkg-config is asked when the first recipe that needs its answer runs, which
# is after `deps` (an order-only prerequisite of every compile and link) has
# installed the -dev packages, and the answer is kept for the rest of the run.
# Asked while the Makefile is read, a fresh machine's first build would get
# no flags at all and fail to compile or link.
pkg = $(eval $1 := $$(shell $(PKG_CONFIG) $2 2>/dev/null))$(if $(filter 0,$(.SHELLSTATUS)),$($1),$(error \
	$(PKG_CONFIG) $2: $(shell $(PKG_CONFIG) --print-errors $2 2>&1 >/dev/null) (scripts/install-deps installs what is missing)))
PKG_CFLAGS = $(call pkg,PKG_CFLAGS,--cflags $(PKGS))
PKG_LIBS = $(call pkg,PKG_LIBS,--libs $(PKGS))
CHECK_CFLAGS = $(call pkg,CHECK_CFLAGS,--cflags check)
# (pkg redefines the variable it fills: what is added goes outside it.)
CHECK_PKG_LIBS = $(call pkg,CHECK_PKG_LIBS,--libs check)
CHECK_LIBS = $(CHECK_PKG_LIBS) -lpthread

CFLAGS ?= -O2 -g
WARNINGS := -Wall -Wextra -Wformat=2 -Wshadow
ifeq ($(WERROR),1)
WARNINGS += -Werror
endif
# Recursive (=), so PKG_CFLAGS is only looked at in a recipe.
ALL_CFLAGS = -std=gnu11 $(WARNINGS) -D_GNU_SOURCE $(CPPFLAGS) $(CFLAGS) $(PKG_CFLAGS)
# libnatpmp has no pkg-config file.
LIBS = $(PKG_LIBS) -lnatpmp -lm -lpthread

# Sanitizer builds live in their own tree so the objects never mix.
ifeq ($(filter-out 1 thread fuzz,$(SANITIZE)),)
else
$(error SANITIZE=$(SANITIZE): use SANITIZE=1 (address and undefined), SANITIZE=thread or SANITIZE=fuzz)
endif
ifeq ($(SANITIZE),1)
BUILD := build/sanitize
ALL_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
else ifeq ($(SANITIZE),fuzz)
# The fuzz harnesses (tests/fuzz, `make fuzz`): clang's libFuzzer with
# address and undefined; the library is instrumented for coverage.
BUILD := build/fuzz
CC := clang
ALL_CFLAGS += -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer \
	-fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=fuzzer,address,undefined
else ifeq ($(SANITIZE),thread)
# ThreadSanitizer, for the workers and the main thread's calls into them.
BUILD := build/tsan
ALL_CFLAGS += -fsanitize=thread -fno-omit-frame-pointer
LDFLAGS += -fsanitize=thread
else
BUILD := build/default
endif

# Every object but the two mains, so the tests can link them all.
LIB_SRCS := commands.c config.c control.c ctl_proto.c daemon.c forward.c listener.c localaddr.c log.c metrics.c portinfo.c privs.c sdnotify.c \
	relay_tcp.c relay_udp.c rule.c stats.c status.c udp_table.c worker.c \
	access.c admit.c bans.c config_access.c sources.c ratelog.c relay_sources.c
# Who may connect: interface binding and exposure warnings.
LIB_SRCS += exposure.c iface.c
# Port knowledge (the kernel's port settings), and the machine's sockets
# (portfwdctl's ports, who, free).
LIB_SRCS += suggest.c sysports.c sockets.c ports.c
# What the workers hold of a rule (relays use it, not forward.c).
LIB_SRCS += rulework.c
# Host names kept resolved (evdns).
LIB_SRCS += resolve.c
# The PROXY protocol header (relay_tcp, relay_udp).
LIB_SRCS += proxyproto.c
# Choosing a target: balance and health (targets = [ ... ]).
LIB_SRCS += targets.c
# The home router maps the ports (PCP, NAT-PMP, UPnP-IGD).
LIB_SRCS += router.c
# The read-only HTTP endpoint (evhttp) and its status page.
LIB_SRCS += http.c http_page.c
# The main loop's listeners (control, HTTP) rest when out of descriptors.
LIB_SRCS += acceptpause.c
# The data path's allocations (tests/faults.c replaces it in portfwd-faults).
LIB_SRCS += alloc.c
LIB_OBJS := $(addprefix $(BUILD)/src/,$(LIB_SRCS:.c=.o))

PORTFWD := $(BUILD)/portfwd
PORTFWDCTL := $(BUILD)/portfwdctl

UNIT_SRCS := $(wildcard tests/unit/test_*.c)
INTEGRATION_SRCS := $(wildcard tests/integration/test_*.c)
# A unit suite with the name of an integration suite (test_targets: the
# module, and the daemon using it) is built as NAME_unit.
UNIT_CLASH := $(basename $(filter $(notdir $(UNIT_SRCS)),$(notdir $(INTEGRATION_SRCS))))
UNIT_TESTS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(filter-out $(UNIT_CLASH:%=tests/unit/%.c),$(UNIT_SRCS))) \
	$(UNIT_CLASH:%=$(BUILD)/tests/%_unit)
INTEGRATION_TESTS := $(patsubst tests/integration/%.c,$(BUILD)/tests/%,$(INTEGRATION_SRCS))
# Built with the others, run only by `make check-deb` (it installs a package).
PACKAGE_TEST := $(BUILD)/tests/test_deb
HARNESS_OBJ := $(BUILD)/tests/harness.o
# A home router in network namespaces (miniupnpd), for the router mapping tests.
ROUTERNS_OBJ := $(BUILD)/tests/routerns.o
# The test daemon that fails allocations on demand (tests/faults.c in place
# of src/alloc.c): test_tcp and test_udp start it for their out-of-memory cases.
PORTFWD_FAULTS := $(BUILD)/tests/portfwd-faults
FAULTS_OBJ := $(BUILD)/tests/faults.o

# libFuzzer harnesses, one per input surface (SANITIZE=fuzz builds them).
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRCS))

# The man pages as installed: their footer names the version.
MANPAGES := $(addprefix $(BUILD)/man/,portfwd.8 portfwdctl.8 portfwd.conf.5)

# What `make deb` makes, here.
DEB = portfwd_$(VERSION)_$(shell dpkg --print-architecture).deb

.PHONY: all deps run check tests bench bench-profile fuzz fuzz-targets soak clean install uninstall deb check-deb
all: $(PORTFWD) $(PORTFWDCTL)

# Once per run, before anything that compiles or links; `make deb` and
# `make check-deb` want the package tools as well.
# The groups the goals need: building and the demo always; Check, the
# linters and the namespaces' tools for the tests; the package tools.
DEPS_GROUPS := build demo \
	$(if $(filter check tests bench soak deb check-deb,$(MAKECMDGOALS)),test) \
	$(if $(filter deb check-deb,$(MAKECMDGOALS)),deb) \
	$(if $(filter fuzz fuzz-targets,$(MAKECMDGOALS)),fuzz)
deps:
ifneq ($(INSTALL_DEPS),no)
	@scripts/install-deps $(DEPS_GROUPS)
endif

$(BUILD)/src/%.o: src/%.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(PORTFWD): $(BUILD)/src/portfwd.o $(LIB_OBJS) | deps
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# The client takes from the library only the objects it needs (ctl_proto,
# ports and what they call), as an archive lets the linker choose.
$(BUILD)/libportfwd.a: $(LIB_OBJS)
	rm -f $@
	$(AR) rcs $@ $^

$(PORTFWDCTL): $(BUILD)/src/portfwdctl.o $(BUILD)/libportfwd.a | deps
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/tests/%.o: tests/unit/%.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(CHECK_CFLAGS) -Isrc -Itests -MMD -MP -c -o $@ $<

$(BUILD)/tests/%.o: tests/integration/%.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(CHECK_CFLAGS) -Isrc -Itests -MMD -MP -c -o $@ $<

# Explicit, so the unit rule above never builds these from the unit suite.
$(UNIT_CLASH:%=$(BUILD)/tests/%.o): $(BUILD)/tests/%.o: tests/integration/%.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(CHECK_CFLAGS) -Isrc -Itests -MMD -MP -c -o $@ $<

$(BUILD)/tests/%_unit.o: tests/unit/%.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(CHECK_CFLAGS) -Isrc -Itests -MMD -MP -c -o $@ $<

$(HARNESS_OBJ) $(ROUTERNS_OBJ) $(FAULTS_OBJ): $(BUILD)/tests/%.o: tests/%.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(CHECK_CFLAGS) -Isrc -Itests -MMD -MP -c -o $@ $<

$(UNIT_TESTS): $(BUILD)/tests/%: $(BUILD)/tests/%.o $(LIB_OBJS) | deps
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) $(CHECK_LIBS)

$(BUILD)/tests/%.o: tests/package/%.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(CHECK_CFLAGS) -Isrc -Itests -MMD -MP -c -o $@ $<

$(INTEGRATION_TESTS) $(PACKAGE_TEST): $(BUILD)/tests/%: $(BUILD)/tests/%.o $(HARNESS_OBJ) $(ROUTERNS_OBJ) $(LIB_OBJS) | deps
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) $(CHECK_LIBS)

$(PORTFWD_FAULTS): $(BUILD)/src/portfwd.o $(FAULTS_OBJ) $(filter-out $(BUILD)/src/alloc.o,$(LIB_OBJS)) | deps
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/pfbench: bench/pfbench.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< -lpthread

# The benchmark against other forwarders (installs them; loopback only):
# BENCH_ROUNDS rounds over every forwarder, BENCH_SECONDS per timed run, and
# BENCH_ARGS for the script's other options (scripts/bench --help).
BENCH_ROUNDS ?= 5
BENCH_SECONDS ?= 4
bench: deps all $(BUILD)/pfbench
	@scripts/bench --portfwd $(PORTFWD) --pfbench $(BUILD)/pfbench \
		--rounds $(BENCH_ROUNDS) --seconds $(BENCH_SECONDS) $(BENCH_ARGS)

# Where the time goes in the new-connection and UDP round-trip rows (perf,
# strace): PROFILE_ROUNDS rounds, PROFILE_ARGS for the script's other
# options (scripts/bench-profile --help).
PROFILE_ROUNDS ?= 3
bench-profile: deps all $(BUILD)/pfbench
	@scripts/bench-profile --portfwd $(PORTFWD) --pfbench $(BUILD)/pfbench \
		--rounds $(PROFILE_ROUNDS) $(PROFILE_ARGS)

# Coverage-guided fuzzing of every parser (tests/fuzz): each harness runs
# FUZZ_SECONDS (default 60) from its seeds, and the script prints its
# executions, executions per second and coverage. Findings fail the run and
# are left in build/fuzz/findings.
FUZZ_SECONDS ?= 60
fuzz: deps
	@$(MAKE) --no-print-directory SANITIZE=fuzz fuzz-targets
	@scripts/fuzz --seconds $(FUZZ_SECONDS) build/fuzz/fuzz/fuzz_*

fuzz-targets: $(FUZZ_TARGETS)

$(BUILD)/fuzz/%: tests/fuzz/%.c $(BUILD)/libportfwd.a | deps
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Isrc -o $@ $< $(BUILD)/libportfwd.a $(LDFLAGS) $(LIBS)

# The soak test (scripts/soak): the daemon built with SANITIZE=1, 2 workers,
# under TCP and UDP traffic of every kind, reloads and control requests at
# once for SOAK_SECONDS (default 600; CI: 120). It fails on lost or corrupted
# data, a refused connection, a sanitizer report, or descriptors or RSS that
# keep growing after the warm-up (the rule: scripts/soak --help).
SOAK_SECONDS ?= 600
soak: deps
	@$(MAKE) --no-print-directory SANITIZE=1 all
	@scripts/soak --portfwd build/sanitize/portfwd --portfwdctl build/sanitize/portfwdctl \
		--seconds $(SOAK_SECONDS)

# The demo: loopback ports and a control socket inside the tree, no root needed.
run: deps all
	@scripts/demo $(PORTFWD) $(PORTFWDCTL)

tests: $(UNIT_TESTS) $(INTEGRATION_TESTS) $(PACKAGE_TEST) $(PORTFWD_FAULTS)

$(BUILD)/man/%: man/% src/version.h
	@mkdir -p $(dir $@)
	sed 's/^\.Os$$/.Os portfwd $(VERSION)/' $< > $@

check: deps all tests $(MANPAGES)
	mandoc -Tlint -W warning $(MANPAGES)
	@PORTFWD_BIN=$(abspath $(PORTFWD)) PORTFWDCTL_BIN=$(abspath $(PORTFWDCTL)) \
		PORTFWD_FAULTS_BIN=$(abspath $(PORTFWD_FAULTS)) scripts/run-tests $(UNIT_TESTS) -- $(INTEGRATION_TESTS)

# Installs everything; /etc/portfwd.conf only if there is none (never a
# user's file). Without DESTDIR on a systemd machine it also creates the
# portfwd user and tells systemd about the unit.
install: all $(MANPAGES)
	@# The unit with this installation's paths, made anew each time (PREFIX may differ).
	sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@BINDIR@|$(BINDIR)|g' \
		-e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' systemd/portfwd.service.in > $(BUILD)/portfwd.service
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(MANDIR)/man5 \
		$(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(COMPLETIONDIR) $(DESTDIR)$(SYSCONFDIR)
	install -m 0755 $(PORTFWD) $(DESTDIR)$(SBINDIR)/portfwd
	install -m 0755 $(PORTFWDCTL) $(DESTDIR)$(BINDIR)/portfwdctl
	install -m 0644 $(BUILD)/portfwd.service $(DESTDIR)$(UNITDIR)/portfwd.service
	install -m 0644 systemd/portfwd.sysusers $(DESTDIR)$(SYSUSERSDIR)/portfwd.conf
	install -m 0644 systemd/portfwd.tmpfiles $(DESTDIR)$(TMPFILESDIR)/portfwd.conf
	install -m 0644 $(BUILD)/man/portfwd.conf.5 $(DESTDIR)$(MANDIR)/man5/portfwd.conf.5
	install -m 0644 $(BUILD)/man/portfwd.8 $(BUILD)/man/portfwdctl.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 scripts/portfwdctl.bash-completion $(DESTDIR)$(COMPLETIONDIR)/portfwdctl
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/portfwd.conf ]; then \
		echo "install: keeping the existing $(DESTDIR)$(SYSCONFDIR)/portfwd.conf"; \
	else \
		install -m 0644 conf/portfwd.conf $(DESTDIR)$(SYSCONFDIR)/portfwd.conf; \
		echo "install: $(DESTDIR)$(SYSCONFDIR)/portfwd.conf is the example: edit its rules"; \
	fi
	@if [ "$(SYSTEMD_SETUP)" = auto ] && [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then \
		systemd-sysusers $(SYSUSERSDIR)/portfwd.conf && \
		systemd-tmpfiles --create $(TMPFILESDIR)/portfwd.conf && \
		systemctl daemon-reload; \
	fi

# Removes what install put there, except the configuration file.
uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/portfwd $(DESTDIR)$(BINDIR)/portfwdctl \
		$(DESTDIR)$(UNITDIR)/portfwd.service $(DESTDIR)$(SYSUSERSDIR)/portfwd.conf \
		$(DESTDIR)$(TMPFILESDIR)/portfwd.conf $(DESTDIR)$(MANDIR)/man5/portfwd.conf.5 \
		$(DESTDIR)$(MANDIR)/man8/portfwd.8 $(DESTDIR)$(MANDIR)/man8/portfwdctl.8 \
		$(DESTDIR)$(COMPLETIONDIR)/portfwdctl
	@echo "uninstall: $(DESTDIR)$(SYSCONFDIR)/portfwd.conf is left in place"

# The Debian package, here: built from a copy of this tree in build/deb
# (dpkg-buildpackage writes beside the tree it builds, and fills debian/
# with its own files), then lintian must report no error and no warning;
# debian/portfwd.lintian-overrides gives the reason for each tag it hides.
# `deps` installs debhelper, dpkg-dev and lintian for it.
deb: deps
	@v=$$(dpkg-parsechangelog -S Version) || { echo "deb: dpkg-parsechangelog failed (dpkg-dev: scripts/install-deps deb)" >&2; exit 1; }; \
	[ "$$v" = "$(VERSION)" ] || { \
		echo "deb: debian/changelog is at $$v, src/version.h at $(VERSION): add a changelog entry" >&2; exit 1; }
	rm -rf build/deb && mkdir -p build/deb/portfwd
	tar -cf - --exclude=./build --exclude=./demo --exclude=./.git --exclude='./portfwd_*.deb' . | \
		tar -xf - -C build/deb/portfwd
	@echo "deb: dpkg-buildpackage, log in build/deb/build.log"
	@cd build/deb/portfwd && dpkg-buildpackage -b -us -uc -J >../build.log 2>&1 || { tail -n 40 ../build.log; exit 1; }
	lintian --fail-on error,warning --display-info build/deb/$(DEB)
	cp build/deb/$(DEB) .
	@echo "deb: $(DEB)"

# Builds the package, then installs, upgrades, removes and purges it on this
# machine (as root; for CI and throwaway machines: it refuses to run where
# portfwd is installed already) and checks what each step leaves.
check-deb: deb $(PACKAGE_TEST)
	PORTFWD_DEB=$(abspath $(DEB)) $(PACKAGE_TEST)

clean:
	rm -rf build portfwd_*.deb

# (Not build/deb's: that is another tree's build.)
-include $(shell find build -path build/deb -prune -o -name '*.d' -print 2>/dev/null)
