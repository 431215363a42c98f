# JITR Lambda (internal/jitr, lambda/jitr): unit tests, the moto scenarios, and the API-call/latency bench.
TEST_TARGETS  += test-jitr
BENCH_TARGETS += bench-jitr

JITR_PKGS := ./internal/jitr/... ./lambda/jitr/...

.PHONY: test-jitr bench-jitr
test-jitr: .stamps/go .stamps/venv ## JITR Lambda: unit tests and every moto scenario (verbose: each scenario is listed)
	$(GO) test -count=1 -v $(JITR_PKGS)

bench-jitr: .stamps/go .stamps/venv ## JITR Lambda: IoT API calls and handler time per event against moto
	$(GO) test -count=1 -run '^$$' -bench 'BenchmarkHandle' -benchtime 20x ./internal/jitr/
