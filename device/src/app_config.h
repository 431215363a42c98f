/*
 * The values `make device-config` / `make device-image` generate into DEVICE_CONFIG_DIR/device_config.h
 * (never edited by hand, never committed). Every required value has a guard here, so a missing value fails
 * the build with a message that says how to fix it, instead of failing on the device.
 */
#ifndef APP_CONFIG_H
#define APP_CONFIG_H

#include "device_config.h"

#ifndef AWS_IOT_ENDPOINT
#error "AWS_IOT_ENDPOINT (the AWS IoT data endpoint host name) is not defined: run `make device-config`"
#endif

#ifndef AWS_IOT_PORT
#error "AWS_IOT_PORT (8883, or 443 with ALPN) is not defined: run `make device-config`"
#elif (AWS_IOT_PORT != 8883) && (AWS_IOT_PORT != 443)
#error "AWS_IOT_PORT must be 8883 or 443: run `make device-config`"
#endif

#ifndef DEVICE_TOPIC_ROOT
#error "DEVICE_TOPIC_ROOT (the root of the device topic tree, \"devices\") is not defined: run `make device-config`"
#endif

#ifndef S3_FLEET_GET_URL
#error "S3_FLEET_GET_URL (presigned GET URL of the fleet-wide file, read-only) is not defined: run `make device-config`"
#endif

/* The image carries no URL that writes: a device uploads only with the short-lived URLs it asks for over MQTT. */
#if defined(S3_PRESIGNED_PUT_URL) || defined(S3_PRESIGNED_GET_URL)
#error "S3_PRESIGNED_PUT_URL / S3_PRESIGNED_GET_URL are gone (one URL for the whole fleet): the device asks for its own URLs over MQTT; run `make device-config` again"
#endif

/* String literals only: concatenation below proves it at compile time. */
static const char appConfigEndpoint[] = "" AWS_IOT_ENDPOINT;
static const char appConfigTopicRoot[] = "" DEVICE_TOPIC_ROOT;
static const char appConfigFleetGetUrl[] = "" S3_FLEET_GET_URL;

_Static_assert(sizeof(appConfigEndpoint) > 1U, "AWS_IOT_ENDPOINT is empty: run `make device-config`");
_Static_assert(sizeof(appConfigTopicRoot) > 1U, "DEVICE_TOPIC_ROOT is empty: run `make device-config`");
_Static_assert(sizeof(appConfigFleetGetUrl) > 1U, "S3_FLEET_GET_URL is empty: run `make device-config`");

#endif /* APP_CONFIG_H */
