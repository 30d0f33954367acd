# banger: build, test and install. `make help` lists the targets.
GO      ?= go
BIN     := build/bin
PKG     := github.com/banger/banger/internal/buildinfo
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null)
DATE    ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS := -s -w -X $(PKG).Version=$(VERSION) -X $(PKG).Commit=$(COMMIT) -X $(PKG).Date=$(DATE) -X main.version=$(VERSION)
CMDS    := banger bangerd bangerd-root banger-agent
# The whole suite: unit tests and the end-to-end tests (which need root and
# skip without it, or fail under BANGER_E2E=1).
TESTFLAGS ?= -count=1 -timeout 60m

.PHONY: help build test e2e bench lint install clean

help:
	@echo "make build    build the four binaries into $(BIN) (static, CGO_ENABLED=0)"
	@echo "make test     run the whole test suite (unit + end-to-end; run as root for e2e)"
	@echo "make e2e      run only the end-to-end tests (root)"
	@echo "make bench    run the benchmarks"
	@echo "make lint     gofmt, go vet"
	@echo "make install  build, then sudo banger system install --owner \$$USER"

build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))

test:
	$(GO) test $(TESTFLAGS) ./...

e2e:
	$(GO) test $(TESTFLAGS) -v ./e2e/

bench:
	$(GO) test -run '^$$' -bench . -benchtime 3x ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

install: build
	sudo $(BIN)/banger system install --owner "$${SUDO_USER:-$$USER}"

clean:
	rm -rf build
