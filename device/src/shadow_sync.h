/*
 * Device Shadow sync for the device's classic shadow. On every connection the device asks for its shadow
 * (`get`) and applies the desired state, so a value set while it was offline is not lost; then it applies
 * `update/delta` documents in version order: a delta is applied when its version is newer than the last
 * desired state applied (from a delta or the get), whatever the device's own reports did to the version. The
 * version of its own accepted report is kept apart: AWS sends the delta caused by that very update with the
 * same version, and it must not be dropped as stale. Every applied or fetched state is reported back, so
 * `reported` confirms what the device runs with. Topics are assembled for the device's own thing name with the
 * Device Shadow library. The one piece of state is the telemetry interval (`telemetryIntervalSec`).
 */
#ifndef SHADOW_SYNC_H
#define SHADOW_SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buffer_config.h"
#include "core_mqtt.h"

/** @brief Accepted range of the telemetry interval. */
#define SHADOW_INTERVAL_MIN_SEC 5U
#define SHADOW_INTERVAL_MAX_SEC 3600U

/** @brief Result of a shadow call or of parsing a delta. */
typedef enum ShadowSyncStatus {
    SHADOW_SYNC_SUCCESS = 0,     /**< Done; for a delta: applied, a report is pending. */
    SHADOW_SYNC_BAD_PARAMETER,
    SHADOW_SYNC_STALE_VERSION,   /**< Delta not newer than the last version seen: ignored. */
    SHADOW_SYNC_INVALID_DOCUMENT,/**< Not JSON, no version, or a value out of range: ignored. */
    SHADOW_SYNC_NOT_FOR_US,      /**< Publish on another topic or another thing's shadow. */
    SHADOW_SYNC_MQTT_FAILURE
} ShadowSyncStatus_t;

/** @brief Shadow topics of the thing, assembled once. */
typedef enum ShadowSyncTopic {
    SHADOW_SYNC_TOPIC_UPDATE = 0,
    SHADOW_SYNC_TOPIC_UPDATE_DELTA,
    SHADOW_SYNC_TOPIC_UPDATE_ACCEPTED,
    SHADOW_SYNC_TOPIC_UPDATE_REJECTED,
    SHADOW_SYNC_TOPIC_GET,
    SHADOW_SYNC_TOPIC_GET_ACCEPTED,
    SHADOW_SYNC_TOPIC_GET_REJECTED,
    SHADOW_SYNC_TOPIC_COUNT
} ShadowSyncTopic_t;

/** @brief Shadow state; caller-owned. */
typedef struct ShadowSync {
    char thingName[DEVICE_ID_LENGTH + 1U];
    uint8_t thingNameLength;
    char topics[SHADOW_SYNC_TOPIC_COUNT][TOPIC_BUFFER_SIZE];
    uint16_t topicLengths[SHADOW_SYNC_TOPIC_COUNT];
    uint32_t desiredVersion;       /**< Version of the last desired state applied (delta or get/accepted). */
    uint32_t acceptedVersion;      /**< Version of the device's last accepted report (update/accepted). */
    uint32_t telemetryIntervalSec; /**< Current value. */
    bool reportPending;            /**< Set by the callback, cleared when reported. */
    bool getAnswered;              /**< The get of this connection was answered (accepted or rejected). */
    uint32_t clientToken;
} ShadowSync_t;

/**
 * @brief Assemble the shadow topics for a thing.
 * @return SHADOW_SYNC_SUCCESS or SHADOW_SYNC_BAD_PARAMETER.
 */
ShadowSyncStatus_t ShadowSync_Init(ShadowSync_t *shadow, const char *thingName, uint32_t telemetryIntervalSec);

/** @brief The assembled topic (NUL-terminated). */
const char *ShadowSync_Topic(const ShadowSync_t *shadow, ShadowSyncTopic_t topic);

/** @brief Subscribe (QoS 1) to update/delta, update/accepted, update/rejected, get/accepted and get/rejected. */
ShadowSyncStatus_t ShadowSync_Subscribe(ShadowSync_t *shadow, MQTTContext_t *mqtt);

/**
 * @brief Ask for the shadow document (publish on `get`); the answer arrives on get/accepted or get/rejected.
 * @return SHADOW_SYNC_SUCCESS or SHADOW_SYNC_MQTT_FAILURE.
 */
ShadowSyncStatus_t ShadowSync_RequestGet(ShadowSync_t *shadow, MQTTContext_t *mqtt);

/**
 * @brief Apply a delta document: version newer than the last desired state applied, `state.telemetryIntervalSec`
 *        in range.
 * @return SHADOW_SYNC_SUCCESS (applied, report pending), SHADOW_SYNC_STALE_VERSION or SHADOW_SYNC_INVALID_DOCUMENT.
 */
ShadowSyncStatus_t ShadowSync_ApplyDelta(ShadowSync_t *shadow, const char *document, size_t length);

/**
 * @brief Apply a get/accepted document: the desired value (`state.delta`, else `state.desired`) when its version
 *        is not older than the last desired state applied; a report is pending either way (confirm what runs).
 * @return SHADOW_SYNC_SUCCESS, SHADOW_SYNC_STALE_VERSION or SHADOW_SYNC_INVALID_DOCUMENT.
 */
ShadowSyncStatus_t ShadowSync_ApplyGetAccepted(ShadowSync_t *shadow, const char *document, size_t length);

/**
 * @brief From the MQTT callback: route a publish on one of the thing's shadow topics. Parses and sets flags.
 * @return SHADOW_SYNC_NOT_FOR_US for other topics, else the outcome.
 */
ShadowSyncStatus_t ShadowSync_HandlePublish(ShadowSync_t *shadow, const MQTTPublishInfo_t *publish);

/**
 * @brief Publish the reported state (QoS 1) to update; clears reportPending.
 * @return SHADOW_SYNC_SUCCESS or SHADOW_SYNC_MQTT_FAILURE.
 */
ShadowSyncStatus_t ShadowSync_Report(ShadowSync_t *shadow, MQTTContext_t *mqtt);

/** @brief Whether a report is due (a desired state was applied or fetched and not reported yet). */
bool ShadowSync_ReportPending(const ShadowSync_t *shadow);

/** @brief The telemetry interval the device runs with. */
uint32_t ShadowSync_TelemetryIntervalSec(const ShadowSync_t *shadow);

#endif /* SHADOW_SYNC_H */
