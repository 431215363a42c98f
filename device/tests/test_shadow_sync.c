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
    CHECK(shadow.telemetryIntervalSec == 60U && shadow.lastVersion == 5U && shadow.reportPending);
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
    CHECK(shadow.telemetryIntervalSec == 60U && shadow.lastVersion == 5U);

    /* Routed from MQTT: the delta topic applies; update/accepted advances the version. */
    (void)snprintf(expected, sizeof(expected), "$aws/things/%s/shadow/update/delta", thing);
    MQTTPublishInfo_t publish = Publish(expected, "{\"version\":9,\"state\":{\"telemetryIntervalSec\":15}}");
    CHECK(ShadowSync_HandlePublish(&shadow, &publish) == SHADOW_SYNC_SUCCESS);
    CHECK(shadow.telemetryIntervalSec == 15U && shadow.lastVersion == 9U);
    (void)snprintf(expected, sizeof(expected), "$aws/things/%s/shadow/update/accepted", thing);
    publish = Publish(expected, "{\"state\":{\"reported\":{\"telemetryIntervalSec\":15}},\"version\":10}");
    CHECK(ShadowSync_HandlePublish(&shadow, &publish) == SHADOW_SYNC_SUCCESS);
    CHECK(shadow.lastVersion == 10U);
    publish = Publish("$aws/things/another-thing/shadow/update/delta", "{\"version\":99,\"state\":{\"telemetryIntervalSec\":20}}");
    CHECK(ShadowSync_HandlePublish(&shadow, &publish) == SHADOW_SYNC_NOT_FOR_US);
    CHECK(shadow.telemetryIntervalSec == 15U);

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
