/*
 * Telemetry on the device's own topic tree: publish on `<root>/<thingName>/telemetry`, receive commands on
 * `<root>/<thingName>/commands` (the only topics besides its shadow the IoT policy allows the thing).
 */
#ifndef TELEMETRY_H
#define TELEMETRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buffer_config.h"
#include "core_mqtt.h"

/** @brief Longest command payload kept for the event loop. */
#ifndef TELEMETRY_COMMAND_SIZE
#define TELEMETRY_COMMAND_SIZE 128U
#endif

/** @brief Result of a telemetry call. */
typedef enum TelemetryStatus {
    TELEMETRY_SUCCESS = 0,
    TELEMETRY_BAD_PARAMETER,
    TELEMETRY_MQTT_FAILURE
} TelemetryStatus_t;

/** @brief Telemetry state; caller-owned. */
typedef struct Telemetry {
    char publishTopic[TOPIC_BUFFER_SIZE];
    uint16_t publishTopicLength;
    char commandTopic[TOPIC_BUFFER_SIZE];
    uint16_t commandTopicLength;
    uint32_t sequence;
    uint16_t lastPacketId;                    /**< Packet id of the last telemetry publish. */
    bool lastAcknowledged;                    /**< Its PUBACK arrived (set by the callback). */
    bool commandPending;                      /**< Set by the MQTT callback, cleared by the event loop. */
    char command[TELEMETRY_COMMAND_SIZE];     /**< NUL-terminated copy of the last command. */
} Telemetry_t;

/**
 * @brief Build the topics for a thing.
 * @return TELEMETRY_SUCCESS or TELEMETRY_BAD_PARAMETER (bad root or thing name, topic too long).
 */
TelemetryStatus_t Telemetry_Init(Telemetry_t *telemetry, const char *topicRoot, const char *thingName);

/** @brief Subscribe (QoS 1) to the command topic. */
TelemetryStatus_t Telemetry_Subscribe(Telemetry_t *telemetry, MQTTContext_t *mqtt);

/**
 * @brief Publish one telemetry message (QoS 1): sequence number and uptime.
 * @return TELEMETRY_SUCCESS or TELEMETRY_MQTT_FAILURE.
 */
TelemetryStatus_t Telemetry_Publish(Telemetry_t *telemetry, MQTTContext_t *mqtt, uint32_t uptimeMs);

/**
 * @brief From the MQTT callback: note a PUBACK of the last telemetry publish.
 * @return true when it acknowledged the last telemetry message.
 */
bool Telemetry_HandlePubAck(Telemetry_t *telemetry, uint16_t packetId);

/**
 * @brief From the MQTT callback: keep a command for the event loop. Only copies and sets a flag.
 * @return true when the publish was on the command topic.
 */
bool Telemetry_HandlePublish(Telemetry_t *telemetry, const MQTTPublishInfo_t *publish);

/**
 * @brief From the event loop: take the command the callback kept, once.
 * @return The command (NUL-terminated, valid until the next publish is handled), or NULL when none is pending.
 */
const char *Telemetry_TakeCommand(Telemetry_t *telemetry);

/** @brief Whether the broker acknowledged the last telemetry message. */
bool Telemetry_LastAcknowledged(const Telemetry_t *telemetry);

#endif /* TELEMETRY_H */
