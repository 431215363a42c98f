# Device configuration and image from the deployed stack (cmd/deviceconfig), and the tenant CA download
# (cmd/tenantca). Nothing here is pasted by hand: endpoint, presigned S3 URLs and tenant id come from the stack.
#   make device-config [OUTPUTS=cdk-outputs.json] [STACK=SphereJitr] [EXPIRES=24h] [PORT=8883] [DEVICE_CONFIG_DIR=device/build/config]
#   make device-image  (same variables; needs the Azure Sphere SDK, AzureSphereDefaultSDKDir)
#   make tenant-ca     [CATALOG=<name> RESOURCE_GROUP=<group> CA_NAME=<serial>] | LEGACY_CLI=1 [INDEX=<n> | THUMBPRINT=<sha1>]
#                      (LEGACY_CLI=1: the legacy azsphere CLI instead of az sphere, until it retires on 2027-09-27)

OUTPUTS        ?= cdk-outputs.json
STACK          ?= SphereJitr
EXPIRES        ?= 24h
PORT           ?= 8883
DEVICE_CONFIG_DIR ?= device/build/config
TENANT_CA_DIR  ?= build/tenant-ca
CATALOG        ?=
RESOURCE_GROUP ?=
CA_NAME        ?=
INDEX          ?=
THUMBPRINT     ?=
LEGACY_CLI     ?=
TENANT_ID      ?=

# OUTPUTS left at its default while the file does not exist: read the outputs from CloudFormation instead.
# An OUTPUTS given on the command line or in the environment is always used (a missing file is an error).
DEVICE_OUTPUTS_FLAG = $(if $(OUTPUTS),$(if $(or $(filter-out file,$(origin OUTPUTS)),$(wildcard $(OUTPUTS))),-outputs '$(OUTPUTS)'))
DEVICE_CONFIG_ARGS  = $(DEVICE_OUTPUTS_FLAG) -stack '$(STACK)' -expires '$(EXPIRES)' -port '$(PORT)' -out '$(DEVICE_CONFIG_DIR)'
TENANT_CA_ARGS      = -out '$(TENANT_CA_DIR)' \
	$(if $(CATALOG),-catalog '$(CATALOG)') $(if $(RESOURCE_GROUP),-resource-group '$(RESOURCE_GROUP)') \
	$(if $(CA_NAME),-ca-name '$(CA_NAME)') $(if $(INDEX),-index '$(INDEX)') $(if $(THUMBPRINT),-thumbprint '$(THUMBPRINT)') \
	$(if $(TENANT_ID),-tenant-id '$(TENANT_ID)') $(if $(LEGACY_CLI),-legacy-cli)

DEVICEIMAGE_PKGS := ./cmd/deviceconfig/... ./cmd/tenantca/... ./internal/stackoutputs/...

TEST_TARGETS += test-deviceimage

.PHONY: device-config device-image tenant-ca test-deviceimage
device-config: .stamps/go ## write device/build/config (header, app_manifest.json) from the stack outputs: OUTPUTS=, STACK=, EXPIRES=
	$(GO) run ./cmd/deviceconfig $(DEVICE_CONFIG_ARGS)

device-image: .stamps/go ## device-config, then build the ARM-Release .imagepackage with the Azure Sphere SDK
	$(GO) run ./cmd/deviceconfig -image $(DEVICE_CONFIG_ARGS)

tenant-ca: .stamps/go ## download the tenant CA and its proof of possession (AWS IoT registration code) into build/tenant-ca
	$(GO) run ./cmd/tenantca $(TENANT_CA_ARGS)

test-deviceimage: .stamps/go .stamps/venv ## device-config, device-image, tenant-ca: golden files, presigned URLs, refusals, header compile, fake az
	$(GO) test -count=1 -v $(DEVICEIMAGE_PKGS)
