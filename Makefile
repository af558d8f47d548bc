# portfwd: plain GNU make. `make`, `make run`, `make check`, `make check SANITIZE=1`.

PREFIX ?= /usr/local
CC ?= cc
PKG_CONFIG ?= pkg-config

PKGS := libevent libevent_pthreads libconfig jansson libcap-ng
CFLAGS ?= -O2 -g
WARNINGS := -Wall -Wextra -Wformat=2 -Wshadow
ifeq ($(WERROR),1)
WARNINGS += -Werror
endif
ALL_CFLAGS := -std=gnu11 $(WARNINGS) -D_GNU_SOURCE $(CFLAGS) \
	$(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
LIBS := $(shell $(PKG_CONFIG) --libs $(PKGS) 2>/dev/null) -lm -lpthread

# Sanitizer builds live in their own tree so the objects never mix.
ifeq ($(SANITIZE),1)
BUILD := build/sanitize
ALL_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
else ifeq ($(SANITIZE),thread)
# ThreadSanitizer, for the workers and the main thread's calls into them.
BUILD := build/tsan
ALL_CFLAGS += -fsanitize=thread -fno-omit-frame-pointer
LDFLAGS += -fsanitize=thread
else
BUILD := build/default
endif

# Every object but the two mains, so the tests can link them all.
LIB_SRCS := commands.c config.c control.c ctl_proto.c daemon.c forward.c listener.c log.c metrics.c portinfo.c privs.c sdnotify.c \
	relay_tcp.c relay_udp.c rule.c stats.c status.c udp_table.c worker.c
LIB_OBJS := $(addprefix $(BUILD)/src/,$(LIB_SRCS:.c=.o))

PORTFWD := $(BUILD)/portfwd
PORTFWDCTL := $(BUILD)/portfwdctl

CHECK_CFLAGS := $(shell $(PKG_CONFIG) --cflags check 2>/dev/null)
CHECK_LIBS := $(shell $(PKG_CONFIG) --libs check 2>/dev/null) -lpthread
UNIT_TESTS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(wildcard tests/unit/test_*.c))
INTEGRATION_TESTS := $(patsubst tests/integration/%.c,$(BUILD)/tests/%,$(wildcard tests/integration/test_*.c))
HARNESS_OBJ := $(BUILD)/tests/harness.o

.PHONY: all deps run check tests bench clean
all: $(PORTFWD) $(PORTFWDCTL)

deps:
	@scripts/install-deps

$(BUILD)/src/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(PORTFWD): $(BUILD)/src/portfwd.o $(LIB_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(PORTFWDCTL): $(BUILD)/src/portfwdctl.o $(BUILD)/src/ctl_proto.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/tests/%.o: tests/unit/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(CHECK_CFLAGS) -Isrc -Itests -MMD -MP -c -o $@ $<

$(BUILD)/tests/%.o: tests/integration/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(CHECK_CFLAGS) -Isrc -Itests -MMD -MP -c -o $@ $<

$(BUILD)/tests/harness.o: tests/harness.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(CHECK_CFLAGS) -Isrc -Itests -MMD -MP -c -o $@ $<

$(UNIT_TESTS): $(BUILD)/tests/%: $(BUILD)/tests/%.o $(LIB_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) $(CHECK_LIBS)

$(INTEGRATION_TESTS): $(BUILD)/tests/%: $(BUILD)/tests/%.o $(HARNESS_OBJ) $(LIB_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) $(CHECK_LIBS)

$(BUILD)/pfbench: bench/pfbench.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< -lpthread

# The benchmark against other forwarders (installs them; loopback only).
bench: deps all $(BUILD)/pfbench
	@scripts/bench --portfwd $(PORTFWD) --pfbench $(BUILD)/pfbench

# The demo: loopback ports and a control socket inside the tree, no root needed.
run: deps all
	@scripts/demo $(PORTFWD) $(PORTFWDCTL)

tests: $(UNIT_TESTS) $(INTEGRATION_TESTS)

check: deps all tests
	mandoc -Tlint -W warning man/portfwd.8 man/portfwdctl.8 man/portfwd.conf.5
	@PORTFWD_BIN=$(abspath $(PORTFWD)) PORTFWDCTL_BIN=$(abspath $(PORTFWDCTL)) \
		scripts/run-tests $(UNIT_TESTS) -- $(INTEGRATION_TESTS)

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
