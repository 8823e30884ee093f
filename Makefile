# Confer: the two commands are `make run` and `make test`.
CARGO ?= cargo
NPM ?= npm
WEB := web-client
# npm ci writes this file; it is older than package-lock.json exactly when the lock changed.
WEB_DEPS := $(WEB)/node_modules/.package-lock.json

.PHONY: run build test bench web browsers web-deps deps fmt lint unit check-deps clean

## run: build everything, then start a development server with no external services.
run: build
	./target/debug/confer serve --dev

## build: the Rust binaries and the web client (web-client/dist).
build: web-deps
	$(CARGO) build --workspace --bins
	$(NPM) --prefix $(WEB) run build

## test: install what the tests need, then formatting, lints, every suite, dependency rules,
## then the web client's lints and suites, then the browser tests.
test: deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(CARGO) nextest run --workspace --locked --no-fail-fast
	$(CARGO) test --workspace --doc --locked
	./scripts/check-deps.sh
	$(MAKE) --no-print-directory web
	$(MAKE) --no-print-directory browsers

## bench: every benchmark in one go (not part of `make test`): the web client's frame benchmark,
## then every confer-bench section (E2EE, signalling with idle connections held, noisy
## participant, SFU at a trickle, SFU at saturation against R0/R1/R2 with half load, memory,
## system calls and allocations, callgrind instructions per copy, cluster), release build, and
## SFU at saturation against Janus VideoRoom. scripts/install-bench-deps.sh installs valgrind
## (callgrind) and, unless BENCH_JANUS=0, janus when missing. Prints the tables; writes them all to target/bench/summary.json (one object per
## table). Bounded: each section caps its own counts and times (about 5 minutes in all on the
## 2-core box, under 1 minute of it Janus), and each program is killed after BENCH_LIMIT
## (20 minutes). The Janus part installs Debian's janus when missing
## (scripts/install-bench-deps.sh) and needs root (or sudo): scripts/bench-netns.sh makes two
## network namespaces joined by a veth pair (10.250.N.1 and .2 inside them only) and removes
## them on exit; `make bench BENCH_JANUS=0` skips it. The rest binds only 127.0.0.x. Method and
## targets: ../shared/design/BENCHMARKS.md; results: docs/benchmarks.md.
BENCH_LIMIT ?= 20m
BENCH_JANUS ?= 1
bench: web-deps
	mkdir -p target/bench
	timeout $(BENCH_LIMIT) $(NPM) --prefix $(WEB) run --silent bench > target/bench/web-frame.md
	cat target/bench/web-frame.md
	$(CARGO) build --release --locked -p confer-bench
	rm -f target/bench/janus.md
	./scripts/install-bench-deps.sh $(if $(filter 1,$(BENCH_JANUS)),,--no-janus)
	if [ "$(BENCH_JANUS)" = 1 ]; then \
	  timeout $(BENCH_LIMIT) ./scripts/bench-netns.sh ./target/release/confer-bench janus > target/bench/janus.md && \
	  cat target/bench/janus.md; \
	fi
	timeout $(BENCH_LIMIT) ./target/release/confer-bench --import web=target/bench/web-frame.md \
	  $(if $(filter 1,$(BENCH_JANUS)),--import janus=target/bench/janus.md) --summary target/bench/summary.json

## web: the web client's lint (ESLint, tsc for each layer) and its Vitest suites, vectors included.
web: web-deps
	$(NPM) --prefix $(WEB) run lint
	$(NPM) --prefix $(WEB) test

## browsers: the browser tests (web-client/e2e): the page, built afresh, served by a real
## target/debug/confer, in Debian's chromium and firefox-esr (scripts/install-deps.sh).
browsers: web-deps
	$(CARGO) build --workspace --bins --locked
	$(NPM) --prefix $(WEB) run test:browsers

## web-deps: npm ci, only when node_modules is missing or package-lock.json is newer (idempotent).
web-deps: $(WEB_DEPS)

$(WEB_DEPS): $(WEB)/package-lock.json
	$(NPM) --prefix $(WEB) ci --no-audit --no-fund
	touch $@

## deps: what the test suites need, installed only when missing (idempotent).
deps:
	./scripts/install-deps.sh

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf .confer-dev $(WEB)/dist
