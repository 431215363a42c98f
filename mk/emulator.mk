# The local emulator (emulator/): moto as AWS, an AWS IoT Core-like broker, the synthesized template and the real
# JITR function under aws-lambda-rie, with the fleet simulator — the whole JITR flow on this machine. Nothing here
# is deployed.
#   make demo            3 devices, one reboots: the timeline as it happens, a summary, then cdk destroy
#   make demo-device     the same with the C device app (needs the SDK libraries, see device/README.md)
#   make test-emulator   unit and end-to-end tests (verbose: every test is listed)
#   make bench-emulator  provisioning latency p50/p95 and total for 100 and 1000 devices booting at once

EMULATOR_DIR       := build/demo
EMULATOR_BIN       := build/bin
EMULATOR_TEMPLATE  := $(EMULATOR_DIR)/cdk.out/SphereJitr.template.json
EMULATOR_TENANT_ID := 7d0c3e6a-2f4b-4c1e-9a5d-1b8e6f3c2a90
DEMO_DEVICES       ?= 3
DEMO_REBOOT        ?= 2
BENCH_SIZES        ?= 100,1000
EMULATOR_PKGS      := ./emulator/...

TEST_TARGETS  += test-emulator
# The README's first command, end to end: it fails unless the end state is right (devicesim's check).
TEST_TARGETS  += demo
BENCH_TARGETS += bench-emulator

.PHONY: demo demo-device test-emulator bench-emulator emulator-build emulator-synth

# The emulator and the simulator; the emulator builds the JITR function and aws-lambda-rie itself when it starts.
emulator-build: .stamps/go
	@mkdir -p $(EMULATOR_BIN) $(EMULATOR_DIR)
	$(GO) build -o $(EMULATOR_BIN)/ ./emulator/cmd/localaws ./emulator/cmd/devicesim

# A test tenant CA (kept between runs) and the stack synthesized for it: the emulator deploys exactly this template.
emulator-synth: emulator-build .stamps/npm
	@test -f $(EMULATOR_DIR)/tenant-ca.pem || $(EMULATOR_BIN)/devicesim tenant-ca -dir $(EMULATOR_DIR)
	$(CDK) synth -q -o $(EMULATOR_DIR)/cdk.out \
		-c tenantCaCerts=$(CURDIR)/$(EMULATOR_DIR)/tenant-ca.pem \
		-c verificationCerts=$(CURDIR)/$(EMULATOR_DIR)/verification.pem \
		-c tenantId=$(EMULATOR_TENANT_ID) -c certificateMode=DEFAULT

# emulator_up starts the emulator in the background ($(1): extra flags) and stops it, and everything it started,
# when the recipe ends: normally, on failure, or on Ctrl-C. Its info file and log go to EMULATOR_RUN (build/demo; a
# target that may run beside another sets its own, so two emulators never share them).
EMULATOR_RUN := $(EMULATOR_DIR)
define emulator_up
emu_pid=""; \
cleanup() { if [ -n "$$emu_pid" ]; then kill -TERM "$$emu_pid" 2>/dev/null || true; wait "$$emu_pid" 2>/dev/null || true; fi; }; \
trap cleanup EXIT; trap 'exit 130' INT TERM; \
mkdir -p $(EMULATOR_RUN); rm -f $(EMULATOR_RUN)/emulator.json; \
$(EMULATOR_BIN)/localaws -template $(EMULATOR_TEMPLATE) -info $(EMULATOR_RUN)/emulator.json -log $(EMULATOR_RUN)/emulator.log $(1) & emu_pid=$$!; \
for i in $$(seq 1 1200); do \
	[ -f $(EMULATOR_RUN)/emulator.json ] && break; \
	kill -0 "$$emu_pid" 2>/dev/null || { echo "the emulator did not start: see $(EMULATOR_RUN)/emulator.log" >&2; exit 1; }; \
	sleep 0.1; \
done; \
[ -f $(EMULATOR_RUN)/emulator.json ] || { echo "the emulator did not start within 120 s: see $(EMULATOR_RUN)/emulator.log" >&2; exit 1; }
endef

demo: .stamps/go .stamps/npm .stamps/venv emulator-synth ## the whole flow locally: emulator (moto + template + JITR Lambda + IoT broker) and 3 devices, one reboots, then cdk destroy (DEMO_DEVICES=, DEMO_REBOOT=)
	@$(call emulator_up,); \
	$(EMULATOR_BIN)/devicesim run -info $(EMULATOR_RUN)/emulator.json -ca $(EMULATOR_DIR)/tenant-ca -devices $(DEMO_DEVICES) -reboot $(DEMO_REBOOT) && \
	$(EMULATOR_BIN)/localaws destroy -info $(EMULATOR_RUN)/emulator.json

# The real C device app (device/, host build) instead of simulated devices, S3 step included (runtime URLs from the
# presign function, transfers through the S3 gate over HTTPS): it needs the AWS IoT Device SDK
# libraries (DEVICE_CMAKE_ARGS with the six FETCHCONTENT_SOURCE_DIR_* copies, see device/README.md).
DEVICE_APP := device/build/host/sphere_jitr

demo-device: .stamps/go .stamps/npm .stamps/venv emulator-synth device-host ## make demo with the C device app (needs the SDK libraries: DEVICE_CMAKE_ARGS='...')
	@test -x $(DEVICE_APP) || { cat device/build/host/sdk_libraries_status.txt; \
		echo "demo-device: the host device app was not built; pass the SDK library copies, e.g. make demo-device DEVICE_CMAKE_ARGS='-DFETCHCONTENT_SOURCE_DIR_COREMQTT=<dir> ...' (device/README.md)" >&2; exit 1; }
	@$(call emulator_up,); \
	set -- $$($(EMULATOR_BIN)/devicesim device-cert -info $(EMULATOR_RUN)/emulator.json -ca $(EMULATOR_DIR)/tenant-ca -out $(EMULATOR_DIR)/c-device); \
	$(DEVICE_APP) --cert $(EMULATOR_DIR)/c-device/device.pem --key $(EMULATOR_DIR)/c-device/device.key \
		--ca $(EMULATOR_DIR)/c-device/server-ca.pem --endpoint localhost --port $$2 --publish-count 1

test-emulator: .stamps/go .stamps/npm .stamps/venv ## local emulator: unit and end-to-end tests (real template, real JITR function)
	$(GO) test -count=1 -v -timeout 25m $(EMULATOR_PKGS)

bench-emulator: .stamps/venv emulator-synth ## local emulator: provisioning latency (first connect → connected) p50/p95 and total, 100 and 1000 devices (BENCH_SIZES=)
	@$(call emulator_up,-quiet -workers 2); \
	$(EMULATOR_BIN)/devicesim bench -info $(EMULATOR_RUN)/emulator.json -ca $(EMULATOR_DIR)/tenant-ca -sizes $(BENCH_SIZES)

# The names these targets had before the emulator got its own folder.

# The fleet storm (issue 13): N devices reboot at once against AWS IoT's quotas (testkit/moto/quotas.py), through
# the template's registration queue and event source mapping. The template is synthesized with the scale's quotas
# (what a user passes after a quota increase), so the function paces itself to what moto enforces; the bench rescales
# the function's pacing with the quotas for its other passes.
#   make bench-storm      the capacity pass (first boot, quotas lifted ×100: capacity=activations/s), then first boot
#                         and reboot of STORM_DEVICES (1000) at STORM_SCALE (auto: the largest scale ≤ 1 where the
#                         emulator has headroom ≥ 2, then scale 1): one line per scenario
#   make bench-storm-10k  first boot and reboot of STORM_10K_DEVICES (10000) with the quotas lifted, one reconciler
#                         pass after: per-device costs, tail rate, reconcile_reads (about 27 min on 2 cores;
#                         STORM_10K_DEVICES=1000 for the comparison: docs/operating.md, "10 000 devices on one 2-core machine")
#                         STORM_TIMES=DIR (either bench) writes each scenario's activation, connect and retirement times there
#   make test-storm       50 devices at scale 10, counts only (lost=0 dlq=0 retired=N): part of make test; the
#                         devices' connections are made in a process of their own, as a run past the open-files
#                         limit does (-device-process, emulator/cmd/storm/links.go)
STORM_DEVICES     ?= 1000
STORM_SCALE       ?= auto
STORM_10K_DEVICES ?= 10000
STORM_DIR         := build/storm
STORM_TIMES       ?=
STORM_ARGS         = -template $(STORM_DIR)/cdk.out/SphereJitr.template.json -ca $(EMULATOR_DIR)/tenant-ca -log $(STORM_DIR)/storm.log \
                     $(if $(STORM_TIMES),-times $(STORM_TIMES))

TEST_TARGETS  += test-storm
BENCH_TARGETS += bench-storm

.PHONY: bench-storm bench-storm-10k test-storm storm-synth

storm-synth: emulator-synth
	$(GO) build -o $(EMULATOR_BIN)/ ./emulator/cmd/storm
	@mkdir -p $(STORM_DIR)
	$(CDK) synth -q -o $(STORM_DIR)/cdk.out \
		-c tenantCaCerts=$(CURDIR)/$(EMULATOR_DIR)/tenant-ca.pem \
		-c verificationCerts=$(CURDIR)/$(EMULATOR_DIR)/verification.pem \
		-c tenantId=$(EMULATOR_TENANT_ID) -c certificateMode=DEFAULT \
		-c iotQuotas="$$($(EMULATOR_BIN)/storm context -scale $(STORM_SCALE))"

bench-storm: .stamps/go .stamps/npm .stamps/venv storm-synth ## fleet storm: capacity pass, then STORM_DEVICES (1000) devices boot and reboot at once against AWS IoT's quotas ×STORM_SCALE (auto)
	$(EMULATOR_BIN)/storm $(STORM_ARGS) -devices $(STORM_DEVICES) -scale $(STORM_SCALE)

bench-storm-10k: STORM_SCALE = 1
bench-storm-10k: .stamps/go .stamps/npm .stamps/venv storm-synth ## fleet storm at cost: STORM_10K_DEVICES (10000) devices boot and reboot with the quotas lifted, then one reconciler pass
	$(EMULATOR_BIN)/storm $(STORM_ARGS) -devices $(STORM_10K_DEVICES) -scale 1 -lifted -capacity=false -reconcile

test-storm: STORM_DEVICES = 50
test-storm: STORM_SCALE = 10
test-storm: .stamps/go .stamps/npm .stamps/venv storm-synth ## a small fleet storm (50 devices, scale 10): fails unless lost=0 dlq=0 retired=N
	$(EMULATOR_BIN)/storm $(STORM_ARGS) -devices $(STORM_DEVICES) -scale $(STORM_SCALE) -capacity=false -check -device-process=true
