/*
 * Values for the host build and the ARM check, whatever `make device-config` generated (it writes the image's
 * one into DEVICE_CONFIG_DIR). The host app takes its broker from --endpoint/--port; these only satisfy the
 * guards in src/app_config.h and point the fleet file download at a local address (--s3-fleet-url overrides it).
 */
#ifndef DEVICE_CONFIG_H
#define DEVICE_CONFIG_H

#define AWS_IOT_ENDPOINT "localhost"
#define AWS_IOT_PORT 8883
#define DEVICE_TOPIC_ROOT "devices"
#define S3_FLEET_GET_URL "https://localhost:8443/demo-bucket/fleet/notice.txt"

#endif /* DEVICE_CONFIG_H */
