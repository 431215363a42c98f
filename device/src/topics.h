/*
 * The device's own MQTT topic tree. The stack's IoT policy lets a thing publish, subscribe and receive only
 * on `<root>/<thingName>/...` and its own shadow topics, so every topic is built from the thing name.
 */
#ifndef TOPICS_H
#define TOPICS_H

#include <stddef.h>
#include <stdint.h>

/** @brief Leaf the device publishes telemetry on. */
#define TOPIC_LEAF_TELEMETRY "telemetry"
/** @brief Leaf the device receives commands on. */
#define TOPIC_LEAF_COMMANDS "commands"

/** @brief Result of building a topic. */
typedef enum TopicsStatus {
    TOPICS_SUCCESS = 0,
    TOPICS_BAD_PARAMETER,     /**< NULL or empty part, or a part holding '/', '+', '#'. */
    TOPICS_BUFFER_TOO_SMALL   /**< The topic does not fit. */
} TopicsStatus_t;

/**
 * @brief Build "<root>/<thingName>/<leaf>".
 * @param[out] buffer Output, NUL-terminated on success.
 * @param[in] bufferSize Size of buffer.
 * @param[in] root Topic root (DEVICE_TOPIC_ROOT).
 * @param[in] thingName Thing name.
 * @param[in] leaf Leaf (TOPIC_LEAF_TELEMETRY, TOPIC_LEAF_COMMANDS).
 * @param[out] length Topic length without the NUL; may be NULL.
 * @return TOPICS_SUCCESS or why not.
 */
TopicsStatus_t Topics_Build(char *buffer, size_t bufferSize, const char *root, const char *thingName,
                            const char *leaf, uint16_t *length);

#endif /* TOPICS_H */
