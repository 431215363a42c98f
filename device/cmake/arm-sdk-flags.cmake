# Toolchain for the ARM SDK-flags check (`make device-arm-check`) and the size report (`make device-size`):
# Debian's gcc-arm-linux-gnueabihf with its armhf libc headers stands in for the Azure Sphere SDK's
# arm-poky-linux-musleabi-gcc, with the compile flags the SDK's AzureSphereToolchain.cmake gives a
# high-level app (MT3620, SDK 24.03; device/README.md says where they were read). Only compiling is checked:
# there is no Azure Sphere sysroot to link against here.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR arm)
set(CMAKE_C_COMPILER arm-linux-gnueabihf-gcc)
set(CMAKE_AR arm-linux-gnueabihf-ar)
set(CMAKE_RANLIB arm-linux-gnueabihf-ranlib)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)

# The SDK's target flags (CMAKE_C_FLAGS_INIT, less -B and --sysroot, which name SDK folders).
set(CMAKE_C_FLAGS_INIT "-march=armv7ve -mthumb -mfpu=neon-vfpv4 -mfloat-abi=hard -mcpu=cortex-a7")
# The SDK's Release configuration adds -g1 -Os (its Debug one -ggdb -O0) after CMake's own defaults, as here.

# The SDK's compile definitions and options, as it adds them for every target of a high-level app.
add_definitions(-D_POSIX_C_SOURCE)
add_compile_options(
    $<$<CONFIG:Debug>:-ggdb> $<$<CONFIG:Debug>:-O0>
    $<$<CONFIG:Release>:-g1> $<$<CONFIG:Release>:-Os>
    $<$<COMPILE_LANGUAGE:C>:-std=c11> $<$<COMPILE_LANGUAGE:C>:-Wstrict-prototypes> $<$<COMPILE_LANGUAGE:C>:-Wno-pointer-sign>
    -fPIC -ffunction-sections -fdata-sections -fno-strict-aliasing -fno-omit-frame-pointer -fno-exceptions -Wall
    -Wswitch -Wempty-body -Wconversion -Wreturn-type -Wparentheses -Wno-format -Wuninitialized -Wunreachable-code
    -Wunused-function -Wunused-value -Wunused-variable -Werror=implicit-function-declaration -fstack-protector-strong)
