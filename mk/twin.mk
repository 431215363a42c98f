# Local twin (internal/twin, internal/fleet, cmd/twin, cmd/fleetsim): the whole JITR flow on this machine with moto,
# the synthesized template, the real JITR function under aws-lambda-rie and simulated devices.
#   make demo        3 devices, one reboots: the timeline as it happens, then a summary
#   make test-twin   unit and end-to-end tests (verbose: every test is listed)
#   make bench-twin  provisioning latency p50/p95 and total for 100 and 1000 devices booting at once

TWIN_DIR         := build/demo
TWIN_BIN         := build/bin
TWIN_RIE         := build/tools/bin/aws-lambda-rie
TWIN_RIE_VERSION := v0.0.0-20261030222936-bef5c4ba774d
TWIN_TEMPLATE    := $(TWIN_DIR)/cdk.out/SphereJitr.template.json
TWIN_TENANT_ID   := 7d0c3e6a-2f4b-4c1e-9a5d-1b8e6f3c2a90
TWIN_DEVICES     ?= 3
TWIN_REBOOT      ?= 2
TWIN_BENCH_SIZES ?= 100,1000

TEST_TARGETS  += test-twin
BENCH_TARGETS += bench-twin

.PHONY: demo demo-device test-twin bench-twin twin-build twin-synth

$(TWIN_RIE): | .stamps/go
	GOBIN=$(CURDIR)/build/tools/bin CGO_ENABLED=0 $(GO) install github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@$(TWIN_RIE_VERSION)

# The JITR function for this machine (the stack bundles it for linux/arm64), the twin and the simulator.
twin-build: .stamps/go $(TWIN_RIE)
	@mkdir -p $(TWIN_BIN) $(TWIN_DIR)
	CGO_ENABLED=0 $(GO) build -trimpath -tags lambda.norpc -o $(TWIN_DIR)/bootstrap ./lambda/jitr
	$(GO) build -o $(TWIN_BIN)/ ./cmd/twin ./cmd/fleetsim

# A test tenant CA (kept between runs) and the stack synthesized for it: the twin deploys exactly this template.
twin-synth: twin-build .stamps/npm
	@test -f $(TWIN_DIR)/tenant-ca.pem || $(TWIN_BIN)/fleetsim tenant-ca -dir $(TWIN_DIR)
	$(CDK) synth -q -o $(TWIN_DIR)/cdk.out \
		-c tenantCaCerts=$(CURDIR)/$(TWIN_DIR)/tenant-ca.pem \
		-c verificationCerts=$(CURDIR)/$(TWIN_DIR)/verification.pem \
		-c tenantId=$(TWIN_TENANT_ID) -c certificateMode=DEFAULT

# twin_up starts the twin in the background ($(1): extra flags) and stops it, and everything it started, when the
# recipe ends: normally, on failure, or on Ctrl-C.
define twin_up
twin_pid=""; \
cleanup() { if [ -n "$$twin_pid" ]; then kill -TERM "$$twin_pid" 2>/dev/null || true; wait "$$twin_pid" 2>/dev/null || true; fi; }; \
trap cleanup EXIT; trap 'exit 130' INT TERM; \
rm -f $(TWIN_DIR)/twin.json; \
$(TWIN_BIN)/twin -template $(TWIN_TEMPLATE) -bootstrap $(TWIN_DIR)/bootstrap -rie $(TWIN_RIE) \
	-info $(TWIN_DIR)/twin.json -log $(TWIN_DIR)/twin.log $(1) & twin_pid=$$!; \
for i in $$(seq 1 600); do \
	[ -f $(TWIN_DIR)/twin.json ] && break; \
	kill -0 "$$twin_pid" 2>/dev/null || { echo "twin did not start: see $(TWIN_DIR)/twin.log" >&2; exit 1; }; \
	sleep 0.1; \
done; \
[ -f $(TWIN_DIR)/twin.json ] || { echo "twin did not start within 60 s: see $(TWIN_DIR)/twin.log" >&2; exit 1; }
endef

demo: .stamps/go .stamps/npm .stamps/venv twin-synth ## the whole flow locally: twin (moto + template + JITR Lambda + IoT broker) and 3 devices, one reboots
	@$(call twin_up,); \
	$(TWIN_BIN)/fleetsim run -info $(TWIN_DIR)/twin.json -ca $(TWIN_DIR)/tenant-ca -devices $(TWIN_DEVICES) -reboot $(TWIN_REBOOT)

# The real C device app (device/, host build) instead of simulated devices: it needs the AWS IoT Device SDK
# libraries (DEVICE_CMAKE_ARGS with the six FETCHCONTENT_SOURCE_DIR_* copies, see device/README.md).
DEVICE_APP := device/build/host/sphere_jitr

demo-device: .stamps/go .stamps/npm .stamps/venv twin-synth device-host ## make demo with the C device app (needs the SDK libraries: DEVICE_CMAKE_ARGS='...')
	@test -x $(DEVICE_APP) || { cat device/build/host/sdk_libraries_status.txt; \
		echo "demo-device: the host device app was not built; pass the SDK library copies, e.g. make demo-device DEVICE_CMAKE_ARGS='-DFETCHCONTENT_SOURCE_DIR_COREMQTT=<dir> ...' (device/README.md)" >&2; exit 1; }
	@$(call twin_up,); \
	set -- $$($(TWIN_BIN)/fleetsim device-cert -info $(TWIN_DIR)/twin.json -ca $(TWIN_DIR)/tenant-ca -out $(TWIN_DIR)/c-device); \
	$(DEVICE_APP) --cert $(TWIN_DIR)/c-device/device.pem --key $(TWIN_DIR)/c-device/device.key \
		--ca $(TWIN_DIR)/c-device/server-ca.pem --endpoint localhost --port $$2 --publish-count 1

test-twin: .stamps/go .stamps/npm .stamps/venv $(TWIN_RIE) ## local twin: unit tests and end-to-end tests (real template, real JITR function)
	TWIN_RIE=$(CURDIR)/$(TWIN_RIE) $(GO) test -count=1 -v -timeout 10m ./internal/twin/... ./internal/fleet/... ./cmd/twin/... ./cmd/fleetsim/...

bench-twin: .stamps/venv twin-synth ## local twin: provisioning latency (first connect → connected) p50/p95 and total, 100 and 1000 devices
	@$(call twin_up,-quiet -workers 2); \
	$(TWIN_BIN)/fleetsim bench -info $(TWIN_DIR)/twin.json -ca $(TWIN_DIR)/tenant-ca -sizes $(TWIN_BENCH_SIZES)
