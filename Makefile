# Switchyard — the two commands a newcomer needs:
#   make enable   build the plugin and enable it as switchyard:latest (starts dockerd if needed)
#   make test     type-check, lint, unit/protocol, netns, end-to-end (real dockerd) and
#                 multi-host (Docker-in-Docker + etcd) tests
# Another Docker release: make e2e DOCKER=28 (or 26, 29), make multihost DOCKER=28: installs that
# release (Debian's archive; 29 from shared/docker-29), stops the running dockerd and starts
# that one. Docker 29's nftables firewall backend: make e2e DOCKER=29 FIREWALL_BACKEND=nftables.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PLUGIN ?= switchyard:latest
VERSION := $(shell sed -n 's/^  "version": "\(.*\)",$$/\1/p' package.json)
## The Docker release to test against: 20 (Debian 12's docker.io), 26 or 28 (Debian's newer
## suites), 29 (built from source, shared/docker-29); FIREWALL_BACKEND=nftables with 29.
DOCKER ?= 20
FIREWALL_BACKEND ?= iptables
export DOCKER FIREWALL_BACKEND
## The daemon's tag: its data root, log and the plugin's state directory are its own.
DOCKER_TAG := $(DOCKER)$(if $(filter nftables,$(FIREWALL_BACKEND)),-nftables)
export DOCKER_TAG
## Its binaries (made by scripts/docker-release.sh) come first on PATH: `docker` is its own
## client, which negotiates the API version with the daemon.
export PATH := /opt/switchyard/docker-$(DOCKER)/bin:$(CURDIR)/node_modules/.bin:$(PATH)
## Each release's plugin keeps its own state, so switching releases mixes no networks.
STATE_DIR ?= $(if $(filter 20,$(DOCKER_TAG)),/var/lib/switchyard,/var/lib/switchyard-$(DOCKER_TAG))
NODE := node_modules/.bin/node

.PHONY: deps build check unit netns e2e test plugin enable disable remove docker clean status push demo rootfs multihost

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

deps: node_modules/.installed

build: deps
	rm -rf dist
	tsc -p tsconfig.build.json

## Static checks: strict type-check and Biome lint + format check.
check: deps
	tsc --noEmit -p tsconfig.json
	biome ci --colors=off .

## Each tier gives every test and every before/after hook a time limit (--test-timeout), so a
## hang fails the run instead of stalling CI; a file may set a shorter { timeout } of its own.
## Not --test-force-exit: it can drop verdicts and still exit 0 (nodejs/node#64833).
unit: deps
	$(NODE) --test --test-timeout=60000 --test-reporter=spec 'test/unit/**/*.test.ts' 'test/protocol/**/*.test.ts'

netns: deps
	@[[ $$(id -u) == 0 ]] || { echo "netns tests need root (network namespaces, bridges, nft)"; exit 1; }
	$(NODE) --test --test-concurrency=1 --test-timeout=180000 --test-reporter=spec 'test/netns/**/*.test.ts'

## E2E_TESTS picks files: globs, separated by spaces (e.g. E2E_TESTS=test/e2e/differential.test.ts);
## all by default.
E2E_TESTS ?= test/e2e/**/*.test.ts
e2e: deps enable
	$(NODE) --test --test-concurrency=1 --test-timeout=600000 --test-reporter=spec $(foreach f,$(E2E_TESTS),'$(f)')

## Multi-host tests: three Docker-in-Docker hosts and an etcd container (needs plugin/rootfs).
## MULTIHOST_TESTS picks files, as E2E_TESTS does for e2e.
MULTIHOST_TESTS ?= test/multihost/**/*.test.ts
multihost: deps docker
	[[ -d plugin/rootfs ]] || $(MAKE) rootfs
	$(NODE) --test --test-concurrency=1 --test-timeout=900000 --test-reporter=spec $(foreach f,$(MULTIHOST_TESTS),'$(f)')

## Starts dockerd if none answers (installing docker.io on a fresh Debian) and imports the test image.
docker:
	DOCKER=$(DOCKER) scripts/ensure-docker.sh

## Builds plugin/config.json + plugin/rootfs (what docker plugin create reads).
rootfs: build docker
	scripts/build-plugin.sh

## (Re)creates the plugin from plugin/, disabled.
plugin: rootfs
	if docker plugin inspect $(PLUGIN) >/dev/null 2>&1; then \
	  docker plugin disable -f $(PLUGIN) >/dev/null 2>&1 || true; \
	  docker plugin rm -f $(PLUGIN) >/dev/null; \
	fi
	echo "$(PLUGIN)" > plugin/rootfs/etc/switchyard-plugin-name
	docker plugin create $(PLUGIN) plugin

## The state mount's host directory must exist before the plugin starts; docker-api's default
## (no access) is the state directory, so it follows it.
enable: plugin
	mkdir -p $(STATE_DIR)
	docker plugin set $(PLUGIN) state.source=$(STATE_DIR) docker-api.source=$(STATE_DIR)
	docker plugin enable $(PLUGIN)
	@echo "switchyard enabled: docker network create --driver $(PLUGIN) --ipam-driver $(PLUGIN) ..."

disable:
	docker plugin disable -f $(PLUGIN)

## Pushes the plugin to a registry as REGISTRY/switchyard:VERSION and :latest.
push: rootfs
	@[[ -n "$(REGISTRY)" ]] || { echo "usage: make push REGISTRY=host:port"; exit 1; }
	for tag in $(VERSION) latest; do \
	  name=$(REGISTRY)/switchyard:$$tag; \
	  docker plugin rm -f $$name >/dev/null 2>&1 || true; \
	  echo "$$name" > plugin/rootfs/etc/switchyard-plugin-name; \
	  docker plugin create $$name plugin; \
	  docker plugin push $$name; \
	  docker plugin rm -f $$name >/dev/null; \
	done

## Walks through the seed scenario on this machine, printing each step, then cleans up.
demo: docker
	if [[ "$$(docker plugin inspect -f '{{.Enabled}}' $(PLUGIN) 2>/dev/null)" != true ]]; then $(MAKE) enable; fi
	scripts/demo.sh $(PLUGIN)

## Networks and endpoints as tables, with container names and published ports (what docker ps
## cannot show); `make status ARGS=--json` for JSON. The script needs no repository: copy it.
status:
	scripts/switchyard-status $(ARGS) $(PLUGIN)

## Removes the plugin (networks using it must be removed first).
remove:
	-docker plugin disable -f $(PLUGIN)
	docker plugin rm -f $(PLUGIN)

test: check unit docker netns enable e2e multihost

clean:
	rm -rf dist plugin/rootfs plugin/config.json

## Benchmarks: Switchyard against the built-in bridge driver; one table on stdout,
## JSON in bench/results/latest.json. Under 10 minutes; cleans up what it makes (sy-bench-*).
.PHONY: bench bench-growth bench-dns
bench: enable
	$(NODE) --expose-gc bench/run.ts

## Growth without Docker, as root: one state commit at N endpoints against writing
## the whole document; one firewall apply at N networks and N published ports (netns); the
## real plugin in a netns through its socket: idle RSS against the fastify+pino+execa floor,
## CreateEndpoint, publish and journal bytes at 10, 1,000 and 10,000 endpoints.
bench-growth: build
	$(NODE) bench/store.ts
	$(NODE) bench/firewall.ts
	$(NODE) bench/standalone.ts

## The resolver under a flood, no root and no Docker: Switchyard's DnsServer (the client index,
## the rate limits) and a fastify app in one child process; 10,000 queries/s for 10 s while
## GET /ping is timed. Against the real plugin: see the header of bench/dns-flood.ts.
bench-dns:
	$(NODE) bench/dns-flood.ts
