/*
 * Every static buffer of the app, sized in one place. The MT3620 high-level core has 256 KiB of RAM for the
 * app (wolfSSL's own state included), so buffers are caller-owned statics and protocol code never mallocs.
 */
#ifndef BUFFER_CONFIG_H
#define BUFFER_CONFIG_H

/** @brief An Azure Sphere device ID: 64 bytes as hex. */
#define DEVICE_ID_LENGTH 128U

/** @brief Topic buffer: "$aws/things/<128>/shadow/update/accepted" is the longest topic (≈170). */
#ifndef TOPIC_BUFFER_SIZE
#define TOPIC_BUFFER_SIZE 200U
#endif

/** @brief coreMQTT network buffer: the largest packet sent or received (a shadow document fits). */
#ifndef MQTT_NETWORK_BUFFER_SIZE
#define MQTT_NETWORK_BUFFER_SIZE 2048U
#endif

/** @brief Outgoing QoS 1 publishes tracked for acknowledgement. */
#ifndef MQTT_OUTGOING_PUBLISH_RECORDS
#define MQTT_OUTGOING_PUBLISH_RECORDS 4U
#endif

/** @brief Incoming QoS 1 publishes tracked. */
#ifndef MQTT_INCOMING_PUBLISH_RECORDS
#define MQTT_INCOMING_PUBLISH_RECORDS 4U
#endif

/** @brief A JSON payload we build (telemetry, shadow report). */
#ifndef JSON_PAYLOAD_SIZE
#define JSON_PAYLOAD_SIZE 512U
#endif

/** @brief coreHTTP request headers plus response headers and body chunk. */
#ifndef HTTP_USER_BUFFER_SIZE
#define HTTP_USER_BUFFER_SIZE 2048U
#endif

/** @brief Bytes fetched per ranged S3 GET. */
#ifndef S3_RANGE_CHUNK_SIZE
#define S3_RANGE_CHUNK_SIZE 512U
#endif

/** @brief Host name buffer parsed out of a presigned URL. */
#ifndef URL_HOST_SIZE
#define URL_HOST_SIZE 128U
#endif

#endif /* BUFFER_CONFIG_H */
