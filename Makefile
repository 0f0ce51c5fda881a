# Developer entry points. `.ci/run` stays the source of truth for what CI runs.
#   make build   release build of the proxy
#   make test    exactly what CI runs (installs Redis if needed, fmt, clippy, fuzz pass, tests)
#   make run     Redis on 127.0.0.1:6379 (installed and started if needed) and the proxy in
#                front of it on 127.0.0.1:6380; ARGS="--capacity 100000" passes more flags,
#                REDIS_PORT, LISTEN and PROFILE (release, or dev for a quick build) change the rest

SHELL := /bin/bash
REDIS_PORT ?= 6379
LISTEN ?= 127.0.0.1:6380
ARGS ?=
PROFILE ?= release

.PHONY: build test run

build:
	cargo build --profile $(PROFILE)

test:
	bash .ci/run

# A Redis started here runs in the foreground of this recipe, with its working directory in a
# temp dir (nothing written into the checkout); Ctrl-C stops the proxy and it together. A Redis
# already answering is used as is and left alone.
run: build
	@if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then \
	  sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq redis-server redis-tools; \
	fi
	@set -e; \
	if redis-cli -h 127.0.0.1 -p $(REDIS_PORT) ping >/dev/null 2>&1; then \
	  echo "Redis already answers on 127.0.0.1:$(REDIS_PORT): using it"; \
	else \
	  dir=$$(mktemp -d); \
	  redis-server --bind 127.0.0.1 --port $(REDIS_PORT) --save "" --appendonly no \
	    --dir "$$dir" --logfile "$$dir/redis.log" & \
	  redis=$$!; \
	  trap 'kill $$redis 2>/dev/null; wait $$redis 2>/dev/null; rm -rf "$$dir"' EXIT; \
	  trap 'exit 130' INT TERM; \
	  for _ in $$(seq 100); do \
	    redis-cli -h 127.0.0.1 -p $(REDIS_PORT) ping >/dev/null 2>&1 && break; sleep 0.1; \
	  done; \
	  redis-cli -h 127.0.0.1 -p $(REDIS_PORT) ping >/dev/null || { cat "$$dir/redis.log"; exit 1; }; \
	  echo "Redis started on 127.0.0.1:$(REDIS_PORT) (working dir $$dir)"; \
	fi; \
	cargo run --profile $(PROFILE) --quiet -- --redis 127.0.0.1:$(REDIS_PORT) --listen $(LISTEN) $(ARGS)
