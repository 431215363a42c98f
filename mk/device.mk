# Device app (device/): host build and tests, ARM size report. `make device-config` / `make device-image`
# live elsewhere. Local copies of the SDK libraries go in DEVICE_CMAKE_ARGS, e.g.
#   make test-device DEVICE_CMAKE_ARGS='-DFETCHCONTENT_SOURCE_DIR_COREMQTT=<dir> ... (all six, see device/README.md)'

DEVICE_DIR         := device
DEVICE_CMAKE_ARGS  ?=
DEVICE_APT_PACKAGES := cmake ninja-build gcc git libwolfssl-dev gcc-arm-linux-gnueabihf binutils-arm-linux-gnueabihf libc6-dev-armhf-cross mosquitto python3 openssl ca-certificates
DEVICE_SUDO        := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEVICE_SIZE_BUILD  := build/size

SETUP_TARGETS += setup-device
TEST_TARGETS  += test-device

.PHONY: setup-device test-device device-host device-size
setup-device: ## install what the device build and tests need (apt, idempotent)
	@missing=""; for p in $(DEVICE_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "setup-device: installing$$missing"; \
		$(DEVICE_SUDO) apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive $(DEVICE_SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

device-host: setup-device ## configure and build the host preset (tests, and the app when the SDK libraries are reachable)
	cd $(DEVICE_DIR) && cmake --preset host $(DEVICE_CMAKE_ARGS) && cmake --build --preset host

test-device: device-host ## build and run the device tests (ctest); prints the SKIPPED line for SDK-dependent tests
	cd $(DEVICE_DIR) && ctest --preset host
	@cat $(DEVICE_DIR)/build/host/sdk_libraries_status.txt

device-size: setup-device ## ARM Cortex-A7 (-Os, thumb) text/data/bss of our code and of each SDK library
	cd $(DEVICE_DIR) && cmake -S . -B $(DEVICE_SIZE_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=MinSizeRel \
		-DCMAKE_TOOLCHAIN_FILE=cmake/arm-linux-gnueabihf.cmake -DDEVICE_SIZE_ONLY=ON -DDEVICE_PLATFORM=host \
		$(DEVICE_CMAKE_ARGS) >/dev/null
	@cd $(DEVICE_DIR)/$(DEVICE_SIZE_BUILD) && status=$$(cat sdk_libraries_status.txt 2>/dev/null || true); \
	if ! grep -q '^SDK libraries reachable' sdk_libraries_status.txt; then \
		echo "device-size $$status"; exit 0; \
	fi; \
	cmake --build . >/dev/null; \
	row() { n="$$1"; shift; arm-linux-gnueabihf-size -t "$$@" | awk -v n="$$n" 'END { printf "%-26s %8d %8d %8d %8d\n", n, $$1, $$2, $$3, $$1+$$2+$$3 }'; }; \
	printf "%-26s %8s %8s %8s %8s\n" "ARM Cortex-A7 -Os thumb" text data bss total; \
	row "sphere-jitr (our code)" libsj_core.a libsj_app.a $$(find . -path '*sj_main.dir*' -name '*.o'); \
	row "coreMQTT v2.3.1" libsdk_coremqtt.a; \
	row "coreHTTP v3.1.1 + llhttp" libsdk_corehttp.a; \
	row "coreJSON v3.3.1" libsdk_corejson.a; \
	row "Device Shadow v1.4.2" libsdk_shadow.a; \
	row "backoffAlgorithm v1.4.1" libsdk_backoff.a
