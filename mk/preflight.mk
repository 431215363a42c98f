# Before the first deploy to an account and region (cmd/preflight): bootstrap CDK there with the project's pinned
# CLI, then check everything the deploy needs. Both use the credentials and region of the usual AWS chain
# (AWS_PROFILE, AWS_REGION, ...); REGION= overrides the region.
#   make bootstrap  [REGION=] [BOOTSTRAP_ARGS='--trust ...']     cdk bootstrap aws://<account>/<region>, pinned CLI
#   make preflight  [REGION=] [DEVICES=1000] [CDK_ARGS='-c tenantCaCerts=... -c verificationCerts=...']
#                   credentials, tenant CA files and their account/region, the bootstrap stack, account-wide AWS IoT
#                   settings, the AWS IoT quotas and the projected whole-fleet reboot time of DEVICES devices

REGION         ?=
DEVICES        ?= 1000
BOOTSTRAP_ARGS ?=
PREFLIGHT_PKGS := ./cmd/preflight/...

PREFLIGHT_REGION_FLAG = $(if $(REGION),-region '$(REGION)')

TEST_TARGETS += test-preflight

.PHONY: bootstrap preflight test-preflight
# cdk bootstrap synthesizes the app when it finds one, and the app refuses to synthesize without its context (the
# tenant CA): bootstrap runs from BOOTSTRAP_DIR, whose cdk.json names no app, with the same pinned CLI (on PATH).
BOOTSTRAP_DIR := build/bootstrap

bootstrap: .stamps/go .stamps/npm ## cdk bootstrap the account and region of your credentials with the pinned CDK CLI (REGION=)
	@env=$$($(GO) run ./cmd/preflight -print-environment $(PREFLIGHT_REGION_FLAG)); \
	mkdir -p $(BOOTSTRAP_DIR); \
	printf '%s\n' '{"notices": false, "versionReporting": false, "context": {"cli-telemetry": false}}' > $(BOOTSTRAP_DIR)/cdk.json; \
	echo "bootstrap: cdk bootstrap $$env $(BOOTSTRAP_ARGS)  (CDK CLI $$($(CDK) --version) from package-lock.json, Node.js $$(node --version))"; \
	cd $(BOOTSTRAP_DIR) && $(CDK) bootstrap $$env $(BOOTSTRAP_ARGS); \
	echo "bootstrap: $$env is bootstrapped (stack CDKToolkit); next: make preflight"

preflight: .stamps/go ## check credentials, tenant CA files, their account/region, CDK bootstrap, AWS IoT settings and quotas before make deploy (DEVICES=, REGION=, CDK_ARGS=)
	$(GO) run ./cmd/preflight -devices '$(DEVICES)' $(PREFLIGHT_REGION_FLAG) -cdk-args "$$PREFLIGHT_CDK_ARGS"

# CDK_ARGS goes through the environment: its quotes stay intact.
preflight: export PREFLIGHT_CDK_ARGS = $(CDK_ARGS)

test-preflight: .stamps/go .stamps/venv ## preflight against moto: a passing run and each failure with its fix
	$(GO) test -count=1 -v $(PREFLIGHT_PKGS)
