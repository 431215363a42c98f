/* Telemetry on the device topic tree: see telemetry.h. */
#include "telemetry.h"

#include <stdio.h>
#include <string.h>

#include "platform.h"
#include "topics.h"

TelemetryStatus_t Telemetry_Init(Telemetry_t *telemetry, const char *topicRoot, const char *thingName)
{
    if (telemetry == NULL) {
        return TELEMETRY_BAD_PARAMETER;
    }
    memset(telemetry, 0, sizeof(*telemetry));
    if (Topics_Build(telemetry->publishTopic, sizeof(telemetry->publishTopic), topicRoot, thingName,
                     TOPIC_LEAF_TELEMETRY, &telemetry->publishTopicLength) != TOPICS_SUCCESS ||
        Topics_Build(telemetry->commandTopic, sizeof(telemetry->commandTopic), topicRoot, thingName,
                     TOPIC_LEAF_COMMANDS, &telemetry->commandTopicLength) != TOPICS_SUCCESS) {
        return TELEMETRY_BAD_PARAMETER;
    }
    return TELEMETRY_SUCCESS;
}

TelemetryStatus_t Telemetry_Subscribe(Telemetry_t *telemetry, MQTTContext_t *mqtt)
{
    if (telemetry == NULL || mqtt == NULL) {
        return TELEMETRY_BAD_PARAMETER;
    }
    MQTTSubscribeInfo_t subscription = {
        .qos = MQTTQoS1, .pTopicFilter = telemetry->commandTopic, .topicFilterLength = telemetry->commandTopicLength};
    MQTTStatus_t status = MQTT_Subscribe(mqtt, &subscription, 1, MQTT_GetPacketId(mqtt));
    if (status != MQTTSuccess) {
        Platform_Log(PLATFORM_LOG_ERROR, "subscribe %s: %s", telemetry->commandTopic, MQTT_Status_strerror(status));
        return TELEMETRY_MQTT_FAILURE;
    }
    return TELEMETRY_SUCCESS;
}

TelemetryStatus_t Telemetry_Publish(Telemetry_t *telemetry, MQTTContext_t *mqtt, uint32_t uptimeMs)
{
    static char payload[JSON_PAYLOAD_SIZE];
    if (telemetry == NULL || mqtt == NULL) {
        return TELEMETRY_BAD_PARAMETER;
    }
    telemetry->sequence++;
    int length = snprintf(payload, sizeof(payload), "{\"sequence\":%lu,\"uptimeMs\":%lu}",
                          (unsigned long)telemetry->sequence, (unsigned long)uptimeMs);
    if (length < 0 || (size_t)length >= sizeof(payload)) {
        return TELEMETRY_BAD_PARAMETER;
    }
    MQTTPublishInfo_t publish = {
        .qos = MQTTQoS1,
        .pTopicName = telemetry->publishTopic,
        .topicNameLength = telemetry->publishTopicLength,
        .pPayload = payload,
        .payloadLength = (size_t)length,
    };
    uint16_t packetId = MQTT_GetPacketId(mqtt);
    telemetry->lastPacketId = packetId;
    telemetry->lastAcknowledged = false;
    MQTTStatus_t status = MQTT_Publish(mqtt, &publish, packetId);
    if (status != MQTTSuccess) {
        Platform_Log(PLATFORM_LOG_ERROR, "publish %s: %s", telemetry->publishTopic, MQTT_Status_strerror(status));
        return TELEMETRY_MQTT_FAILURE;
    }
    Platform_Log(PLATFORM_LOG_INFO, "published telemetry #%lu on %.*s", (unsigned long)telemetry->sequence,
                 (int)telemetry->publishTopicLength, telemetry->publishTopic);
    return TELEMETRY_SUCCESS;
}

bool Telemetry_HandlePubAck(Telemetry_t *telemetry, uint16_t packetId)
{
    if (telemetry == NULL || packetId == 0U || packetId != telemetry->lastPacketId) {
        return false;
    }
    telemetry->lastAcknowledged = true;
    return true;
}

bool Telemetry_HandlePublish(Telemetry_t *telemetry, const MQTTPublishInfo_t *publish)
{
    if (telemetry == NULL || publish == NULL || publish->topicNameLength != telemetry->commandTopicLength ||
        memcmp(publish->pTopicName, telemetry->commandTopic, publish->topicNameLength) != 0) {
        return false;
    }
    size_t length = publish->payloadLength;
    if (length >= sizeof(telemetry->command)) {
        length = sizeof(telemetry->command) - 1U;
    }
    memcpy(telemetry->command, publish->pPayload, length);
    telemetry->command[length] = '\0';
    telemetry->commandPending = true;
    return true;
}

const char *Telemetry_TakeCommand(Telemetry_t *telemetry)
{
    if (telemetry == NULL || !telemetry->commandPending) {
        return NULL;
    }
    telemetry->commandPending = false;
    return telemetry->command;
}

bool Telemetry_LastAcknowledged(const Telemetry_t *telemetry)
{
    return (telemetry != NULL) && telemetry->lastAcknowledged;
}
