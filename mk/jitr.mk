# JITR Lambda (internal/jitr, lambda/jitr): unit tests, the moto scenarios, and the API-call/latency bench.
TEST_TARGETS  += test-jitr
BENCH_TARGETS += bench-jitr

JITR_PKGS := ./internal/jitr/... ./lambda/jitr/...
# Bounded fuzzing of the event decoder (with the handler's logging) and of the device-certificate checker; a
# crashing input is written to the target's testdata/fuzz corpus by go test itself: commit it with the fix.
JITR_FUZZTIME ?= 15s
JITR_FUZZ     := FuzzEvent:./internal/jitr/ FuzzDeviceCertificate:./internal/azsphere/

.PHONY: test-jitr bench-jitr
test-jitr: .stamps/go .stamps/venv ## JITR Lambda: unit tests, every moto scenario (verbose: each scenario is listed), bounded fuzz runs
	$(GO) test -count=1 -v $(JITR_PKGS)
	@set -e; for t in $(JITR_FUZZ); do \
		echo "fuzz $${t%%:*} for $(JITR_FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${t%%:*}$$" -fuzztime $(JITR_FUZZTIME) "$${t#*:}"; \
	done

bench-jitr: .stamps/go .stamps/venv ## JITR Lambda: IoT API calls and handler time per event against moto
	$(GO) test -count=1 -run '^$$' -bench 'BenchmarkHandle' -benchtime 20x ./internal/jitr/
