# Conformance suite (emulator/conformance/): real, unmodified third-party MQTT clients against the local emulator —
# the AWS IoT Device SDK for Python v2 and its shadow client, paho-mqtt (MQTT 3.1.1 and 5) and mosquitto's clients.
# The Python clients are pinned in requirements.txt; mosquitto-clients comes from Debian.
#   make test-conformance   starts the emulator, lists every case with the clients' versions, stops it

CONFORMANCE_APT_PACKAGES := mosquitto-clients
CONFORMANCE_SUDO         := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

SETUP_TARGETS += setup-conformance
TEST_TARGETS  += test-conformance

.PHONY: setup-conformance test-conformance
setup-conformance: ## install mosquitto's clients for the conformance suite (apt, idempotent)
	@missing=""; for p in $(CONFORMANCE_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "setup-conformance: installing$$missing"; \
		$(CONFORMANCE_SUDO) apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive $(CONFORMANCE_SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# Its own emulator files: make test runs it beside make demo.
test-conformance: EMULATOR_RUN := build/conformance
test-conformance: .stamps/venv setup-conformance emulator-synth ## third-party MQTT clients (AWS IoT Device SDK v2, paho-mqtt 3.1.1/5, mosquitto) against the emulator
	@$(call emulator_up,-quiet); \
	CONFORMANCE_INFO=$(EMULATOR_RUN)/emulator.json CONFORMANCE_CA=$(EMULATOR_DIR)/tenant-ca \
	CONFORMANCE_DEVICESIM=$(EMULATOR_BIN)/devicesim \
	$(PY) -m pytest -p no:cacheprovider -v -rA --strict-markers emulator/conformance
