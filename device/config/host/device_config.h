/*
 * Values for the host build when no generated device_config.h exists (`make device-config` writes the real
 * one into DEVICE_CONFIG_DIR). The host app takes its broker from --endpoint/--port; these only satisfy the
 * guards in src/app_config.h and point the S3 step at a local address.
 */
#ifndef DEVICE_CONFIG_H
#define DEVICE_CONFIG_H

#define AWS_IOT_ENDPOINT "localhost"
#define AWS_IOT_PORT 8883
#define DEVICE_TOPIC_ROOT "devices"
#define S3_PRESIGNED_PUT_URL "https://localhost:8443/demo-bucket/device-upload.txt"
#define S3_PRESIGNED_GET_URL "https://localhost:8443/demo-bucket/device-upload.txt"

#endif /* DEVICE_CONFIG_H */
