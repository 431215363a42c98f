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

/** @brief coreMQTT network buffer: the largest packet sent or received (a shadow document, an S3 URL reply). */
#ifndef MQTT_NETWORK_BUFFER_SIZE
#define MQTT_NETWORK_BUFFER_SIZE 3072U
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

/** @brief coreHTTP request headers plus response headers and body chunk (the request line holds a whole URL). */
#ifndef HTTP_USER_BUFFER_SIZE
#define HTTP_USER_BUFFER_SIZE 3072U
#endif

/** @brief Bytes fetched per ranged S3 GET. */
#ifndef S3_RANGE_CHUNK_SIZE
#define S3_RANGE_CHUNK_SIZE 512U
#endif

/** @brief Host name buffer parsed out of a presigned URL. */
#ifndef URL_HOST_SIZE
#define URL_HOST_SIZE 128U
#endif

/**
 * @brief Longest presigned URL the device takes from the presign function, without its NUL. A URL signed with the
 *        function's temporary credentials carries X-Amz-Security-Token (about a kilobyte), so 2 KiB leaves room.
 */
#ifndef S3_URL_MAX_LENGTH
#define S3_URL_MAX_LENGTH 2048U
#endif

/** @brief Longest object key kept from a reply ("devices/<thing>/<name>": 8 + 128 + 1 + 200), without its NUL. */
#ifndef S3_URL_KEY_MAX_LENGTH
#define S3_URL_KEY_MAX_LENGTH 340U
#endif

/** @brief Longest object name a device asks for (the presign function's limit), without its NUL. */
#ifndef S3_URL_NAME_MAX_LENGTH
#define S3_URL_NAME_MAX_LENGTH 200U
#endif

/** @brief Rejection reason kept for the log (longer ones are cut). */
#ifndef S3_URL_REASON_SIZE
#define S3_URL_REASON_SIZE 128U
#endif

/** @brief A URL request payload: {"operation":"PUT","name":<name>,"contentLength":<n>,"clientToken":<token>}. */
#ifndef S3_URL_REQUEST_SIZE
#define S3_URL_REQUEST_SIZE (S3_URL_NAME_MAX_LENGTH + 128U)
#endif

/* Everything a reply carries must fit the MQTT buffer: its topic, the URL (JSON may escape '&' as six bytes
 * \u0026; a presigned URL has about ten), the key, the reason and the other fields. */
_Static_assert(MQTT_NETWORK_BUFFER_SIZE >= TOPIC_BUFFER_SIZE + S3_URL_MAX_LENGTH + 16U * 5U + S3_URL_KEY_MAX_LENGTH + 256U,
               "MQTT_NETWORK_BUFFER_SIZE cannot hold an S3 URL reply of S3_URL_MAX_LENGTH");
/* coreHTTP writes the request line (method, whole URL path and query), Host and Range into the user buffer. */
_Static_assert(HTTP_USER_BUFFER_SIZE >= S3_URL_MAX_LENGTH + URL_HOST_SIZE + 256U,
               "HTTP_USER_BUFFER_SIZE cannot hold a request for a URL of S3_URL_MAX_LENGTH");
_Static_assert(S3_URL_KEY_MAX_LENGTH >= 8U + DEVICE_ID_LENGTH + 1U + S3_URL_NAME_MAX_LENGTH,
               "S3_URL_KEY_MAX_LENGTH cannot hold devices/<thing>/<name>");

#endif /* BUFFER_CONFIG_H */
