# attachgate — see README.md. `make run` starts the demo gateway, `make test`
# runs every test. Both install what they need on a fresh Debian machine.

SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)
GO ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
BIN := bin/attachgate
FUZZTIME ?= 30s

.PHONY: all build run test bench bench-deps fuzz lint deps install clean

all: build

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/attachgate

run: build
	./$(BIN) serve -config config/demo.yaml

# deps installs the system packages the tests start for real, only when
# missing (apt-get update once, first): redis-server, swaks, wget, Postfix
# (the Postfix recipe test runs a private instance; the package is
# preseeded to "No configuration" and a temporary policy-rc.d keeps its
# system service from starting), systemd's systemd-analyze (the unit
# test), chromium for the browser test, a Japanese font so its
# screenshots show Japanese pages, Info-ZIP unzip (Download all's ZIPs
# are checked with it) and ClamAV's clamd (clamav-daemon; the scan tests
# start their own with a signature database they write, so freshclam is
# never run and its service never started).
deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v swaks >/dev/null || missing="$$missing swaks"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	fc-list :lang=ja 2>/dev/null | grep -q . || missing="$$missing fonts-ipafont-gothic"; \
	command -v wget >/dev/null || missing="$$missing wget"; \
	[ -x /usr/sbin/postfix ] || missing="$$missing postfix"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	[ -x /usr/sbin/clamd ] || missing="$$missing clamav-daemon"; \
	command -v unzip >/dev/null || missing="$$missing unzip"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
		added_policy=""; \
		if [ ! -e /usr/sbin/policy-rc.d ]; then \
			printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && added_policy=1; \
		fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
		rc=$$?; \
		[ -n "$$added_policy" ] && rm -f /usr/sbin/policy-rc.d; \
		exit $$rc; \
	fi

# install puts the binary, the systemd unit, the system user's sysusers.d
# entry, an example configuration (never over an existing one) and the
# README in the usual places; PREFIX and DESTDIR as usual. Without
# DESTDIR, as root, it also creates the attachgate user and gives
# /etc/attachgate to it. See README.md, "systemd".
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
DOCDIR ?= $(PREFIX)/share/doc/attachgate
SYSCONFDIR ?= /etc
UNITDIR ?= $(SYSCONFDIR)/systemd/system
SYSUSERSDIR ?= $(SYSCONFDIR)/sysusers.d

install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/attachgate
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	sed -e 's|/usr/local/bin/attachgate|$(BINDIR)/attachgate|g' \
	    -e 's|/etc/attachgate/|$(SYSCONFDIR)/attachgate/|g' \
	    -e 's|/usr/local/share/doc/attachgate/|$(DOCDIR)/|g' \
	    contrib/attachgate.service > $(DESTDIR)$(UNITDIR)/attachgate.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/attachgate.service
	install -D -m 0644 contrib/attachgate.sysusers $(DESTDIR)$(SYSUSERSDIR)/attachgate.conf
	install -D -m 0644 README.md $(DESTDIR)$(DOCDIR)/README.md
	install -d -m 0750 $(DESTDIR)$(SYSCONFDIR)/attachgate
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/attachgate/attachgate.yaml ]; then \
		echo "kept $(DESTDIR)$(SYSCONFDIR)/attachgate/attachgate.yaml (example: contrib/attachgate.yaml)"; \
	else \
		install -m 0640 contrib/attachgate.yaml $(DESTDIR)$(SYSCONFDIR)/attachgate/attachgate.yaml; \
	fi
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then \
		if command -v systemd-sysusers >/dev/null; then systemd-sysusers $(SYSUSERSDIR)/attachgate.conf; \
		else id attachgate >/dev/null 2>&1 || useradd --system --home-dir /var/lib/attachgate --no-create-home --shell /usr/sbin/nologin attachgate; fi; \
		chown root:attachgate $(SYSCONFDIR)/attachgate $(SYSCONFDIR)/attachgate/attachgate.yaml; \
		echo "next: edit $(SYSCONFDIR)/attachgate/attachgate.yaml, then systemctl daemon-reload && systemctl enable --now attachgate"; \
	fi

test: deps
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) test -race -shuffle=on -count=1 -timeout 20m ./...
	cd third_party/go-smtp && $(GO) vet . && $(GO) test -race -count=1 .

# bench measures attachgate side by side with its baselines (smtp-source
# into smtp-sink, nginx) in one run and writes BENCH.md; see
# bench/cmd/agbench. Not part of `make test`. BENCH_FLAGS passes options,
# e.g. BENCH_FLAGS=-quick for a smoke run.
BENCH_FLAGS ?=
bench: bench-deps build
	$(GO) run ./bench/cmd/agbench -bin $(BIN) -out BENCH.md $(BENCH_FLAGS)

# bench-deps installs Postfix (smtp-sink, smtp-source), nginx-light and wrk
# when missing, without starting their services.
bench-deps:
	@bench/deps.sh

# fuzz runs every fuzz target for FUZZTIME on one worker (each release
# candidate: FUZZTIME=30m) and copies the inputs the run found interesting
# from Go's fuzz cache into the package's testdata/fuzz/, to be committed;
# `go test` replays them as regression tests from then on.
FUZZ_TARGETS ?= mailpart:FuzzWalk mailpart:FuzzWalkTee mailpart:FuzzRewrite mailpart:FuzzTextEncoding \
	mailpart:FuzzFilename mailpart:FuzzTNEF smtpd:FuzzSession smtpd:FuzzAuthSession policies:FuzzArchiveProbe \
	third_party/go-smtp:FuzzDataReader linkserver:FuzzDownloadRequest \
	linkserver:FuzzSafeEntryName linkserver:FuzzVerifyForm notify:FuzzIsGatewayMail notify:FuzzDSNOriginalHeaders \
	audit:FuzzExport
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t#*:}; \
		echo "== $$pkg $$name for $(FUZZTIME)"; \
		(cd $$pkg && $(GO) test . -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) -parallel 1); \
		mod=$$(cd $$pkg && $(GO) list -f '{{.ImportPath}}' .); \
		cache="$$($(GO) env GOCACHE)/fuzz/$$mod/$$name"; \
		if [ -d "$$cache" ]; then \
			mkdir -p "$$pkg/testdata/fuzz/$$name"; cp "$$cache"/* "$$pkg/testdata/fuzz/$$name/"; \
			echo "   corpus: $$(ls "$$pkg/testdata/fuzz/$$name" | wc -l) inputs in $$pkg/testdata/fuzz/$$name"; \
		fi; \
	done

lint:
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }

clean:
	rm -rf bin
