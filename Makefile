# eBrainPool: `make run` sets everything up and starts it; `make test` installs
# what the tests need and runs them all. Both work on a fresh Debian/Ubuntu.

SHELL := /bin/bash
GO ?= go
BIN := bin/ebrainpool
PREFIX ?= /usr/local

# Debian packages: to build, to run, and what the tests use as real peers.
BUILD_PKGS := gcc pkg-config lxc-dev libc6-dev libgl1-mesa-dev xorg-dev
# What `make deb` needs on top (Debian packaging tools).
DEB_PKGS   := debhelper dpkg-dev fakeroot
# fuse2fs and e2fsprogs: the sandboxes' size-limited homes; sshfs: the
# requester's files in a sandbox.
RUN_PKGS   := liblxc1 liblxc-common uidmap dbus avahi-daemon fuse2fs e2fsprogs sshfs
# The Flatpak's tools, and the Debian packages its local runtime is made of
# (packaging/flatpak/runtime.sh).
FLATPAK_PKGS := flatpak flatpak-builder bubblewrap xdg-dbus-proxy desktop-file-utils \
              libgl1 libglx-mesa0 libegl1 libegl-mesa0 libgl1-mesa-dri libx11-6 libxcursor1 \
              libxrandr2 libxinerama1 libxi6 libxxf86vm1 liblxc1 dash bash coreutils
TEST_PKGS  := lxc iproute2 tar gzip procps passwd avahi-daemon avahi-utils dnsmasq-base dbus dbus-daemon \
              xvfb xauth x11-apps x11-utils xdotool xterm mesa-utils gtk-3-examples gtk-4-examples openssh-server openssh-client \
              xpra python3-pil python3-gi-cairo \
              xfce4-panel xfconf xfce4-notifyd xterm weston xwayland lintian apparmor \
              qemu-system-x86 debootstrap e2fsprogs libxml2-utils groff-base man-db appstream file \
              bash-completion zsh fish \
              $(DEB_PKGS) $(FLATPAK_PKGS)

# Root runs apt-get and setup directly; anyone else goes through sudo.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
# The desktop user to set up and run as. As root without sudo (a bare
# container or VM), a local demo user is created for it.
RUN_USER ?= $(or $(SUDO_USER),$(filter-out root,$(shell id -un)),ebrainpool-demo)

.PHONY: all build run test soak fuzz deps-build deps-run deps-test vet bench install deb flatpak clean

all: build

# Installs only what is missing, so repeated runs are quick.
define apt_install
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo ">> installing Debian packages: $$missing"; \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
endef

deps-build:
	$(call apt_install,$(BUILD_PKGS))
	@command -v $(GO) >/dev/null || { echo ">> installing Go"; $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go >/dev/null; }

deps-run: deps-build
	$(call apt_install,$(RUN_PKGS))

deps-test: deps-run
	$(call apt_install,$(TEST_PKGS))

build: deps-build
	$(GO) build -o $(BIN) .

# The binary is bind-mounted into the sandboxes, so it must live where
# their unprivileged root can read it.
install: build
	$(SUDO) install -D -m 0755 $(BIN) $(PREFIX)/bin/ebrainpool

run: deps-run install
	@id -u $(RUN_USER) >/dev/null 2>&1 || { echo ">> creating local user $(RUN_USER)"; $(SUDO) useradd -m -U -s /bin/bash $(RUN_USER); }
	$(SUDO) $(PREFIX)/bin/ebrainpool setup --user $(RUN_USER)
	@# On systemd, sandboxes get their cgroups from the user's systemd manager,
	@# which runs while the user is logged in; a user who is not (the demo user)
	@# gets one through logind's linger.
	@uid=$$(id -u $(RUN_USER)); if [ -d /run/systemd/system ] && [ ! -S /run/user/$$uid/systemd/private ]; then \
		echo ">> $(RUN_USER) is not logged in: keeping a systemd user manager for it (loginctl enable-linger $(RUN_USER))"; \
		$(SUDO) loginctl enable-linger $(RUN_USER); \
		for i in $$(seq 100); do [ -S /run/user/$$uid/systemd/private ] && break; sleep 0.2; done; \
	fi
	@echo ">> a sandbox as $(RUN_USER), and a program run in it"
	cd / && $(SUDO) runuser -u $(RUN_USER) -- $(PREFIX)/bin/ebrainpool sandbox exec demo -- sh -c 'echo "inside the sandbox: $$(id), network: $$(ls /sys/class/net)"'
	cd / && $(SUDO) runuser -u $(RUN_USER) -- $(PREFIX)/bin/ebrainpool sandbox stop demo
	@# The app runs on the user's own session bus (the desktop's: its panel
	@# shows the tray, the CLI in another terminal finds it, and a start from
	@# the menu later shows this one instead of running a second daemon); a
	@# private dbus-run-session bus only when the user has none.
	@uid=$$(id -u $(RUN_USER)); bus=; \
	if [ "$(RUN_USER)" = "$$(id -un)" ] || [ "$(RUN_USER)" = "$$SUDO_USER" ]; then bus="$$DBUS_SESSION_BUS_ADDRESS"; fi; \
	if [ -z "$$bus" ] && [ -S /run/user/$$uid/bus ]; then bus=unix:path=/run/user/$$uid/bus; fi; \
	if [ -n "$$bus" ]; then run="env DBUS_SESSION_BUS_ADDRESS=$$bus"; how="on $(RUN_USER)'s session bus"; \
		if [ -d /run/user/$$uid ]; then run="$$run XDG_RUNTIME_DIR=/run/user/$$uid"; fi; \
	else run="dbus-run-session --"; how="on a private session bus ($(RUN_USER) has none: the CLI must run inside it)"; fi; \
	if [ -n "$$DISPLAY" ]; then \
		echo ">> starting the desktop app as $(RUN_USER) $$how (tray icon; quit from its menu)"; \
		cd / && $(SUDO) runuser -u $(RUN_USER) -- env DISPLAY="$$DISPLAY" XAUTHORITY="$${XAUTHORITY:-$$HOME/.Xauthority}" $$run $(PREFIX)/bin/ebrainpool; \
	else \
		echo ">> no display: starting the headless daemon as $(RUN_USER) $$how (Ctrl-C stops it)"; \
		cd / && $(SUDO) runuser -u $(RUN_USER) -- $$run $(PREFIX)/bin/ebrainpool daemon; \
	fi

vet:
	@out=$$(git ls-files -z '*.go' | xargs -0 gofmt -l); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Tests need root (user namespaces, cgroups, test users); under CI=true
# nothing skips. Packages run one at a time (-p 1): several start whole test
# beds and assert latencies, which must not compete with each other.
test: deps-test vet
	$(SUDO) env PATH="$$PATH" CI="$(CI)" $(GO) test -count=1 -p 1 -timeout 40m ./...
	$(MAKE) --no-print-directory fuzz

# The fuzz targets, each for a fixed count of inputs (7-15 s each on two
# cores; FUZZTIME=5000000x or FUZZTIME=2m for a longer run); what a run finds
# is kept in the package's testdata/fuzz and fails `go test`. A count, not a
# duration: go1.26's fuzzing coordinator can fail a run that found nothing
# with "context deadline exceeded" when a -fuzztime duration ends under CPU
# load (golang.org/issue/75804, fixed in go1.27).
FUZZTIME ?= 200000x
FUZZ_TARGETS := FuzzDecodeTXT:./app/discovery FuzzReadMsg:./app/control FuzzReadXSetup:./tunnel \
                FuzzParseXauthority:./tunnel FuzzParse:./app/catalog FuzzX11FilterRequests:./tunnel FuzzPeerList:./app/control
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		echo ">> fuzzing $${t%%:*} ($${t#*:}) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${t%%:*}$$" -fuzztime $(FUZZTIME) "$${t#*:}" || exit 1; \
	done

# The soak test of issue 14 at full length: 1,000 session cycles (launch,
# window, end) with descriptors, goroutines, processes, mounts and cgroups
# back to their level (make test runs 20); SOAK_CYCLES=N for another count.
SOAK_CYCLES ?= 1000
soak: deps-test
	$(SUDO) env PATH="$$PATH" CI="$(CI)" EBP_SOAK_CYCLES=$(SOAK_CYCLES) $(GO) test -count=1 -timeout 3h -v \
		-run '^(TestSoakSessionCycles|TestHostDaemonKilledMidSession)$$' ./internal/e2e

bench: deps-test
	$(SUDO) env PATH="$$PATH" scripts/bench-sandbox.sh

deb: deps-build
	$(call apt_install,$(DEB_PKGS))
	packaging/deb/build.sh

# dist/flatpak/repo: the runtime (first time) and the app; see
# packaging/flatpak/README.md to install it.
flatpak: deps-build
	$(call apt_install,$(FLATPAK_PKGS))
	packaging/flatpak/build.sh

clean:
	rm -rf bin dist
