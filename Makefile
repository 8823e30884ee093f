# Confer: the two commands are `make run` and `make test`.
CARGO ?= cargo

.PHONY: run build test deps fmt lint unit check-deps clean

## run: build everything, then start a development server with no external services.
run: build
	./target/debug/confer serve --dev

build:
	$(CARGO) build --workspace --bins

## test: install what the tests need, then formatting, lints, every suite, dependency rules.
test: deps
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(CARGO) nextest run --workspace --locked --no-fail-fast
	$(CARGO) test --workspace --doc --locked
	./scripts/check-deps.sh

## deps: what the test suites need, installed only when missing (idempotent).
deps:
	./scripts/install-deps.sh

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
	rm -rf .confer-dev
