# attachgate — see README.md. `make run` starts the demo gateway, `make test`
# runs every test. Both install what they need on a fresh Debian machine.

SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)
GO ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
BIN := bin/attachgate
FUZZTIME ?= 30s

.PHONY: all build run test bench bench-deps fuzz lint deps clean

all: build

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/attachgate

run: build
	./$(BIN) serve -config config/demo.yaml

# deps installs the system packages the tests start for real, only when
# missing (apt-get update once, first).
deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v swaks >/dev/null || missing="$$missing swaks"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
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
FUZZ_TARGETS ?= mailpart:FuzzWalk mailpart:FuzzRewrite mailpart:FuzzTextEncoding \
	mailpart:FuzzFilename mailpart:FuzzTNEF smtpd:FuzzSession smtpd:FuzzAuthSession \
	third_party/go-smtp:FuzzDataReader linkserver:FuzzDownloadRequest
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
