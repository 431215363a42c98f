# The AWS IoT Device SDK for Embedded C libraries, fetched with FetchContent at pinned tags and built as our
# own static targets from each repository's *FilePaths.cmake. Never vendored.
#
# Offline machines point FetchContent at local copies (checked out at the same tags):
#   -DFETCHCONTENT_SOURCE_DIR_COREMQTT=...          coreMQTT v2.3.1
#   -DFETCHCONTENT_SOURCE_DIR_COREHTTP=...          coreHTTP v3.1.1
#   -DFETCHCONTENT_SOURCE_DIR_LLHTTP=...            llhttp release/v6.1.1 (generated C sources)
#   -DFETCHCONTENT_SOURCE_DIR_COREJSON=...          coreJSON v3.3.1
#   -DFETCHCONTENT_SOURCE_DIR_DEVICESHADOW=...      Device Shadow v1.4.2
#   -DFETCHCONTENT_SOURCE_DIR_BACKOFFALGORITHM=...  backoffAlgorithm v1.4.1
#
# Reachability is decided before anything is fetched, so a machine without internet never hangs:
# the libraries are reachable when every FETCHCONTENT_SOURCE_DIR_* above is set, or (DEVICE_SDK_FETCH ON)
# when a `git ls-remote` of the first repository answers within DEVICE_SDK_PROBE_TIMEOUT seconds.
# Result: SDK_LIBRARIES_REACHABLE (BOOL) and SDK_LIBRARIES_SKIP_REASON (text).

include(FetchContent)

option(DEVICE_SDK_FETCH "Fetch the SDK libraries from GitHub when no local copies are given" ON)
set(DEVICE_SDK_PROBE_TIMEOUT 15 CACHE STRING "Seconds the reachability probe of GitHub may take")

# name;repository;tag
set(_sdk_libraries
    "COREMQTT|https://github.com/FreeRTOS/coreMQTT.git|v2.3.1"
    "COREHTTP|https://github.com/FreeRTOS/coreHTTP.git|v3.1.1"
    "LLHTTP|https://github.com/nodejs/llhttp.git|release/v6.1.1"
    "COREJSON|https://github.com/FreeRTOS/coreJSON.git|v3.3.1"
    "DEVICESHADOW|https://github.com/FreeRTOS/Device-Shadow-for-AWS-IoT-embedded-sdk.git|v1.4.2"
    "BACKOFFALGORITHM|https://github.com/FreeRTOS/backoffAlgorithm.git|v1.4.1")

set(SDK_LIBRARIES_ENABLE_HINT
    "pass -DFETCHCONTENT_SOURCE_DIR_<COREMQTT|COREHTTP|LLHTTP|COREJSON|DEVICESHADOW|BACKOFFALGORITHM>=<local checkout> for all six (see device/README.md), or build where GitHub is reachable")

set(_missing_local "")
foreach(_entry IN LISTS _sdk_libraries)
    string(REPLACE "|" ";" _parts "${_entry}")
    list(GET _parts 0 _name)
    if(NOT FETCHCONTENT_SOURCE_DIR_${_name})
        list(APPEND _missing_local "${_name}")
    elseif(NOT EXISTS "${FETCHCONTENT_SOURCE_DIR_${_name}}")
        message(FATAL_ERROR "FETCHCONTENT_SOURCE_DIR_${_name}=${FETCHCONTENT_SOURCE_DIR_${_name}} does not exist")
    endif()
endforeach()

set(SDK_LIBRARIES_REACHABLE OFF)
set(SDK_LIBRARIES_SKIP_REASON "")
if(_missing_local STREQUAL "")
    set(SDK_LIBRARIES_REACHABLE ON)
    message(STATUS "SDK libraries: local copies from FETCHCONTENT_SOURCE_DIR_*")
elseif(NOT DEVICE_SDK_FETCH)
    string(REPLACE ";" ", " _missing_text "${_missing_local}")
    set(SDK_LIBRARIES_SKIP_REASON "DEVICE_SDK_FETCH is OFF and no local copy for ${_missing_text}")
elseif(FETCHCONTENT_FULLY_DISCONNECTED)
    set(SDK_LIBRARIES_SKIP_REASON "FETCHCONTENT_FULLY_DISCONNECTED is ON and not every local copy is given")
else()
    find_package(Git QUIET)
    if(NOT GIT_FOUND)
        set(SDK_LIBRARIES_SKIP_REASON "git is not installed, so the libraries cannot be fetched")
    else()
        list(GET _sdk_libraries 0 _probe_entry)
        string(REPLACE "|" ";" _probe_parts "${_probe_entry}")
        list(GET _probe_parts 1 _probe_repo)
        list(GET _probe_parts 2 _probe_tag)
        execute_process(
            COMMAND ${CMAKE_COMMAND} -E env GIT_TERMINAL_PROMPT=0
                    "${GIT_EXECUTABLE}" ls-remote --exit-code "${_probe_repo}" "refs/tags/${_probe_tag}"
            RESULT_VARIABLE _probe_result
            OUTPUT_QUIET ERROR_QUIET
            TIMEOUT ${DEVICE_SDK_PROBE_TIMEOUT})
        if(_probe_result EQUAL 0)
            set(SDK_LIBRARIES_REACHABLE ON)
            message(STATUS "SDK libraries: GitHub is reachable, fetching pinned tags")
        else()
            set(SDK_LIBRARIES_SKIP_REASON "GitHub is not reachable (git ls-remote within ${DEVICE_SDK_PROBE_TIMEOUT} s: ${_probe_result}) and not every local copy is given")
        endif()
    endif()
endif()

if(NOT SDK_LIBRARIES_REACHABLE)
    message(STATUS "SDK libraries unreachable: ${SDK_LIBRARIES_SKIP_REASON}; to enable: ${SDK_LIBRARIES_ENABLE_HINT}")
    return()
endif()

foreach(_entry IN LISTS _sdk_libraries)
    string(REPLACE "|" ";" _parts "${_entry}")
    list(GET _parts 0 _name)
    list(GET _parts 1 _repo)
    list(GET _parts 2 _tag)
    string(TOLOWER "${_name}" _lower)
    # SOURCE_SUBDIR names a folder without CMakeLists.txt: MakeAvailable only populates, we build the targets.
    FetchContent_Declare(${_lower}
        GIT_REPOSITORY "${_repo}"
        GIT_TAG "${_tag}"
        GIT_SHALLOW TRUE
        GIT_SUBMODULES ""
        SOURCE_SUBDIR "populate-only")
endforeach()
FetchContent_MakeAvailable(coremqtt corehttp llhttp corejson deviceshadow backoffalgorithm)

# Our config headers (core_mqtt_config.h, ...) and the platform log they map to.
set(_sdk_config_dirs "${CMAKE_CURRENT_SOURCE_DIR}/src" "${CMAKE_CURRENT_SOURCE_DIR}/platform")

function(_sdk_library target)
    cmake_parse_arguments(PARSE_ARGV 1 ARG "" "" "SOURCES;INCLUDES;LINK")
    add_library(${target} STATIC ${ARG_SOURCES})
    # SYSTEM: their headers do not trip our -Werror; the libraries themselves build with their own flags.
    target_include_directories(${target} SYSTEM PUBLIC ${ARG_INCLUDES})
    target_include_directories(${target} PRIVATE ${_sdk_config_dirs})
    target_link_libraries(${target} PUBLIC ${ARG_LINK} sj_core)
endfunction()

include("${coremqtt_SOURCE_DIR}/mqttFilePaths.cmake")
_sdk_library(sdk_coremqtt SOURCES ${MQTT_SOURCES} ${MQTT_SERIALIZER_SOURCES} INCLUDES ${MQTT_INCLUDE_PUBLIC_DIRS})

# coreHTTP expects llhttp as a git submodule; we fetch llhttp ourselves and swap its paths in.
include("${corehttp_SOURCE_DIR}/httpFilePaths.cmake")
list(FILTER HTTP_SOURCES EXCLUDE REGEX "3rdparty/llhttp")
list(FILTER HTTP_INCLUDE_PUBLIC_DIRS EXCLUDE REGEX "3rdparty/llhttp")
_sdk_library(sdk_corehttp
    SOURCES ${HTTP_SOURCES} "${llhttp_SOURCE_DIR}/src/api.c" "${llhttp_SOURCE_DIR}/src/http.c"
            "${llhttp_SOURCE_DIR}/src/llhttp.c"
    INCLUDES ${HTTP_INCLUDE_PUBLIC_DIRS} "${llhttp_SOURCE_DIR}/include")

include("${corejson_SOURCE_DIR}/jsonFilePaths.cmake")
_sdk_library(sdk_corejson SOURCES ${JSON_SOURCES} INCLUDES ${JSON_INCLUDE_PUBLIC_DIRS})

include("${deviceshadow_SOURCE_DIR}/shadowFilePaths.cmake")
_sdk_library(sdk_shadow SOURCES ${SHADOW_SOURCES} INCLUDES ${SHADOW_INCLUDE_PUBLIC_DIRS})

include("${backoffalgorithm_SOURCE_DIR}/backoffAlgorithmFilePaths.cmake")
_sdk_library(sdk_backoff SOURCES ${BACKOFF_ALGORITHM_SOURCES} INCLUDES ${BACKOFF_ALGORITHM_INCLUDE_PUBLIC_DIRS})

set(SDK_LIBRARY_TARGETS sdk_coremqtt sdk_corehttp sdk_corejson sdk_shadow sdk_backoff)
