# Operating the fleet (cmd/fleetctl): status and stale devices from the fleet index, one device, certificates by status, revoke / allow a device, the
# tenant CAs. Against AWS it reads the stack outputs (OUTPUTS file if present, else CloudFormation: STACK, REGION);
# against the local emulator (EMULATOR=build/demo/emulator.json, written while `make demo`'s emulator runs).
#   make fleet-status | fleet-cas | fleet-denylist       [REGION=] [STACK=] [EMULATOR=] [JSON=1]
#   make fleet-certs [CERT_STATUS=PENDING_ACTIVATION]
#   make fleet-device DEVICE=<device id>
#   make fleet-revoke DEVICE=<device id> [REASON='...']
#   make fleet-allow  DEVICE=<device id>
#   make demo-operate    the emulator, 3 devices, then every fleetctl command against it (the README's outputs)
#   go install ./cmd/fleetctl puts the tool on PATH.

FLEETCTL      := build/bin/fleetctl
REGION        ?=
EMULATOR      ?=
DEVICE        ?=
REASON        ?=
CERT_STATUS   ?=
JSON          ?=
OPERATE_PKGS  := ./cmd/fleetctl/... ./internal/operate/... ./internal/workplan/... ./internal/caexpiry/... ./lambda/cacheck/... ./internal/accountsettings/... ./lambda/accountsettings/...

FLEETCTL_ARGS = $(if $(EMULATOR),-emulator '$(EMULATOR)',-stack '$(STACK)' $(if $(REGION),-region '$(REGION)') $(DEVICE_OUTPUTS_FLAG)) $(if $(JSON),-json)

TEST_TARGETS += test-operate

.PHONY: fleetctl fleet-status fleet-certs fleet-device fleet-revoke fleet-allow fleet-cas fleet-denylist demo-operate test-operate
fleetctl: .stamps/go ## build the operator tool into build/bin/fleetctl (or: go install ./cmd/fleetctl)
	@mkdir -p $(dir $(FLEETCTL))
	$(GO) build -o $(FLEETCTL) ./cmd/fleetctl

fleet-status: fleetctl ## from the fleet index: devices, connected now, deny-list, pending registrations, dead letters
	$(FLEETCTL) status $(FLEETCTL_ARGS)

fleet-certs: fleetctl ## certificates of the stack's CAs by status (CERT_STATUS=PENDING_ACTIVATION for the stuck ones)
	$(FLEETCTL) certs $(FLEETCTL_ARGS) $(if $(CERT_STATUS),-status '$(CERT_STATUS)')

fleet-device: fleetctl ## one device in detail: DEVICE=<device id>
	@test -n "$(DEVICE)" || { echo "fleet-device: pass DEVICE=<Azure Sphere device id>" >&2; exit 2; }
	$(FLEETCTL) device '$(DEVICE)' $(FLEETCTL_ARGS)

fleet-revoke: fleetctl ## shut a device out: deny-list, certificates REVOKED and detached: DEVICE=<device id> [REASON=]
	@test -n "$(DEVICE)" || { echo "fleet-revoke: pass DEVICE=<Azure Sphere device id>" >&2; exit 2; }
	$(FLEETCTL) revoke '$(DEVICE)' $(FLEETCTL_ARGS) $(if $(REASON),-reason '$(REASON)')

fleet-allow: fleetctl ## take a device off the deny-list (its next boot is provisioned): DEVICE=<device id>
	@test -n "$(DEVICE)" || { echo "fleet-allow: pass DEVICE=<Azure Sphere device id>" >&2; exit 2; }
	$(FLEETCTL) allow '$(DEVICE)' $(FLEETCTL_ARGS)

fleet-cas: fleetctl ## the stack's tenant CAs: status, expiry, days left, successor registered
	$(FLEETCTL) cas $(FLEETCTL_ARGS)

fleet-denylist: fleetctl ## the devices on the deny-list
	$(FLEETCTL) denylist $(FLEETCTL_ARGS)

# Every command against a running emulator with three provisioned devices; the first one is revoked, then allowed.
demo-operate: .stamps/go .stamps/npm .stamps/venv emulator-synth fleetctl ## the emulator, 3 devices, then each fleetctl command (status, certs, device, revoke, denylist, allow, cas)
	@$(call emulator_up,-quiet); \
	$(EMULATOR_BIN)/devicesim run -info $(EMULATOR_RUN)/emulator.json -ca $(EMULATOR_DIR)/tenant-ca -devices 3 -reboot 2 > $(EMULATOR_DIR)/devicesim.log; \
	op() { echo; echo "\$$ fleetctl $$*"; $(FLEETCTL) "$$@" -emulator $(EMULATOR_RUN)/emulator.json; }; \
	op status -walk; \
	op certs; \
	dev=$$($(FLEETCTL) status -walk -json -quiet -emulator $(EMULATOR_RUN)/emulator.json | python3 -c 'import json,sys; print(json.load(sys.stdin)["devices"][0]["thingName"])'); \
	op device $$dev; \
	op revoke $$dev -reason "reported stolen"; \
	op denylist -quiet; \
	op status -walk -quiet; \
	op allow $$dev; \
	op cas

test-operate: .stamps/go .stamps/venv ## fleetctl, the CA-expiry check: unit tests (the end-to-end tests are in test-emulator)
	$(GO) test -count=1 -v $(OPERATE_PKGS)

# fleetctl over 10 000 things in moto (AWS IoT quotas on for fleetctl, off for the set-up): status and device from
# the fleet index, beside today's registry walk (status -walk) measured on the same things with 100 certificates
# and projected to 10 000. Prints numbers; asserts nothing.
.PHONY: bench-fleetctl
bench-fleetctl: .stamps/go .stamps/venv ## fleetctl status/device from the fleet index vs the registry walk, 10 000 things in moto
	$(GO) test -count=1 -run '^$$' -bench '^BenchmarkFleetctl$$' -benchtime 1x -timeout 30m ./internal/operate/

# `cdk destroy` of a fleet too large for one custom resource, in the local emulator: TEARDOWN_FLEET devices (default
# 20 000) registered straight into its moto as JITR leaves them; its Destroy at AWS IoT's default quotas runs the
# real teardown function, which prints its estimate and refuses, deleting nothing; `fleetctl decommission -all`
# (quotas lifted ×100 for speed, its plan at the default quotas printed) retires the fleet; Destroy again completes
# and nothing of the stack is left. Prints the transcript. TEARDOWN_RATE_SHARE=0.1 paces the teardown function to a
# tenth of the default quotas, so TEARDOWN_FLEET=2000 rehearses the refusal in minutes.
TEARDOWN_FLEET ?= 20000
TEARDOWN_RATE_SHARE ?=
.PHONY: bench-teardown
bench-teardown: .stamps/go .stamps/npm .stamps/venv ## cdk destroy of TEARDOWN_FLEET (20 000) devices in the emulator: the estimate, the refusal, decommission -all, Destroy again
	TEARDOWN_FLEET=$(TEARDOWN_FLEET) TEARDOWN_RATE_SHARE=$(TEARDOWN_RATE_SHARE) $(GO) test -count=1 -v -run '^TestDestroyOfALargeFleet$$' -timeout 180m ./emulator/localaws/
