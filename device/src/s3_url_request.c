/* Runtime S3 URLs over MQTT: see s3_url_request.h. */
#include "s3_url_request.h"

#include <stdio.h>
#include <string.h>

#include "core_json.h"
#include "platform.h"
#include "topics.h"

/* The request is built with snprintf: it must fit its buffer with the longest name and the largest length. */
_Static_assert(S3_URL_REQUEST_SIZE >= sizeof("{\"operation\":\"PUT\",\"name\":\"\",\"contentLength\":4294967295,"
                                              "\"clientToken\":\"\"}") +
                                          S3_URL_NAME_MAX_LENGTH + S3_URL_TOKEN_SIZE,
               "S3_URL_REQUEST_SIZE cannot hold a request");
_Static_assert(S3_URL_REQUEST_SIZE <= MQTT_NETWORK_BUFFER_SIZE - TOPIC_BUFFER_SIZE,
               "an S3 URL request does not fit the MQTT buffer");

/* The method of each S3UrlOperation_t: a fleet-wide object is read with a GET. */
static const char *const operationNames[] = {"PUT", "GET", "GET"};

static S3UrlStatus_t BuildTopic(char *buffer, uint16_t *length, const char *root, const char *thing, const char *leaf)
{
    int written = snprintf(buffer, TOPIC_BUFFER_SIZE, "%s/%s/%s", root, thing, leaf);
    if (written < 0 || (size_t)written >= TOPIC_BUFFER_SIZE) {
        buffer[0] = '\0';
        return S3_URL_BAD_PARAMETER;
    }
    *length = (uint16_t)written;
    return S3_URL_SUCCESS;
}

S3UrlStatus_t S3UrlRequest_Init(S3UrlClient_t *client, const char *topicRoot, const char *thingName)
{
    char check[TOPIC_BUFFER_SIZE];
    if (client == NULL || topicRoot == NULL || thingName == NULL) {
        return S3_URL_BAD_PARAMETER;
    }
    memset(client, 0, sizeof(*client));
    /* Topics_Build checks that root and thing are single topic levels. */
    if (Topics_Build(check, sizeof(check), topicRoot, thingName, "s3", NULL) != TOPICS_SUCCESS ||
        BuildTopic(client->requestTopic, &client->requestTopicLength, topicRoot, thingName, S3_URL_TOPIC_SUFFIX) !=
            S3_URL_SUCCESS ||
        BuildTopic(client->acceptedTopic, &client->acceptedTopicLength, topicRoot, thingName,
                   S3_URL_TOPIC_SUFFIX "/" S3_URL_REPLY_ACCEPTED) != S3_URL_SUCCESS ||
        BuildTopic(client->rejectedTopic, &client->rejectedTopicLength, topicRoot, thingName,
                   S3_URL_TOPIC_SUFFIX "/" S3_URL_REPLY_REJECTED) != S3_URL_SUCCESS) {
        return S3_URL_BAD_PARAMETER;
    }
    return S3_URL_SUCCESS;
}

S3UrlStatus_t S3UrlRequest_Subscribe(S3UrlClient_t *client, MQTTContext_t *mqtt)
{
    if (client == NULL || mqtt == NULL) {
        return S3_URL_BAD_PARAMETER;
    }
    MQTTSubscribeInfo_t subscriptions[2] = {
        {.qos = MQTTQoS1, .pTopicFilter = client->acceptedTopic, .topicFilterLength = client->acceptedTopicLength},
        {.qos = MQTTQoS1, .pTopicFilter = client->rejectedTopic, .topicFilterLength = client->rejectedTopicLength},
    };
    MQTTStatus_t status = MQTT_Subscribe(mqtt, subscriptions, 2U, MQTT_GetPacketId(mqtt));
    if (status != MQTTSuccess) {
        Platform_Log(PLATFORM_LOG_ERROR, "subscribe to %s/accepted|rejected: %s", client->requestTopic,
                     MQTT_Status_strerror(status));
        return S3_URL_MQTT_FAILURE;
    }
    return S3_URL_SUCCESS;
}

static bool IsNameChar(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-' || c == '/';
}

bool S3UrlRequest_IsValidName(const char *name)
{
    if (name == NULL) {
        return false;
    }
    size_t length = strnlen(name, S3_URL_NAME_MAX_LENGTH + 1U);
    if (length == 0U || length > S3_URL_NAME_MAX_LENGTH) {
        return false;
    }
    size_t segmentStart = 0;
    for (size_t i = 0; i <= length; i++) {
        if (i < length && !IsNameChar(name[i])) {
            return false;
        }
        if (i == length || name[i] == '/') {
            size_t segmentLength = i - segmentStart;
            if (segmentLength == 0U || (segmentLength == 1U && name[segmentStart] == '.') ||
                (segmentLength == 2U && name[segmentStart] == '.' && name[segmentStart + 1U] == '.')) {
                return false;
            }
            segmentStart = i + 1U;
        }
    }
    return true;
}

S3UrlStatus_t S3UrlRequest_Build(S3UrlClient_t *client, S3UrlOperation_t operation, const char *name,
                                 uint32_t contentLength, char *buffer, size_t bufferSize, size_t *length)
{
    int written = -1;
    if (client == NULL || buffer == NULL || length == NULL || bufferSize == 0U || !S3UrlRequest_IsValidName(name) ||
        (operation != S3_URL_OPERATION_PUT && operation != S3_URL_OPERATION_GET &&
         operation != S3_URL_OPERATION_GET_FLEET) ||
        (operation == S3_URL_OPERATION_PUT && contentLength == 0U) ||
        (operation != S3_URL_OPERATION_PUT && contentLength != 0U)) {
        return S3_URL_BAD_PARAMETER;
    }
    client->requestCount++;
    (void)snprintf(client->token, sizeof(client->token), "s3-%08lx", (unsigned long)client->requestCount);
    if (operation == S3_URL_OPERATION_PUT) {
        written = snprintf(buffer, bufferSize,
                           "{\"operation\":\"PUT\",\"name\":\"%s\",\"contentLength\":%lu,\"clientToken\":\"%s\"}", name,
                           (unsigned long)contentLength, client->token);
    } else if (operation == S3_URL_OPERATION_GET) {
        written = snprintf(buffer, bufferSize, "{\"operation\":\"GET\",\"name\":\"%s\",\"clientToken\":\"%s\"}", name,
                           client->token);
    } else {
        written = snprintf(buffer, bufferSize,
                           "{\"operation\":\"GET\",\"scope\":\"" S3_URL_SCOPE_FLEET "\",\"name\":\"%s\",\"clientToken\":\"%s\"}",
                           name, client->token);
    }
    /* The name's character set needs no escaping; the validator proves the document is what the function parses. */
    if (written < 0 || (size_t)written >= bufferSize || JSON_Validate(buffer, (size_t)written) != JSONSuccess) {
        buffer[0] = '\0';
        client->pending = false;
        return S3_URL_BAD_PARAMETER;
    }
    client->operation = operation;
    client->contentLength = contentLength;
    client->pending = true;
    client->answered = false;
    client->outcome = S3_URL_NOT_PENDING;
    client->url[0] = '\0';
    client->urlLength = 0;
    client->key[0] = '\0';
    client->reason[0] = '\0';
    *length = (size_t)written;
    return S3_URL_SUCCESS;
}

S3UrlStatus_t S3UrlRequest_Send(S3UrlClient_t *client, MQTTContext_t *mqtt, S3UrlOperation_t operation, const char *name,
                            uint32_t contentLength)
{
    static char payload[S3_URL_REQUEST_SIZE];
    size_t length = 0;
    if (client == NULL || mqtt == NULL) {
        return S3_URL_BAD_PARAMETER;
    }
    S3UrlStatus_t status = S3UrlRequest_Build(client, operation, name, contentLength, payload, sizeof(payload), &length);
    if (status != S3_URL_SUCCESS) {
        return status;
    }
    MQTTPublishInfo_t publish = {
        .qos = MQTTQoS1,
        .pTopicName = client->requestTopic,
        .topicNameLength = client->requestTopicLength,
        .pPayload = payload,
        .payloadLength = length,
    };
    MQTTStatus_t mqttStatus = MQTT_Publish(mqtt, &publish, MQTT_GetPacketId(mqtt));
    if (mqttStatus != MQTTSuccess) {
        Platform_Log(PLATFORM_LOG_ERROR, "publish %s: %s", client->requestTopic, MQTT_Status_strerror(mqttStatus));
        S3UrlRequest_Cancel(client);
        return S3_URL_MQTT_FAILURE;
    }
    Platform_Log(PLATFORM_LOG_INFO, "S3: asked for a %s URL for %s on %s (clientToken %s)", operationNames[operation],
                 name, client->requestTopic, client->token);
    return S3_URL_SUCCESS;
}

/* Finds a string member; value points into the document, still JSON-escaped. */
static bool SearchString(const char *document, size_t length, const char *query, const char **value, size_t *valueLength)
{
    JSONTypes_t type = JSONInvalid;
    return JSON_SearchConst(document, length, query, strlen(query), value, valueLength, &type) == JSONSuccess &&
           type == JSONString;
}

static int HexValue(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/*
 * Copies a JSON string value into out, undoing the escapes (Go's encoder writes '&' as \u0026). Only printable
 * ASCII is taken: URLs, keys and reasons never need more. Returns S3_URL_TOO_LONG when it does not fit.
 */
static S3UrlStatus_t Unescape(const char *value, size_t valueLength, char *out, size_t outSize, size_t *outLength)
{
    size_t n = 0;
    for (size_t i = 0; i < valueLength; i++) {
        char c = value[i];
        if (c == '\\') {
            if (i + 1U >= valueLength) {
                return S3_URL_MALFORMED;
            }
            c = value[++i];
            switch (c) {
            case '"':
            case '\\':
            case '/':
                break;
            case 'u': {
                int code = 0;
                if (i + 4U >= valueLength) {
                    return S3_URL_MALFORMED;
                }
                for (size_t k = 1; k <= 4U; k++) {
                    int digit = HexValue(value[i + k]);
                    if (digit < 0) {
                        return S3_URL_MALFORMED;
                    }
                    code = code * 16 + digit;
                }
                if (code < 0x20 || code > 0x7e) {
                    return S3_URL_MALFORMED;
                }
                c = (char)code;
                i += 4U;
                break;
            }
            default: /* \b \f \n \r \t: control characters have no place in these values */
                return S3_URL_MALFORMED;
            }
        } else if (c < 0x20 || c > 0x7e) {
            return S3_URL_MALFORMED;
        }
        if (n + 1U >= outSize) {
            return S3_URL_TOO_LONG;
        }
        out[n++] = c;
    }
    out[n] = '\0';
    if (outLength != NULL) {
        *outLength = n;
    }
    return S3_URL_SUCCESS;
}

/* A JSON integer that fits 0..INT64_MAX. */
static bool SearchInteger(const char *document, size_t length, const char *query, int64_t *value)
{
    const char *found = NULL;
    size_t foundLength = 0;
    JSONTypes_t type = JSONInvalid;
    uint64_t result = 0;
    if (JSON_SearchConst(document, length, query, strlen(query), &found, &foundLength, &type) != JSONSuccess ||
        type != JSONNumber || foundLength == 0U || foundLength > 18U) {
        return false;
    }
    for (size_t i = 0; i < foundLength; i++) {
        if (found[i] < '0' || found[i] > '9') {
            return false;
        }
        result = result * 10U + (uint64_t)(found[i] - '0');
    }
    *value = (int64_t)result;
    return true;
}

/* Ends the request in flight with this outcome. */
static S3UrlStatus_t Finish(S3UrlClient_t *client, S3UrlStatus_t outcome)
{
    client->pending = false;
    client->answered = true;
    client->outcome = outcome;
    if (outcome != S3_URL_SUCCESS) {
        client->url[0] = '\0';
        client->urlLength = 0;
    }
    return outcome;
}

static S3UrlStatus_t ParseAccepted(S3UrlClient_t *client, const char *payload, size_t length)
{
    const char *value = NULL;
    size_t valueLength = 0;
    int64_t number = 0;
    S3UrlStatus_t status = S3_URL_SUCCESS;
    const char *method = operationNames[client->operation];

    if (!SearchString(payload, length, "method", &value, &valueLength) || valueLength != strlen(method) ||
        memcmp(value, method, valueLength) != 0) {
        Platform_Log(PLATFORM_LOG_WARN, "S3: accepted reply without method %s: ignored", method);
        return S3_URL_MALFORMED;
    }
    if (!SearchString(payload, length, "url", &value, &valueLength)) {
        Platform_Log(PLATFORM_LOG_WARN, "S3: accepted reply without url: ignored");
        return S3_URL_MALFORMED;
    }
    status = Unescape(value, valueLength, client->url, sizeof(client->url), &client->urlLength);
    if (status == S3_URL_TOO_LONG) {
        Platform_Log(PLATFORM_LOG_ERROR, "S3: URL longer than S3_URL_MAX_LENGTH (%u): raise it in buffer_config.h",
                     (unsigned)S3_URL_MAX_LENGTH);
        return status;
    }
    if (status != S3_URL_SUCCESS || strncmp(client->url, "https://", 8U) != 0) {
        Platform_Log(PLATFORM_LOG_WARN, "S3: accepted reply whose url is not an https URL of printable ASCII: ignored");
        return S3_URL_MALFORMED;
    }
    if (!SearchString(payload, length, "key", &value, &valueLength)) {
        return S3_URL_MALFORMED;
    }
    status = Unescape(value, valueLength, client->key, sizeof(client->key), NULL);
    if (status != S3_URL_SUCCESS) {
        return status;
    }
    if ((client->operation == S3_URL_OPERATION_GET_FLEET) !=
        (strncmp(client->key, S3_URL_FLEET_KEY_PREFIX, strlen(S3_URL_FLEET_KEY_PREFIX)) == 0)) {
        Platform_Log(PLATFORM_LOG_WARN, "S3: accepted reply for key %s, not of the scope asked for: ignored", client->key);
        return S3_URL_MALFORMED;
    }
    if (!SearchInteger(payload, length, "expiresAt", &number)) {
        return S3_URL_MALFORMED;
    }
    client->expiresAt = number;
    if (client->operation == S3_URL_OPERATION_PUT) {
        /* The length is signed into the URL: a URL for another length would be refused by S3 anyway. */
        if (!SearchInteger(payload, length, "contentLength", &number) || number != (int64_t)client->contentLength) {
            Platform_Log(PLATFORM_LOG_WARN, "S3: accepted PUT URL not signed for the %lu bytes asked for: ignored",
                         (unsigned long)client->contentLength);
            return S3_URL_MALFORMED;
        }
    }
    return S3_URL_SUCCESS;
}

S3UrlStatus_t S3UrlRequest_ParseReply(S3UrlClient_t *client, bool accepted, const char *payload, size_t length)
{
    const char *value = NULL;
    size_t valueLength = 0;
    if (client == NULL || payload == NULL) {
        return S3_URL_BAD_PARAMETER;
    }
    if (!client->pending) {
        return S3_URL_NOT_PENDING;
    }
    if (JSON_Validate(payload, length) != JSONSuccess) {
        Platform_Log(PLATFORM_LOG_WARN, "S3: reply of %lu bytes is not JSON: ignored", (unsigned long)length);
        return S3_URL_MALFORMED;
    }
    /* Only the answer to the request in flight counts; another one (a late answer) is left alone. */
    if (!SearchString(payload, length, "clientToken", &value, &valueLength) || valueLength != strlen(client->token) ||
        memcmp(value, client->token, valueLength) != 0) {
        return S3_URL_WRONG_TOKEN;
    }
    if (!accepted) {
        if (SearchString(payload, length, "reason", &value, &valueLength)) {
            /* Cut, not refused: the reason is only logged. */
            size_t n = (valueLength < sizeof(client->reason) - 1U) ? valueLength : sizeof(client->reason) - 1U;
            memcpy(client->reason, value, n);
            client->reason[n] = '\0';
        } else {
            (void)snprintf(client->reason, sizeof(client->reason), "(no reason given)");
        }
        return Finish(client, S3_URL_REJECTED);
    }
    return Finish(client, ParseAccepted(client, payload, length));
}

S3UrlStatus_t S3UrlRequest_HandlePublish(S3UrlClient_t *client, const MQTTPublishInfo_t *publish)
{
    if (client == NULL || publish == NULL) {
        return S3_URL_BAD_PARAMETER;
    }
    bool accepted = publish->topicNameLength == client->acceptedTopicLength &&
                    memcmp(publish->pTopicName, client->acceptedTopic, publish->topicNameLength) == 0;
    bool rejected = publish->topicNameLength == client->rejectedTopicLength &&
                    memcmp(publish->pTopicName, client->rejectedTopic, publish->topicNameLength) == 0;
    if (!accepted && !rejected) {
        return S3_URL_NOT_FOR_US;
    }
    return S3UrlRequest_ParseReply(client, accepted, publish->pPayload, publish->payloadLength);
}

bool S3UrlRequest_TakeAnswer(S3UrlClient_t *client, S3UrlStatus_t *outcome)
{
    if (client == NULL || outcome == NULL || !client->answered) {
        return false;
    }
    client->answered = false;
    *outcome = client->outcome;
    return true;
}

void S3UrlRequest_Cancel(S3UrlClient_t *client)
{
    if (client != NULL) {
        client->pending = false;
        client->answered = false;
    }
}

const char *S3UrlRequest_StatusString(S3UrlStatus_t status)
{
    switch (status) {
    case S3_URL_SUCCESS:
        return "success";
    case S3_URL_BAD_PARAMETER:
        return "bad parameter";
    case S3_URL_NOT_FOR_US:
        return "not for us";
    case S3_URL_NOT_PENDING:
        return "no request in flight";
    case S3_URL_WRONG_TOKEN:
        return "answer to another request";
    case S3_URL_MALFORMED:
        return "malformed reply";
    case S3_URL_TOO_LONG:
        return "URL or key too long for the device's buffers";
    case S3_URL_REJECTED:
        return "rejected";
    case S3_URL_MQTT_FAILURE:
        return "MQTT failure";
    default:
        return "unknown";
    }
}
