# Device app (device/): host build and tests, the ARM SDK-flags build with the wolfSSL ABI check, the size
# report. `make device-config` / `make device-image` live elsewhere. Local copies of the SDK libraries go in
# DEVICE_CMAKE_ARGS, e.g.
#   make test-device DEVICE_CMAKE_ARGS='-DFETCHCONTENT_SOURCE_DIR_COREMQTT=<dir> ... (all six, see device/README.md)'

DEVICE_DIR          := device
DEVICE_CMAKE_ARGS   ?=
# libc6-dev-armhf-cross: the armhf libc headers the ARM build compiles against; openssl: the cross-signed test PKI.
DEVICE_APT_PACKAGES := cmake ninja-build gcc git libwolfssl-dev gcc-arm-linux-gnueabihf binutils-arm-linux-gnueabihf \
                       libc6-dev-armhf-cross mosquitto python3 openssl
DEVICE_SUDO         := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEVICE_ARM_BUILD    := build/arm
# The wolfSSL headers the project installs (libwolfssl-dev): the ARM build compiles against them and the ABI
# check reads their WOLFSSL_ABI marks.
DEVICE_WOLFSSL_INCLUDE := /usr/include
# wolfSSL functions the Azure Sphere build must not reference, ABI or not: the DeviceAuth key never leaves the
# security subsystem, so key-file loading is the host platform's alone (Platform_UseClientKey).
DEVICE_FORBIDDEN_WOLFSSL := wolfSSL_CTX_use_PrivateKey_file wolfSSL_use_PrivateKey_file wolfSSL_CTX_use_PrivateKey_buffer \
                            wolfSSL_use_PrivateKey_buffer wolfSSL_CTX_use_RSAPrivateKey_file wolfSSL_use_RSAPrivateKey_file

SETUP_TARGETS += setup-device
TEST_TARGETS  += test-device

.PHONY: setup-device test-device device-host device-arm-check device-size
setup-device: ## install what the device build and tests need (apt, idempotent)
	@missing=""; for p in $(DEVICE_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "setup-device: installing$$missing"; \
		$(DEVICE_SUDO) apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive $(DEVICE_SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

device-host: setup-device ## configure and build the host preset (tests, and the app when the SDK libraries are reachable)
	cd $(DEVICE_DIR) && cmake --preset host $(DEVICE_CMAKE_ARGS) && cmake --build --preset host

# Every source of the Azure Sphere build, compiled for 32-bit ARM with the SDK's flags and -Werror against the
# project's applibs/tlsutils declarations; then every wolfSSL function the objects reference must be WOLFSSL_ABI
# and none may be one of DEVICE_FORBIDDEN_WOLFSSL.
device-arm-check: setup-device ## ARM build with the Azure Sphere SDK's flags, then the wolfSSL ABI check (logs every file and function)
	cd $(DEVICE_DIR) && cmake -S . -B $(DEVICE_ARM_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release \
		-DCMAKE_TOOLCHAIN_FILE=cmake/arm-sdk-flags.cmake -DDEVICE_ARM_CHECK=ON $(DEVICE_CMAKE_ARGS)
	@echo "device-arm-check: compiling for ARM Cortex-A7 with the Azure Sphere SDK's flags (-std=c11 -D_POSIX_C_SOURCE -Wconversion -Werror=implicit-function-declaration ...) and -Werror on our code:"
	cd $(DEVICE_DIR) && cmake --build $(DEVICE_ARM_BUILD) --clean-first
	@cd $(DEVICE_DIR)/$(DEVICE_ARM_BUILD) && if ! grep -q '^SDK libraries reachable' sdk_libraries_status.txt; then \
		echo "device-arm-check: not compiled for ARM (they include the SDK libraries): src/mqtt_connection.c src/telemetry.c src/shadow_sync.c src/s3_url_request.c src/s3_transfer.c src/s3_demo.c src/main.c"; \
		cat sdk_libraries_status.txt; fi
	cd $(DEVICE_DIR) && python3 tests/scripts/wolfssl_abi_check.py --nm arm-linux-gnueabihf-nm \
		--include $(DEVICE_WOLFSSL_INCLUDE) $(addprefix --forbid ,$(DEVICE_FORBIDDEN_WOLFSSL)) \
		$$(find $(DEVICE_ARM_BUILD) -name '*.o' | sort)

test-device: device-host device-arm-check ## device tests (ctest, host) and the ARM/ABI check; prints the SKIPPED line for SDK-dependent parts
	cd $(DEVICE_DIR) && ctest --preset host
	@cat $(DEVICE_DIR)/build/host/sdk_libraries_status.txt

# Sizes come from the ARM build (SDK flags, Release -Os, thumb), stack frames from its -fstack-usage files,
# the peak heap from a full host run of the app (connect, shadow, telemetry, S3) under a counting allocator.
device-size: device-host device-arm-check ## ARM text/data/bss per part, peak heap of a full host run, largest stack frames
	@cd $(DEVICE_DIR)/$(DEVICE_ARM_BUILD) && \
	row() { n="$$1"; shift; if [ "$$#" -eq 0 ]; then printf "%-28s %s\n" "$$n" "not built (SDK libraries unreachable)"; return; fi; \
		arm-linux-gnueabihf-size -t "$$@" | awk -v n="$$n" 'END { printf "%-28s %8d %8d %8d %8d\n", n, $$1, $$2, $$3, $$1+$$2+$$3 }'; }; \
	lib() { [ -f "$$1" ] && echo "$$1" || true; }; \
	printf "%-28s %8s %8s %8s %8s\n" "ARM Cortex-A7, SDK flags -Os" text data bss total; \
	row "sphere-jitr: core + platform" libsj_core.a; \
	row "sphere-jitr: app modules" $$(lib libsj_app.a) $$(find . -path '*sj_main.dir*' -name '*.o'); \
	row "coreMQTT v2.3.1" $$(lib libsdk_coremqtt.a); \
	row "coreHTTP v3.1.1 + llhttp" $$(lib libsdk_corehttp.a); \
	row "coreJSON v3.3.1" $$(lib libsdk_corejson.a); \
	row "Device Shadow v1.4.2" $$(lib libsdk_shadow.a); \
	row "backoffAlgorithm v1.4.1" $$(lib libsdk_backoff.a); \
	echo "(wolfSSL, libc and applibs are in the OS, not in the image)"; \
	echo "largest stack frames (ARM, -fstack-usage, bytes):"; \
	find . -name '*.su' -exec cat {} + | awk -F'\t' '{ n = split($$1, p, "/"); printf "  %6d %-8s %s\n", $$2, $$3, p[n] }' | sort -rn | awk 'NR <= 12'
	@cd $(DEVICE_DIR)/build/host && if ! grep -q '^SDK libraries reachable' sdk_libraries_status.txt; then \
		echo "peak heap: not measured: the host app needs the SDK libraries"; cat sdk_libraries_status.txt; exit 0; fi; \
	ctest -R '^device_pki$$' --output-on-failure -Q && \
	report=$$(mktemp) && rm -f "$$report" && \
	SJ_HEAP_REPORT="$$report" LD_PRELOAD="$$PWD/tests/libheap_peak.so" tests/test_app_broker tests/pki "$$PWD/sphere_jitr" > tests/heap_run.log 2>&1 || \
		{ echo "peak heap: the host run failed (see device/build/host/tests/heap_run.log)"; exit 1; }; \
	grep '^sphere_jitr ' "$$report" | sed 's/^sphere_jitr /peak heap of a full host run (JITR reconnect, shadow get+report, 2 telemetry, S3 PUT+GET via runtime URLs with MQTT up): /'; \
	rm -f "$$report"
