/*
 * Runtime S3 URL requests and replies (s3_url_request.c): topics of the thing, names checked as the presign function
 * checks them, the request document, and replies that are accepted, rejected, for another request (wrong client
 * token), late, truncated, malformed, oversized or escaped as Go's encoder escapes them; the fleet-file request
 * ("scope":"fleet", key fleet/<name>) and the fleet object name taken from the image's baked URL (s3_demo.c).
 */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "s3_demo.h"
#include "s3_url_request.h"

static const char thing[] = "0a1b2c3d";

static MQTTPublishInfo_t Publish(const char *topic, const char *payload)
{
    MQTTPublishInfo_t publish = {.qos = MQTTQoS1,
                                 .pTopicName = topic,
                                 .topicNameLength = (uint16_t)strlen(topic),
                                 .pPayload = payload,
                                 .payloadLength = strlen(payload)};
    return publish;
}

/* Starts a request and returns its token. */
static const char *Start(S3UrlClient_t *client, S3UrlOperation_t operation, uint32_t length)
{
    char payload[S3_URL_REQUEST_SIZE];
    size_t payloadLength = 0;
    CHECK(S3UrlRequest_Build(client, operation, "hello.txt", length, payload, sizeof(payload), &payloadLength) ==
          S3_URL_SUCCESS);
    return client->token;
}

static S3UrlStatus_t Reply(S3UrlClient_t *client, bool accepted, const char *format, const char *token)
{
    static char payload[2 * S3_URL_MAX_LENGTH];
    (void)snprintf(payload, sizeof(payload), format, token);
    return S3UrlRequest_ParseReply(client, accepted, payload, strlen(payload));
}

static void TestTopicsAndNames(void)
{
    static S3UrlClient_t client;
    CHECK(S3UrlRequest_Init(&client, "devices", thing) == S3_URL_SUCCESS);
    CHECK(strcmp(client.requestTopic, "devices/0a1b2c3d/s3/url") == 0 && client.requestTopicLength == 23U);
    CHECK(strcmp(client.acceptedTopic, "devices/0a1b2c3d/s3/url/accepted") == 0);
    CHECK(strcmp(client.rejectedTopic, "devices/0a1b2c3d/s3/url/rejected") == 0);
    CHECK(S3UrlRequest_Init(&client, "devices", "a/b") == S3_URL_BAD_PARAMETER);
    CHECK(S3UrlRequest_Init(&client, "devices", "+") == S3_URL_BAD_PARAMETER);
    CHECK(S3UrlRequest_Init(&client, "", thing) == S3_URL_BAD_PARAMETER);
    CHECK(S3UrlRequest_Init(NULL, "devices", thing) == S3_URL_BAD_PARAMETER);

    char longest[S3_URL_NAME_MAX_LENGTH + 2U];
    memset(longest, 'a', sizeof(longest));
    longest[S3_URL_NAME_MAX_LENGTH] = '\0';
    CHECK(S3UrlRequest_IsValidName("hello.txt") && S3UrlRequest_IsValidName("logs/2024-01-01/boot_1.txt") && S3UrlRequest_IsValidName(longest));
    longest[S3_URL_NAME_MAX_LENGTH] = 'a';
    longest[S3_URL_NAME_MAX_LENGTH + 1U] = '\0';
    CHECK(!S3UrlRequest_IsValidName(longest));
    const char *bad[] = {"", "/hello.txt", "hello/", "a//b", "..", "../other/hello.txt", "a/../../b", "./a",
                         "a/.", "hello world", "a\"b", "a\\b", "caf\xc3\xa9", "a%2F..", NULL};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (S3UrlRequest_IsValidName(bad[i])) {
            fprintf(stderr, "name %s accepted\n", bad[i] == NULL ? "NULL" : bad[i]);
            CHECK(false);
        }
    }
}

static void TestRequests(void)
{
    static S3UrlClient_t client;
    char payload[S3_URL_REQUEST_SIZE];
    size_t length = 0;
    CHECK(S3UrlRequest_Init(&client, "devices", thing) == S3_URL_SUCCESS);
    CHECK(S3UrlRequest_Build(&client, S3_URL_OPERATION_PUT, "hello.txt", 42U, payload, sizeof(payload), &length) ==
          S3_URL_SUCCESS);
    CHECK(strcmp(payload, "{\"operation\":\"PUT\",\"name\":\"hello.txt\",\"contentLength\":42,\"clientToken\":\"s3-00000001\"}") == 0);
    CHECK(length == strlen(payload) && client.pending && !client.answered);
    CHECK(S3UrlRequest_Build(&client, S3_URL_OPERATION_GET, "logs/hello.txt", 0U, payload, sizeof(payload), &length) ==
          S3_URL_SUCCESS);
    CHECK(strcmp(payload, "{\"operation\":\"GET\",\"name\":\"logs/hello.txt\",\"clientToken\":\"s3-00000002\"}") == 0);
    /* Refused before anything is published. */
    CHECK(S3UrlRequest_Build(&client, S3_URL_OPERATION_PUT, "hello.txt", 0U, payload, sizeof(payload), &length) ==
          S3_URL_BAD_PARAMETER);
    CHECK(S3UrlRequest_Build(&client, S3_URL_OPERATION_GET, "hello.txt", 5U, payload, sizeof(payload), &length) ==
          S3_URL_BAD_PARAMETER);
    CHECK(S3UrlRequest_Build(&client, S3_URL_OPERATION_GET, "../x", 0U, payload, sizeof(payload), &length) ==
          S3_URL_BAD_PARAMETER);
    CHECK(S3UrlRequest_Build(&client, (S3UrlOperation_t)7, "x", 0U, payload, sizeof(payload), &length) ==
          S3_URL_BAD_PARAMETER);
    CHECK(S3UrlRequest_Build(&client, S3_URL_OPERATION_PUT, "hello.txt", 42U, payload, 20U, &length) ==
          S3_URL_BAD_PARAMETER);
    CHECK(!client.pending && payload[0] == '\0');
}

static void TestAcceptedReplies(void)
{
    static S3UrlClient_t client;
    CHECK(S3UrlRequest_Init(&client, "devices", thing) == S3_URL_SUCCESS);

    /* Go's encoder writes '&' as \u0026: the URL comes back unescaped. */
    const char *token = Start(&client, S3_URL_OPERATION_PUT, 42U);
    CHECK(Reply(&client, true,
                "{\"clientToken\":\"%s\",\"url\":\"https://b.s3.amazonaws.com/devices/0a1b2c3d/hello.txt?X-Amz-Date=1\\u0026"
                "X-Amz-Signature=ab\",\"method\":\"PUT\",\"key\":\"devices/0a1b2c3d/hello.txt\",\"contentLength\":42,"
                "\"expiresAt\":1800000900}",
                token) == S3_URL_SUCCESS);
    CHECK(strcmp(client.url, "https://b.s3.amazonaws.com/devices/0a1b2c3d/hello.txt?X-Amz-Date=1&X-Amz-Signature=ab") == 0);
    CHECK(client.urlLength == strlen(client.url) && strcmp(client.key, "devices/0a1b2c3d/hello.txt") == 0);
    CHECK(client.expiresAt == 1800000900 && client.answered && client.outcome == S3_URL_SUCCESS && !client.pending);

    /* The same answer again (a duplicate QoS 1 delivery): no request in flight, ignored. */
    CHECK(Reply(&client, true, "{\"clientToken\":\"%s\",\"url\":\"https://x\",\"method\":\"PUT\"}", token) ==
          S3_URL_NOT_PENDING);

    /* A late answer to an earlier request is not taken for the current one. */
    char oldToken[S3_URL_TOKEN_SIZE];
    memcpy(oldToken, Start(&client, S3_URL_OPERATION_GET, 0U), sizeof(oldToken));
    token = Start(&client, S3_URL_OPERATION_GET, 0U);
    CHECK(Reply(&client, true,
                "{\"clientToken\":\"%s\",\"url\":\"https://b/k\",\"method\":\"GET\",\"key\":\"k\",\"expiresAt\":1}",
                oldToken) == S3_URL_WRONG_TOKEN);
    CHECK(Reply(&client, true, "{\"url\":\"https://b/k\",\"method\":\"GET\",\"key\":\"k\",\"expiresAt\":1}%s", "") ==
          S3_URL_WRONG_TOKEN);
    CHECK(client.pending && !client.answered);
    CHECK(Reply(&client, true,
                "{\"clientToken\":\"%s\",\"url\":\"https://b/k\",\"method\":\"GET\",\"key\":\"k\",\"expiresAt\":1}",
                token) == S3_URL_SUCCESS);

    /* Truncated or not JSON: left for the timeout (the token cannot be read). */
    token = Start(&client, S3_URL_OPERATION_GET, 0U);
    CHECK(Reply(&client, true, "{\"clientToken\":\"%s\",\"url\":\"https://b/k", token) == S3_URL_MALFORMED);
    CHECK(Reply(&client, true, "not json %s", token) == S3_URL_MALFORMED);
    CHECK(Reply(&client, true, "", token) == S3_URL_MALFORMED);
    CHECK(Reply(&client, true, "{\"clientToken\":\"%s\",\"url\":\"https://b/\\u00\",\"method\":\"GET\"}", token) ==
          S3_URL_MALFORMED);
    CHECK(client.pending && !client.answered);

    /* Right token, unusable content: the request ends with the reason, the app asks again. */
    const char *unusable[] = {
        "{\"clientToken\":\"%s\",\"method\":\"GET\",\"key\":\"k\",\"expiresAt\":1}",                       /* no url */
        "{\"clientToken\":\"%s\",\"url\":\"http://b/k\",\"method\":\"GET\",\"key\":\"k\",\"expiresAt\":1}", /* not https */
        "{\"clientToken\":\"%s\",\"url\":\"https://b/k\",\"method\":\"PUT\",\"key\":\"k\",\"expiresAt\":1}", /* method */
        "{\"clientToken\":\"%s\",\"url\":\"https://b/k\",\"method\":\"GET\",\"expiresAt\":1}",              /* no key */
        "{\"clientToken\":\"%s\",\"url\":\"https://b/k\",\"method\":\"GET\",\"key\":\"k\"}",                /* no expiry */
        "{\"clientToken\":\"%s\",\"url\":\"https://b/k\",\"method\":\"GET\",\"key\":\"k\",\"expiresAt\":-1}",
        "{\"clientToken\":\"%s\",\"url\":\"https://b/k\\n\",\"method\":\"GET\",\"key\":\"k\",\"expiresAt\":1}",
        "{\"clientToken\":\"%s\",\"url\":\"https://b/\\u00e9\",\"method\":\"GET\",\"key\":\"k\",\"expiresAt\":1}",
        "{\"clientToken\":\"%s\",\"url\":42,\"method\":\"GET\",\"key\":\"k\",\"expiresAt\":1}",
    };
    for (size_t i = 0; i < sizeof(unusable) / sizeof(unusable[0]); i++) {
        token = Start(&client, S3_URL_OPERATION_GET, 0U);
        S3UrlStatus_t status = Reply(&client, true, unusable[i], token);
        if (status != S3_URL_MALFORMED || !client.answered || client.outcome != S3_URL_MALFORMED ||
            client.url[0] != '\0') {
            fprintf(stderr, "unusable reply %zu: %s\n", i, S3UrlRequest_StatusString(status));
            CHECK(false);
        }
    }

    /* A PUT URL signed for another length than asked for. */
    token = Start(&client, S3_URL_OPERATION_PUT, 42U);
    CHECK(Reply(&client, true,
                "{\"clientToken\":\"%s\",\"url\":\"https://b/k\",\"method\":\"PUT\",\"key\":\"k\",\"contentLength\":43,"
                "\"expiresAt\":1}",
                token) == S3_URL_MALFORMED);
    token = Start(&client, S3_URL_OPERATION_PUT, 42U);
    CHECK(Reply(&client, true, "{\"clientToken\":\"%s\",\"url\":\"https://b/k\",\"method\":\"PUT\",\"key\":\"k\",\"expiresAt\":1}",
                token) == S3_URL_MALFORMED);
}

static void TestOversizedReplies(void)
{
    static S3UrlClient_t client;
    static char payload[2 * S3_URL_MAX_LENGTH + 256U];
    static char url[2 * S3_URL_MAX_LENGTH];
    CHECK(S3UrlRequest_Init(&client, "devices", thing) == S3_URL_SUCCESS);

    /* The longest URL that fits, then one byte more. */
    for (size_t extra = 0; extra <= 1U; extra++) {
        const char *token = Start(&client, S3_URL_OPERATION_GET, 0U);
        size_t urlLength = S3_URL_MAX_LENGTH + extra;
        memcpy(url, "https://b/", 10U);
        memset(url + 10, 'x', urlLength - 10U);
        url[urlLength] = '\0';
        (void)snprintf(payload, sizeof(payload),
                       "{\"clientToken\":\"%s\",\"url\":\"%s\",\"method\":\"GET\",\"key\":\"k\",\"expiresAt\":1}", token,
                       url);
        S3UrlStatus_t status = S3UrlRequest_ParseReply(&client, true, payload, strlen(payload));
        if (extra == 0U) {
            CHECK(status == S3_URL_SUCCESS && client.urlLength == S3_URL_MAX_LENGTH);
        } else {
            CHECK(status == S3_URL_TOO_LONG && client.answered && client.outcome == S3_URL_TOO_LONG &&
                  client.url[0] == '\0');
        }
    }
    /* A key longer than the device keeps. */
    const char *token = Start(&client, S3_URL_OPERATION_GET, 0U);
    memset(url, 'k', S3_URL_KEY_MAX_LENGTH + 1U);
    url[S3_URL_KEY_MAX_LENGTH + 1U] = '\0';
    (void)snprintf(payload, sizeof(payload),
                   "{\"clientToken\":\"%s\",\"url\":\"https://b/k\",\"method\":\"GET\",\"key\":\"%s\",\"expiresAt\":1}",
                   token, url);
    CHECK(S3UrlRequest_ParseReply(&client, true, payload, strlen(payload)) == S3_URL_TOO_LONG);
}

static void TestRejectedReplies(void)
{
    static S3UrlClient_t client;
    static char longReason[400];
    CHECK(S3UrlRequest_Init(&client, "devices", thing) == S3_URL_SUCCESS);

    const char *token = Start(&client, S3_URL_OPERATION_PUT, 42U);
    CHECK(Reply(&client, false, "{\"clientToken\":\"%s\",\"reason\":\"contentLength 42 is outside 1..10 bytes\"}", token) ==
          S3_URL_REJECTED);
    CHECK(client.answered && client.outcome == S3_URL_REJECTED && !client.pending);
    CHECK(strcmp(client.reason, "contentLength 42 is outside 1..10 bytes") == 0);

    token = Start(&client, S3_URL_OPERATION_PUT, 42U);
    CHECK(Reply(&client, false, "{\"clientToken\":\"%s\"}", token) == S3_URL_REJECTED);
    CHECK(strcmp(client.reason, "(no reason given)") == 0);

    /* A long reason is cut to the buffer, the rejection still counts. */
    token = Start(&client, S3_URL_OPERATION_PUT, 42U);
    memset(longReason, 'r', sizeof(longReason) - 1U);
    longReason[sizeof(longReason) - 1U] = '\0';
    static char payload[600];
    (void)snprintf(payload, sizeof(payload), "{\"clientToken\":\"%s\",\"reason\":\"%s\"}", token, longReason);
    CHECK(S3UrlRequest_ParseReply(&client, false, payload, strlen(payload)) == S3_URL_REJECTED);
    CHECK(strlen(client.reason) == S3_URL_REASON_SIZE - 1U);

    /* Another request's rejection is not ours. */
    token = Start(&client, S3_URL_OPERATION_PUT, 42U);
    CHECK(Reply(&client, false, "{\"clientToken\":\"s3-ffffffff\",\"reason\":\"x\"}%s", "") == S3_URL_WRONG_TOKEN);
    CHECK(client.pending && !client.answered);
    S3UrlRequest_Cancel(&client);
    CHECK(Reply(&client, false, "{\"clientToken\":\"%s\",\"reason\":\"late\"}", token) == S3_URL_NOT_PENDING);
}

static void TestRouting(void)
{
    static S3UrlClient_t client;
    CHECK(S3UrlRequest_Init(&client, "devices", thing) == S3_URL_SUCCESS);
    const char *token = Start(&client, S3_URL_OPERATION_GET, 0U);
    char payload[200];
    (void)snprintf(payload, sizeof(payload), "{\"clientToken\":\"%s\",\"reason\":\"no\"}", token);
    MQTTPublishInfo_t other = Publish("devices/other/s3/url/rejected", payload);
    CHECK(S3UrlRequest_HandlePublish(&client, &other) == S3_URL_NOT_FOR_US);
    MQTTPublishInfo_t prefix = Publish("devices/0a1b2c3d/s3/url/rejecte", payload);
    CHECK(S3UrlRequest_HandlePublish(&client, &prefix) == S3_URL_NOT_FOR_US);
    MQTTPublishInfo_t request = Publish("devices/0a1b2c3d/s3/url", payload);
    CHECK(S3UrlRequest_HandlePublish(&client, &request) == S3_URL_NOT_FOR_US);
    CHECK(client.pending);
    MQTTPublishInfo_t rejected = Publish("devices/0a1b2c3d/s3/url/rejected", payload);
    CHECK(S3UrlRequest_HandlePublish(&client, &rejected) == S3_URL_REJECTED && strcmp(client.reason, "no") == 0);
    CHECK(S3UrlRequest_HandlePublish(NULL, &rejected) == S3_URL_BAD_PARAMETER);
    CHECK(S3UrlRequest_ParseReply(&client, true, NULL, 0U) == S3_URL_BAD_PARAMETER);
}

static void TestFleetRequests(void)
{
    static S3UrlClient_t client;
    char payload[S3_URL_REQUEST_SIZE];
    size_t length = 0;
    CHECK(S3UrlRequest_Init(&client, "devices", thing) == S3_URL_SUCCESS);
    CHECK(S3UrlRequest_Build(&client, S3_URL_OPERATION_GET_FLEET, "notice.txt", 0U, payload, sizeof(payload), &length) ==
          S3_URL_SUCCESS);
    CHECK(strcmp(payload, "{\"operation\":\"GET\",\"scope\":\"fleet\",\"name\":\"notice.txt\",\"clientToken\":\"s3-00000001\"}") ==
          0);
    CHECK(S3UrlRequest_Build(&client, S3_URL_OPERATION_GET_FLEET, "notice.txt", 3U, payload, sizeof(payload), &length) ==
          S3_URL_BAD_PARAMETER);
    /* The answer to a fleet request must be for a key under fleet/, and the answer to a device request must not. */
    const char *token = Start(&client, S3_URL_OPERATION_GET_FLEET, 0U);
    CHECK(Reply(&client, true,
                "{\"clientToken\":\"%s\",\"url\":\"https://b/d\",\"method\":\"GET\",\"key\":\"devices/0a1b2c3d/hello.txt\","
                "\"expiresAt\":1}",
                token) == S3_URL_MALFORMED);
    token = Start(&client, S3_URL_OPERATION_GET_FLEET, 0U);
    CHECK(Reply(&client, true,
                "{\"clientToken\":\"%s\",\"url\":\"https://b/fleet/hello.txt\",\"method\":\"GET\",\"key\":\"fleet/hello.txt\","
                "\"expiresAt\":1}",
                token) == S3_URL_SUCCESS);
    token = Start(&client, S3_URL_OPERATION_GET, 0U);
    CHECK(Reply(&client, true,
                "{\"clientToken\":\"%s\",\"url\":\"https://b/fleet/hello.txt\",\"method\":\"GET\",\"key\":\"fleet/hello.txt\","
                "\"expiresAt\":1}",
                token) == S3_URL_MALFORMED);

    /* The name under fleet/ comes from the baked URL, path-style or virtual-hosted; anything else gives none. */
    char name[S3_URL_NAME_MAX_LENGTH + 1U];
    CHECK(S3Demo_FleetObjectName("https://s3.eu-west-1.amazonaws.com/bucket/fleet/notice.txt?X-Amz-Expires=604800&a=b",
                                 name, sizeof(name)) &&
          strcmp(name, "notice.txt") == 0);
    CHECK(S3Demo_FleetObjectName("https://bucket.s3.amazonaws.com/fleet/a/b.txt?X-Amz-Date=1", name, sizeof(name)) &&
          strcmp(name, "a/b.txt") == 0);
    CHECK(!S3Demo_FleetObjectName("https://bucket.s3.amazonaws.com/devices/x/hello.txt?fleet/y", name, sizeof(name)));
    CHECK(!S3Demo_FleetObjectName("https://bucket.s3.amazonaws.com/fleet/?X-Amz-Date=1", name, sizeof(name)));
    CHECK(!S3Demo_FleetObjectName("https://bucket.s3.amazonaws.com/fleet/../x", name, sizeof(name)));
    CHECK(!S3Demo_FleetObjectName("http://bucket/fleet/notice.txt", name, sizeof(name)));
    CHECK(!S3Demo_FleetObjectName("https://bucket/fleet/notice.txt", name, 5U));
}

/* The event loop takes an answer once; the callback's flag is the module's own. */
static void TestTakeAnswer(void)
{
    static S3UrlClient_t client;
    S3UrlStatus_t outcome = S3_URL_SUCCESS;
    CHECK(S3UrlRequest_Init(&client, "devices", thing) == S3_URL_SUCCESS);
    const char *token = Start(&client, S3_URL_OPERATION_GET, 0U);
    CHECK(!S3UrlRequest_TakeAnswer(&client, &outcome));
    CHECK(Reply(&client, false, "{\"clientToken\":\"%s\",\"reason\":\"no\"}", token) == S3_URL_REJECTED);
    CHECK(S3UrlRequest_TakeAnswer(&client, &outcome) && outcome == S3_URL_REJECTED);
    CHECK(!S3UrlRequest_TakeAnswer(&client, &outcome));
    CHECK(!S3UrlRequest_TakeAnswer(NULL, &outcome));
}

int main(void)
{
    TestTopicsAndNames();
    TestRequests();
    TestAcceptedReplies();
    TestOversizedReplies();
    TestRejectedReplies();
    TestRouting();
    TestFleetRequests();
    TestTakeAnswer();
    return CHECK_DONE();
}
