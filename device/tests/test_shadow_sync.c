/*
 * Shadow and telemetry topics for the device's thing name, and delta handling with version checks:
 * newer versions apply, stale or duplicate ones and invalid documents are ignored, other things' shadows
 * and other topics are not ours.
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "shadow_sync.h"
#include "telemetry.h"

static const char thing[] =
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

static MQTTPublishInfo_t Publish(const char *topic, const char *payload)
{
    MQTTPublishInfo_t publish = {.qos = MQTTQoS1,
                                 .pTopicName = topic,
                                 .topicNameLength = (uint16_t)strlen(topic),
                                 .pPayload = payload,
                                 .payloadLength = strlen(payload)};
    return publish;
}

int main(void)
{
    static ShadowSync_t shadow;
    static Telemetry_t telemetry;
    char expected[300];

    CHECK(ShadowSync_Init(&shadow, thing, 30) == SHADOW_SYNC_SUCCESS);
    (void)snprintf(expected, sizeof(expected), "$aws/things/%s/shadow/update", thing);
    CHECK(strcmp(ShadowSync_Topic(&shadow, SHADOW_SYNC_TOPIC_UPDATE), expected) == 0);
    (void)snprintf(expected, sizeof(expected), "$aws/things/%s/shadow/update/delta", thing);
    CHECK(strcmp(ShadowSync_Topic(&shadow, SHADOW_SYNC_TOPIC_UPDATE_DELTA), expected) == 0);
    (void)snprintf(expected, sizeof(expected), "$aws/things/%s/shadow/update/accepted", thing);
    CHECK(strcmp(ShadowSync_Topic(&shadow, SHADOW_SYNC_TOPIC_UPDATE_ACCEPTED), expected) == 0);
    (void)snprintf(expected, sizeof(expected), "$aws/things/%s/shadow/update/rejected", thing);
    CHECK(strcmp(ShadowSync_Topic(&shadow, SHADOW_SYNC_TOPIC_UPDATE_REJECTED), expected) == 0);

    /* Deltas: newer applies, same or older is stale, bad documents ignored, state unchanged by ignored ones. */
    const char *delta5 = "{\"version\":5,\"timestamp\":1,\"state\":{\"telemetryIntervalSec\":60},\"metadata\":{}}";
    CHECK(ShadowSync_ApplyDelta(&shadow, delta5, strlen(delta5)) == SHADOW_SYNC_SUCCESS);
    CHECK(shadow.telemetryIntervalSec == 60U && shadow.desiredVersion == 5U && shadow.reportPending);
    shadow.reportPending = false;
    CHECK(ShadowSync_ApplyDelta(&shadow, delta5, strlen(delta5)) == SHADOW_SYNC_STALE_VERSION);
    const char *delta4 = "{\"version\":4,\"state\":{\"telemetryIntervalSec\":10}}";
    CHECK(ShadowSync_ApplyDelta(&shadow, delta4, strlen(delta4)) == SHADOW_SYNC_STALE_VERSION);
    CHECK(shadow.telemetryIntervalSec == 60U && !shadow.reportPending);
    const char *outOfRange = "{\"version\":6,\"state\":{\"telemetryIntervalSec\":1}}";
    CHECK(ShadowSync_ApplyDelta(&shadow, outOfRange, strlen(outOfRange)) == SHADOW_SYNC_INVALID_DOCUMENT);
    const char *noVersion = "{\"state\":{\"telemetryIntervalSec\":10}}";
    CHECK(ShadowSync_ApplyDelta(&shadow, noVersion, strlen(noVersion)) == SHADOW_SYNC_INVALID_DOCUMENT);
    const char *notJson = "{\"version\":7,";
    CHECK(ShadowSync_ApplyDelta(&shadow, notJson, strlen(notJson)) == SHADOW_SYNC_INVALID_DOCUMENT);
    CHECK(shadow.telemetryIntervalSec == 60U && shadow.desiredVersion == 5U);

    /* Routed from MQTT: the delta topic applies; update/accepted advances the version. */
    (void)snprintf(expected, sizeof(expected), "$aws/things/%s/shadow/update/delta", thing);
    MQTTPublishInfo_t publish = Publish(expected, "{\"version\":9,\"state\":{\"telemetryIntervalSec\":15}}");
    CHECK(ShadowSync_HandlePublish(&shadow, &publish) == SHADOW_SYNC_SUCCESS);
    CHECK(shadow.telemetryIntervalSec == 15U && shadow.desiredVersion == 9U);
    (void)snprintf(expected, sizeof(expected), "$aws/things/%s/shadow/update/accepted", thing);
    publish = Publish(expected, "{\"state\":{\"reported\":{\"telemetryIntervalSec\":15}},\"version\":10}");
    CHECK(ShadowSync_HandlePublish(&shadow, &publish) == SHADOW_SYNC_SUCCESS);
    CHECK(shadow.acceptedVersion == 10U && shadow.desiredVersion == 9U);

    /* The delta AWS sends for the device's own accepted report carries that report's version (10): applied,
     * not dropped as stale. */
    shadow.reportPending = false;
    (void)snprintf(expected, sizeof(expected), "$aws/things/%s/shadow/update/delta", thing);
    publish = Publish(expected, "{\"version\":10,\"state\":{\"telemetryIntervalSec\":25}}");
    CHECK(ShadowSync_HandlePublish(&shadow, &publish) == SHADOW_SYNC_SUCCESS);
    CHECK(shadow.telemetryIntervalSec == 25U && shadow.desiredVersion == 10U && shadow.reportPending);
    /* ... and deltas stay in version order: an older one arriving late is ignored. */
    publish = Publish(expected, "{\"version\":8,\"state\":{\"telemetryIntervalSec\":40}}");
    CHECK(ShadowSync_HandlePublish(&shadow, &publish) == SHADOW_SYNC_STALE_VERSION);
    CHECK(shadow.telemetryIntervalSec == 25U);

    /* Get on connect: a desired value set while the device was offline is applied and reported. */
    {
        static ShadowSync_t fresh;
        CHECK(ShadowSync_Init(&fresh, thing, 30) == SHADOW_SYNC_SUCCESS);
        CHECK(strstr(ShadowSync_Topic(&fresh, SHADOW_SYNC_TOPIC_GET), "/shadow/get") != NULL);
        (void)snprintf(expected, sizeof(expected), "$aws/things/%s/shadow/get/accepted", thing);
        publish = Publish(expected, "{\"state\":{\"desired\":{\"telemetryIntervalSec\":12},\"reported\":"
                                    "{\"telemetryIntervalSec\":30},\"delta\":{\"telemetryIntervalSec\":12}},"
                                    "\"metadata\":{},\"version\":7,\"timestamp\":1}");
        CHECK(ShadowSync_HandlePublish(&fresh, &publish) == SHADOW_SYNC_SUCCESS);
        CHECK(fresh.telemetryIntervalSec == 12U && fresh.desiredVersion == 7U && fresh.reportPending && fresh.getAnswered);
        /* The delta of the same version that AWS may also send is not applied twice (same value anyway). */
        (void)snprintf(expected, sizeof(expected), "$aws/things/%s/shadow/update/delta", thing);
        publish = Publish(expected, "{\"version\":7,\"state\":{\"telemetryIntervalSec\":12}}");
        CHECK(ShadowSync_HandlePublish(&fresh, &publish) == SHADOW_SYNC_STALE_VERSION);
        /* Desired only (no delta: already in sync) still sets the value; no desired keeps ours. */
        CHECK(ShadowSync_Init(&fresh, thing, 30) == SHADOW_SYNC_SUCCESS);
        const char *desiredOnly = "{\"state\":{\"desired\":{\"telemetryIntervalSec\":45}},\"version\":3}";
        CHECK(ShadowSync_ApplyGetAccepted(&fresh, desiredOnly, strlen(desiredOnly)) == SHADOW_SYNC_SUCCESS);
        CHECK(fresh.telemetryIntervalSec == 45U);
        const char *reportedOnly = "{\"state\":{\"reported\":{\"telemetryIntervalSec\":9}},\"version\":4}";
        CHECK(ShadowSync_ApplyGetAccepted(&fresh, reportedOnly, strlen(reportedOnly)) == SHADOW_SYNC_SUCCESS);
        CHECK(fresh.telemetryIntervalSec == 45U && fresh.desiredVersion == 4U);
        /* No shadow yet (404): nothing to apply, but the report is due to create it. */
        fresh.reportPending = false;
        (void)snprintf(expected, sizeof(expected), "$aws/things/%s/shadow/get/rejected", thing);
        publish = Publish(expected, "{\"code\":404,\"message\":\"No shadow exists with name\"}");
        CHECK(ShadowSync_HandlePublish(&fresh, &publish) == SHADOW_SYNC_SUCCESS);
        CHECK(fresh.reportPending);
    }
    publish = Publish("$aws/things/another-thing/shadow/update/delta", "{\"version\":99,\"state\":{\"telemetryIntervalSec\":20}}");
    CHECK(ShadowSync_HandlePublish(&shadow, &publish) == SHADOW_SYNC_NOT_FOR_US);
    CHECK(shadow.telemetryIntervalSec == 25U);

    /* Telemetry topics on the device tree; commands matched on its own topic only. */
    CHECK(Telemetry_Init(&telemetry, "devices", thing) == TELEMETRY_SUCCESS);
    (void)snprintf(expected, sizeof(expected), "devices/%s/telemetry", thing);
    CHECK(strcmp(telemetry.publishTopic, expected) == 0);
    (void)snprintf(expected, sizeof(expected), "devices/%s/commands", thing);
    CHECK(strcmp(telemetry.commandTopic, expected) == 0);
    publish = Publish(expected, "{\"blink\":3}");
    CHECK(ShadowSync_HandlePublish(&shadow, &publish) == SHADOW_SYNC_NOT_FOR_US);
    CHECK(Telemetry_HandlePublish(&telemetry, &publish));
    CHECK(telemetry.commandPending && strcmp(telemetry.command, "{\"blink\":3}") == 0);
    publish = Publish("devices/another-thing/commands", "x");
    CHECK(!Telemetry_HandlePublish(&telemetry, &publish));
    CHECK(Telemetry_Init(&telemetry, "devices", "a/b") == TELEMETRY_BAD_PARAMETER);
    CHECK(ShadowSync_Init(&shadow, "", 30) == SHADOW_SYNC_BAD_PARAMETER);

    return CHECK_DONE();
}
