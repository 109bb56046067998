# pgwarden developer commands. `make test` is what CI runs.
GO ?= go
# Every tier must finish well inside CI's limit; a hung test fails loudly.
TEST_TIMEOUT ?= 20m

.PHONY: demo test test-short deps vet bench fuzz

## demo: install what is missing, build the daemon, run a three-node cluster on the
## embedded DCS, kill the primary and show the failover. DEMO_EXIT=1 exits after the show.
demo:
	scripts/install-deps.sh --demo
	$(GO) build -o bin/reference-daemon ./examples/reference-daemon
	bin/reference-daemon demo examples/reference-daemon

## test: install missing dependencies, then vet and run every test tier with the race detector.
test: deps vet
	$(GO) test -race -timeout $(TEST_TIMEOUT) ./...

## test-short: unit tests, golden encodings and the HA simulation; no external process.
test-short:
	$(GO) test -short ./...

## deps: install what the tests need (idempotent).
deps:
	scripts/install-deps.sh

vet:
	$(GO) vet ./...

## bench: run the Go benchmarks once each and print the figures.
bench: deps
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...

## fuzz: run every fuzz target for FUZZTIME each (default 60s).
FUZZTIME ?= 60s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
			echo "== $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done
