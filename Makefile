# Locklock — run `make help` for the targets.

GO       ?= go
ADDR     ?= 127.0.0.1:8080
ENGINE   ?= badger
DATA_DIR ?= ./locklock-data
PKGS     := ./...
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# The version `locklock version` prints for binaries built here (this
# machine builds with -buildvcs=false, so Go records no VCS stamp itself).
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo unknown)
LDFLAGS  := -X main.version=$(VERSION)

.DEFAULT_GOAL := help

.PHONY: help
help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: run
run: ## serve on $(ADDR) with the $(ENGINE) engine (data in $(DATA_DIR))
	$(GO) run ./cmd/locklock serve --addr $(ADDR) --engine $(ENGINE) --data-dir $(DATA_DIR)

.PHONY: build
build: ## build bin/locklock
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o bin/locklock ./cmd/locklock

IMAGE    ?= locklock
CA_CERTS ?= /etc/ssl/certs/ca-certificates.crt

.PHONY: image
image: ## build the container image $(IMAGE):latest and $(IMAGE):$(VERSION), FROM scratch (examples/docker/Dockerfile; pulls nothing)
	@test -r $(CA_CERTS) || { apt-get update >/dev/null && apt-get install -y ca-certificates >/dev/null; }
	@ctx=$$(mktemp -d) && trap 'rm -rf "$$ctx"' EXIT && \
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o "$$ctx/locklock" ./cmd/locklock && \
	cp $(CA_CERTS) "$$ctx/ca-certificates.crt" && mkdir "$$ctx/data" && \
	cp examples/docker/Dockerfile "$$ctx/Dockerfile" && \
	docker build --quiet --label org.opencontainers.image.version=$(VERSION) \
		-t $(IMAGE):latest -t $(IMAGE):$(VERSION) "$$ctx" >/dev/null && \
	echo "built $(IMAGE):latest ($(IMAGE):$(VERSION))"

.PHONY: test-image
test-image: ## build the image with `make image` and test it in Docker: volume, restart, docker stop, size, non-root (needs Docker)
	$(GO) test -tags image -count=1 -timeout 10m -v -run '^TestImage' ./examples/

.PHONY: test
test: vet ## vet, format check, then every test with the race detector
	$(GO) test -race -count=1 -timeout 8m $(PKGS)

# The dashboard's browser tests need Debian's chromium; as root (CI, the dev
# machines) it is installed when missing.
CHROMIUM_INSTALL := command -v chromium >/dev/null || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium >/dev/null; }

.PHONY: test-ui
test-ui: ## the dashboard (/ui/) in headless Chromium against a real server; installs Debian's chromium if missing; screenshots in ui-screenshots/
	$(CHROMIUM_INSTALL)
	$(GO) test -tags browser -count=1 -timeout 10m -v ./internal/ui/browsertest/

.PHONY: docs-screenshot
docs-screenshot: ## refresh docs/dashboard.png (the README's picture of the dashboard) with the browser tests' harness
	$(CHROMIUM_INSTALL)
	$(GO) test -tags browser -count=1 -timeout 5m -run '^TestDocsScreenshot$$' ./internal/ui/browsertest/ -update-docs

.PHONY: test-etcd-compat
test-etcd-compat: ## the etcd engine's tests against Debian's etcd 3.4 (installs etcd-server)
	GO=$(GO) ./scripts/test-etcd-compat.sh

.PHONY: lint
lint: vet ## go vet, gofmt and staticcheck
	$(GO) run $(STATICCHECK) $(PKGS)

.PHONY: vet
vet: ## go vet and gofmt
	$(GO) vet $(PKGS)
	$(GO) vet -tags browser ./internal/ui/browsertest/
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi

FUZZTIME ?= 1m

.PHONY: fuzz
fuzz: ## run each fuzz target of ./transport for $(FUZZTIME), one after another
	$(GO) test ./transport -run '^$$' -fuzz '^FuzzHandler$$' -fuzztime $(FUZZTIME)
	$(GO) test ./transport -run '^$$' -fuzz '^FuzzDecodeBody$$' -fuzztime $(FUZZTIME)

BENCHTIME ?= 3s
BENCH_PKGS := ./locklock ./engines/... ./transport ./app

.PHONY: bench
bench: ## Go benchmarks of the engines (with raw Badger/etcd baselines), handler, whole server chain, guard; $(BENCHTIME) each
	$(GO) test -run '^$$' -bench . -benchmem -benchtime=$(BENCHTIME) -timeout 15m $(BENCH_PKGS)

.PHONY: bench-smoke
bench-smoke: ## run every benchmark once (-benchtime=1x), to check that they still work
	$(GO) test -run '^$$' -bench . -benchtime=1x $(PKGS)

.PHONY: test-cluster
test-cluster: ## fault suite: etcd + locklock in containers, faults injected, histories checked (needs Docker)
	$(GO) test -tags cluster -count=1 -timeout 15m -v -run '^TestCluster$$' ./internal/clustertest/
