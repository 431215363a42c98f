/* Device Shadow sync: see shadow_sync.h. */
#include "shadow_sync.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core_json.h"
#include "platform.h"
#include "shadow.h"

static const ShadowTopicStringType_t topicTypes[SHADOW_SYNC_TOPIC_COUNT] = {
    ShadowTopicStringTypeUpdate,         ShadowTopicStringTypeUpdateDelta, ShadowTopicStringTypeUpdateAccepted,
    ShadowTopicStringTypeUpdateRejected, ShadowTopicStringTypeGet,         ShadowTopicStringTypeGetAccepted,
    ShadowTopicStringTypeGetRejected};

/** @brief Topics subscribed to: everything but the two the device publishes on (update, get). */
static const ShadowSyncTopic_t subscribedTopics[] = {SHADOW_SYNC_TOPIC_UPDATE_DELTA, SHADOW_SYNC_TOPIC_UPDATE_ACCEPTED,
                                                     SHADOW_SYNC_TOPIC_UPDATE_REJECTED, SHADOW_SYNC_TOPIC_GET_ACCEPTED,
                                                     SHADOW_SYNC_TOPIC_GET_REJECTED};
#define SUBSCRIPTION_COUNT (sizeof(subscribedTopics) / sizeof(subscribedTopics[0]))

ShadowSyncStatus_t ShadowSync_Init(ShadowSync_t *shadow, const char *thingName, uint32_t telemetryIntervalSec)
{
    if (shadow == NULL || thingName == NULL) {
        return SHADOW_SYNC_BAD_PARAMETER;
    }
    size_t nameLength = strnlen(thingName, SHADOW_THINGNAME_LENGTH_MAX + 1U);
    if (nameLength == 0U || nameLength > SHADOW_THINGNAME_LENGTH_MAX || nameLength >= sizeof(shadow->thingName)) {
        return SHADOW_SYNC_BAD_PARAMETER;
    }
    memset(shadow, 0, sizeof(*shadow));
    memcpy(shadow->thingName, thingName, nameLength);
    shadow->thingNameLength = (uint8_t)nameLength;
    shadow->telemetryIntervalSec = telemetryIntervalSec;
    for (size_t i = 0; i < SHADOW_SYNC_TOPIC_COUNT; i++) {
        uint16_t length = 0;
        if (Shadow_AssembleTopicString(topicTypes[i], shadow->thingName, shadow->thingNameLength, SHADOW_NAME_CLASSIC,
                                       0U, shadow->topics[i], (uint16_t)(TOPIC_BUFFER_SIZE - 1U),
                                       &length) != SHADOW_SUCCESS) {
            return SHADOW_SYNC_BAD_PARAMETER;
        }
        shadow->topics[i][length] = '\0';
        shadow->topicLengths[i] = length;
    }
    return SHADOW_SYNC_SUCCESS;
}

const char *ShadowSync_Topic(const ShadowSync_t *shadow, ShadowSyncTopic_t topic)
{
    return (shadow != NULL && topic < SHADOW_SYNC_TOPIC_COUNT) ? shadow->topics[topic] : "";
}

ShadowSyncStatus_t ShadowSync_Subscribe(ShadowSync_t *shadow, MQTTContext_t *mqtt)
{
    MQTTSubscribeInfo_t subscriptions[SUBSCRIPTION_COUNT];
    if (shadow == NULL || mqtt == NULL) {
        return SHADOW_SYNC_BAD_PARAMETER;
    }
    for (size_t i = 0; i < SUBSCRIPTION_COUNT; i++) {
        subscriptions[i].qos = MQTTQoS1;
        subscriptions[i].pTopicFilter = shadow->topics[subscribedTopics[i]];
        subscriptions[i].topicFilterLength = shadow->topicLengths[subscribedTopics[i]];
    }
    MQTTStatus_t status = MQTT_Subscribe(mqtt, subscriptions, SUBSCRIPTION_COUNT, MQTT_GetPacketId(mqtt));
    if (status != MQTTSuccess) {
        Platform_Log(PLATFORM_LOG_ERROR, "subscribe to shadow topics: %s", MQTT_Status_strerror(status));
        return SHADOW_SYNC_MQTT_FAILURE;
    }
    return SHADOW_SYNC_SUCCESS;
}

ShadowSyncStatus_t ShadowSync_RequestGet(ShadowSync_t *shadow, MQTTContext_t *mqtt)
{
    static char payload[64];
    if (shadow == NULL || mqtt == NULL) {
        return SHADOW_SYNC_BAD_PARAMETER;
    }
    shadow->clientToken++;
    shadow->getAnswered = false;
    int length = snprintf(payload, sizeof(payload), "{\"clientToken\":\"%08lx\"}", (unsigned long)shadow->clientToken);
    MQTTPublishInfo_t publish = {
        .qos = MQTTQoS1,
        .pTopicName = shadow->topics[SHADOW_SYNC_TOPIC_GET],
        .topicNameLength = shadow->topicLengths[SHADOW_SYNC_TOPIC_GET],
        .pPayload = payload,
        .payloadLength = (size_t)length,
    };
    MQTTStatus_t status = MQTT_Publish(mqtt, &publish, MQTT_GetPacketId(mqtt));
    if (status != MQTTSuccess) {
        Platform_Log(PLATFORM_LOG_ERROR, "shadow get: %s", MQTT_Status_strerror(status));
        return SHADOW_SYNC_MQTT_FAILURE;
    }
    return SHADOW_SYNC_SUCCESS;
}

/* Parses a non-negative JSON integer that fits 32 bits. */
static bool ParseUint32(const char *text, size_t length, uint32_t *value)
{
    uint64_t result = 0;
    if (length == 0U || length > 10U) {
        return false;
    }
    for (size_t i = 0; i < length; i++) {
        if (text[i] < '0' || text[i] > '9') {
            return false;
        }
        result = result * 10U + (uint64_t)(text[i] - '0');
    }
    if (result > UINT32_MAX) {
        return false;
    }
    *value = (uint32_t)result;
    return true;
}

static bool SearchUint32(const char *document, size_t length, const char *query, uint32_t *value)
{
    const char *found = NULL;
    size_t foundLength = 0;
    JSONTypes_t type = JSONInvalid;
    return JSON_SearchConst(document, length, query, strlen(query), &found, &foundLength, &type) == JSONSuccess &&
           type == JSONNumber && ParseUint32(found, foundLength, value);
}

ShadowSyncStatus_t ShadowSync_ApplyDelta(ShadowSync_t *shadow, const char *document, size_t length)
{
    uint32_t version = 0;
    uint32_t interval = 0;
    if (shadow == NULL || document == NULL) {
        return SHADOW_SYNC_BAD_PARAMETER;
    }
    if (JSON_Validate(document, length) != JSONSuccess || !SearchUint32(document, length, "version", &version)) {
        Platform_Log(PLATFORM_LOG_WARN, "shadow delta without a valid version: ignored");
        return SHADOW_SYNC_INVALID_DOCUMENT;
    }
    /* Compared with the last desired state applied only: the delta caused by the device's own report carries
     * the version of that accepted report, and it is the one that must not be lost. */
    if (version <= shadow->desiredVersion) {
        Platform_Log(PLATFORM_LOG_INFO, "shadow delta version %lu not newer than %lu: ignored", (unsigned long)version,
                     (unsigned long)shadow->desiredVersion);
        return SHADOW_SYNC_STALE_VERSION;
    }
    if (!SearchUint32(document, length, "state.telemetryIntervalSec", &interval) || interval < SHADOW_INTERVAL_MIN_SEC ||
        interval > SHADOW_INTERVAL_MAX_SEC) {
        Platform_Log(PLATFORM_LOG_WARN, "shadow delta version %lu: telemetryIntervalSec missing or outside %u..%u",
                     (unsigned long)version, SHADOW_INTERVAL_MIN_SEC, SHADOW_INTERVAL_MAX_SEC);
        return SHADOW_SYNC_INVALID_DOCUMENT;
    }
    shadow->desiredVersion = version;
    shadow->telemetryIntervalSec = interval;
    shadow->reportPending = true;
    return SHADOW_SYNC_SUCCESS;
}

ShadowSyncStatus_t ShadowSync_ApplyGetAccepted(ShadowSync_t *shadow, const char *document, size_t length)
{
    uint32_t version = 0;
    uint32_t interval = 0;
    if (shadow == NULL || document == NULL) {
        return SHADOW_SYNC_BAD_PARAMETER;
    }
    shadow->getAnswered = true;
    shadow->reportPending = true; /* whatever happens below, report what the device runs with */
    if (JSON_Validate(document, length) != JSONSuccess || !SearchUint32(document, length, "version", &version)) {
        Platform_Log(PLATFORM_LOG_WARN, "shadow get/accepted without a valid version: ignored");
        return SHADOW_SYNC_INVALID_DOCUMENT;
    }
    if (version < shadow->desiredVersion) {
        return SHADOW_SYNC_STALE_VERSION;
    }
    bool found = SearchUint32(document, length, "state.delta.telemetryIntervalSec", &interval) ||
                 SearchUint32(document, length, "state.desired.telemetryIntervalSec", &interval);
    shadow->desiredVersion = version;
    if (!found) {
        return SHADOW_SYNC_SUCCESS; /* no desired value: keep ours */
    }
    if (interval < SHADOW_INTERVAL_MIN_SEC || interval > SHADOW_INTERVAL_MAX_SEC) {
        Platform_Log(PLATFORM_LOG_WARN, "shadow version %lu: desired telemetryIntervalSec %lu outside %u..%u: ignored",
                     (unsigned long)version, (unsigned long)interval, SHADOW_INTERVAL_MIN_SEC, SHADOW_INTERVAL_MAX_SEC);
        return SHADOW_SYNC_INVALID_DOCUMENT;
    }
    shadow->telemetryIntervalSec = interval;
    Platform_Log(PLATFORM_LOG_INFO, "shadow version %lu: desired telemetryIntervalSec=%lu applied", (unsigned long)version,
                 (unsigned long)interval);
    return SHADOW_SYNC_SUCCESS;
}

ShadowSyncStatus_t ShadowSync_HandlePublish(ShadowSync_t *shadow, const MQTTPublishInfo_t *publish)
{
    ShadowMessageType_t type;
    const char *thingName = NULL;
    uint8_t thingNameLength = 0;
    const char *shadowName = NULL;
    uint8_t shadowNameLength = 0;
    if (shadow == NULL || publish == NULL) {
        return SHADOW_SYNC_BAD_PARAMETER;
    }
    if (Shadow_MatchTopicString(publish->pTopicName, publish->topicNameLength, &type, &thingName, &thingNameLength,
                                &shadowName, &shadowNameLength) != SHADOW_SUCCESS ||
        thingNameLength != shadow->thingNameLength || memcmp(thingName, shadow->thingName, thingNameLength) != 0 ||
        shadowNameLength != 0U) {
        return SHADOW_SYNC_NOT_FOR_US;
    }
    const char *document = publish->pPayload;
    switch (type) {
    case ShadowMessageTypeUpdateDelta:
        return ShadowSync_ApplyDelta(shadow, document, publish->payloadLength);
    case ShadowMessageTypeUpdateAccepted: {
        uint32_t version = 0;
        if (SearchUint32(document, publish->payloadLength, "version", &version) && version > shadow->acceptedVersion) {
            shadow->acceptedVersion = version;
        }
        Platform_Log(PLATFORM_LOG_INFO, "shadow update accepted (version %lu)", (unsigned long)shadow->acceptedVersion);
        return SHADOW_SYNC_SUCCESS;
    }
    case ShadowMessageTypeUpdateRejected:
        Platform_Log(PLATFORM_LOG_ERROR, "shadow update rejected: %.*s", (int)publish->payloadLength, document);
        return SHADOW_SYNC_SUCCESS;
    case ShadowMessageTypeGetAccepted:
        return ShadowSync_ApplyGetAccepted(shadow, document, publish->payloadLength);
    case ShadowMessageTypeGetRejected:
        /* 404 before the first report: there is no shadow yet; the report creates it. */
        Platform_Log(PLATFORM_LOG_INFO, "shadow get rejected: %.*s", (int)publish->payloadLength, document);
        shadow->getAnswered = true;
        shadow->reportPending = true;
        return SHADOW_SYNC_SUCCESS;
    default:
        return SHADOW_SYNC_NOT_FOR_US;
    }
}

ShadowSyncStatus_t ShadowSync_Report(ShadowSync_t *shadow, MQTTContext_t *mqtt)
{
    static char payload[JSON_PAYLOAD_SIZE];
    if (shadow == NULL || mqtt == NULL) {
        return SHADOW_SYNC_BAD_PARAMETER;
    }
    shadow->clientToken++;
    int length = snprintf(payload, sizeof(payload),
                          "{\"state\":{\"reported\":{\"telemetryIntervalSec\":%lu}},\"clientToken\":\"%08lx\"}",
                          (unsigned long)shadow->telemetryIntervalSec, (unsigned long)shadow->clientToken);
    if (length < 0 || (size_t)length >= sizeof(payload)) {
        return SHADOW_SYNC_BAD_PARAMETER;
    }
    MQTTPublishInfo_t publish = {
        .qos = MQTTQoS1,
        .pTopicName = shadow->topics[SHADOW_SYNC_TOPIC_UPDATE],
        .topicNameLength = shadow->topicLengths[SHADOW_SYNC_TOPIC_UPDATE],
        .pPayload = payload,
        .payloadLength = (size_t)length,
    };
    MQTTStatus_t status = MQTT_Publish(mqtt, &publish, MQTT_GetPacketId(mqtt));
    if (status != MQTTSuccess) {
        Platform_Log(PLATFORM_LOG_ERROR, "shadow report: %s", MQTT_Status_strerror(status));
        return SHADOW_SYNC_MQTT_FAILURE;
    }
    shadow->reportPending = false;
    Platform_Log(PLATFORM_LOG_INFO, "shadow reported telemetryIntervalSec=%lu", (unsigned long)shadow->telemetryIntervalSec);
    return SHADOW_SYNC_SUCCESS;
}

bool ShadowSync_ReportPending(const ShadowSync_t *shadow)
{
    return (shadow != NULL) && shadow->reportPending;
}

uint32_t ShadowSync_TelemetryIntervalSec(const ShadowSync_t *shadow)
{
    return (shadow != NULL) ? shadow->telemetryIntervalSec : 0U;
}
