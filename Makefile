# sphere-jitr: Azure Sphere MT3620 fleets on AWS IoT Core with just-in-time registration.
# `make demo` and `make test` do all the set-up they need on a fresh machine (idempotently).
# Parts of the product add their own targets in mk/*.mk and hook into SETUP_TARGETS, TEST_TARGETS, BENCH_TARGETS.

SHELL        := /bin/bash
.SHELLFLAGS  := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO          ?= go
VENV        := .venv
PY          := $(VENV)/bin/python
CDK         := npx --no-install cdk
# The CDK CLI and the jsii runtime of the Go CDK app run on the Node.js 24 that package-lock.json pins
# (node-linux-<arch>), put first on PATH for every recipe; the machine's own Node only runs npm to install it.
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)
export CDK_DISABLE_VERSION_CHECK := 1
# The local emulator and the tests start moto from the project venv.
export MOTO_PYTHON := $(CURDIR)/$(PY)

SETUP_TARGETS :=
TEST_TARGETS  :=
BENCH_TARGETS :=

.PHONY: help setup synth deploy destroy test lint bench
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | sort | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

# --- set-up (stamp files make every step idempotent and cheap the second time) -----------------------------------
.stamps:
	@mkdir -p $@

.stamps/go: go.mod go.sum | .stamps
	$(GO) mod download
	@touch $@

.stamps/npm: package.json package-lock.json | .stamps
	npm ci --no-audit --no-fund
	@node_modules/.bin/node --version >/dev/null || { echo "Node.js 24 did not install from package-lock.json (node-linux-<arch>)" >&2; exit 1; }
	@touch $@

.stamps/venv: requirements.txt | .stamps
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

STATICCHECK := $(shell $(GO) env GOPATH)/bin/staticcheck
$(STATICCHECK):
	$(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2

# Go packages of the CDK app and the shared libraries; the parts in mk/*.mk test their own packages.
CORE_GO_PKGS := . ./stacks/... ./infra/... ./internal/config/... ./internal/azsphere/... ./internal/contract/... \
                ./internal/iotapi/... ./internal/iotquota/... ./internal/lambdabuild/... ./internal/teardown/... ./lambda/teardown/... \
                ./internal/presign/... ./lambda/presign/... ./internal/emf/...
TEST_TARGETS += lint test-cdk

# The parts add to SETUP_TARGETS, TEST_TARGETS and BENCH_TARGETS: include them before any rule uses those.
-include mk/*.mk

# Every Go package of the module is tested by some target: a package added without one fails here.
GO_TEST_PKGS = $(CORE_GO_PKGS) $(TESTKIT_PKGS) $(JITR_PKGS) $(EMULATOR_PKGS) $(DEVICEIMAGE_PKGS) $(OPERATE_PKGS) $(DOCS_PKGS) $(PREFLIGHT_PKGS)
TEST_TARGETS += test-packages-covered
.PHONY: test-packages-covered
test-packages-covered: .stamps/go
	@missing=$$(comm -23 <($(GO) list ./... | sort) <($(GO) list $(GO_TEST_PKGS) | sort)); \
	if [ -n "$$missing" ]; then echo "no test target runs these packages (add them to a *_PKGS list):" $$missing >&2; exit 1; fi; \
	echo "test-packages-covered: $$($(GO) list ./... | wc -l) packages, each in a test target"

setup: .stamps/go .stamps/npm .stamps/venv $(SETUP_TARGETS) ## install everything the project needs (idempotent)
	@echo "setup: Node.js $$(node --version) for the CDK CLI and jsii ($$(command -v node))"

# --- CDK -------------------------------------------------------------------------------------------------------
synth: .stamps/go .stamps/npm ## synthesize the stack (pass context with CDK_ARGS='-c tenantCaCerts=...')
	$(CDK) synth $(CDK_ARGS)

# deploy remembers its context arguments: the app validates its context on every run, destroy included.
DEPLOY_ARGS_FILE := cdk-deploy-args

deploy: .stamps/go .stamps/npm ## deploy the stack to your AWS account (CDK_ARGS='-c ...')
	$(CDK) deploy --outputs-file cdk-outputs.json $(CDK_ARGS)
	@printf '%s\n' "$(CDK_ARGS)" > $(DEPLOY_ARGS_FILE)

destroy: .stamps/go .stamps/npm ## remove the stack, its devices and certificates (see README); reuses the deploy's CDK_ARGS
	$(CDK) destroy $(or $(CDK_ARGS),$(shell cat $(DEPLOY_ARGS_FILE) 2>/dev/null))

# --- quality ---------------------------------------------------------------------------------------------------
# The suites run TEST_JOBS at a time (2: most of their time is spent waiting on moto, the emulator and the device
# toolchain, so two keep 2 cores busy); each suite's output is printed whole when it ends. TEST_JOBS=1 runs them one
# after the other, streaming.
TEST_JOBS ?= 2
test: setup ## run every test: Go (CDK assertions, snapshot, cdk-nag, Lambda, moto), cfn-lint, device
	$(MAKE) --no-print-directory -j$(TEST_JOBS) $(if $(filter-out 1,$(TEST_JOBS)),--output-sync=target) $(TEST_TARGETS)
	@echo "make test: all suites passed"

lint: .stamps/go $(STATICCHECK) ## gofmt, go vet, staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

bench: setup $(BENCH_TARGETS) ## print the benchmark tables

.PHONY: test-cdk
test-cdk: setup ## CDK app: config refusals, template assertions, snapshot, cdk-nag, cfn-lint, bundling
	$(GO) test -count=1 -v $(CORE_GO_PKGS)
