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

fuzz:
	$(GO) test ./mailpart -run '^$$' -fuzz '^FuzzWalk$$' -fuzztime $(FUZZTIME)
	$(GO) test ./mailpart -run '^$$' -fuzz '^FuzzRewrite$$' -fuzztime $(FUZZTIME)
	$(GO) test ./smtpd -run '^$$' -fuzz '^FuzzSession$$' -fuzztime $(FUZZTIME)
	cd third_party/go-smtp && $(GO) test -run '^$$' -fuzz '^FuzzDataReader$$' -fuzztime $(FUZZTIME) .

lint:
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }

clean:
	rm -rf bin
