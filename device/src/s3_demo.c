/* The S3 demo sequence: see s3_demo.h. */
#include "s3_demo.h"

#include <stdio.h>
#include <string.h>

#include "platform.h"
#include "retry_policy.h"
#include "s3_transfer.h"

_Static_assert(S3_DEMO_RETRY_MAX_DELAY_MS / RETRY_BACKOFF_UNIT_MS <= 65535U,
               "S3_DEMO_RETRY_MAX_DELAY_MS must fit backoffAlgorithm");

/** @brief The next step right away (the timer needs a delay of at least 1 ms to fire). */
#define S3_DEMO_NOW_MS 1U

S3DemoStatus_t S3Demo_Init(S3Demo_t *demo, const char *topicRoot, const char *thingName, const char *fleetUrl,
                           bool enabled)
{
    if (demo == NULL || thingName == NULL) {
        return S3_DEMO_BAD_PARAMETER;
    }
    memset(demo, 0, sizeof(*demo));
    if (S3UrlRequest_Init(&demo->urls, topicRoot, thingName) != S3_URL_SUCCESS) {
        return S3_DEMO_BAD_PARAMETER;
    }
    int length = snprintf((char *)demo->object, sizeof(demo->object), "hello from %s\n", thingName);
    demo->objectLength = (length > 0 && (size_t)length < sizeof(demo->object)) ? (size_t)length : 0U;
    demo->fleetUrl = fleetUrl;
    if (fleetUrl != NULL && !S3Demo_FleetObjectName(fleetUrl, demo->fleetName, sizeof(demo->fleetName))) {
        Platform_Log(PLATFORM_LOG_WARN, "S3: the fleet URL names no object under " S3_URL_FLEET_KEY_PREFIX
                                        ": no runtime URL can replace it when it expires");
        demo->fleetName[0] = '\0';
    }
    BackoffAlgorithm_InitializeParams(&demo->backoff, (uint16_t)(S3_DEMO_RETRY_BASE_DELAY_MS / RETRY_BACKOFF_UNIT_MS),
                                      (uint16_t)(S3_DEMO_RETRY_MAX_DELAY_MS / RETRY_BACKOFF_UNIT_MS),
                                      S3_DEMO_RETRY_MAX_ATTEMPTS);
    demo->step = enabled ? S3_DEMO_REQUEST_PUT : S3_DEMO_DONE;
    return S3_DEMO_SUCCESS;
}

S3DemoStatus_t S3Demo_Subscribe(S3Demo_t *demo, MQTTContext_t *mqtt)
{
    if (demo == NULL || mqtt == NULL) {
        return S3_DEMO_BAD_PARAMETER;
    }
    return (S3UrlRequest_Subscribe(&demo->urls, mqtt) == S3_URL_SUCCESS) ? S3_DEMO_SUCCESS : S3_DEMO_MQTT_FAILURE;
}

bool S3Demo_HandlePublish(S3Demo_t *demo, const MQTTPublishInfo_t *publish)
{
    return (demo != NULL) && S3UrlRequest_HandlePublish(&demo->urls, publish) != S3_URL_NOT_FOR_US;
}

bool S3Demo_IsDone(const S3Demo_t *demo)
{
    return (demo == NULL) || demo->step == S3_DEMO_DONE;
}

bool S3Demo_FleetObjectName(const char *url, char *name, size_t nameSize)
{
    static const char marker[] = "/" S3_URL_FLEET_KEY_PREFIX;
    if (url == NULL || name == NULL || nameSize == 0U || strncmp(url, "https://", 8U) != 0) {
        return false;
    }
    name[0] = '\0';
    const char *path = strchr(url + 8U, '/');
    if (path == NULL) {
        return false;
    }
    size_t pathLength = strcspn(path, "?#");
    /* Virtual-hosted (/fleet/...) or path-style (/<bucket>/fleet/...): the first fleet/ level names the object. */
    const char *found = NULL;
    for (const char *p = path; p + sizeof(marker) - 1U <= path + pathLength; p++) {
        if (strncmp(p, marker, sizeof(marker) - 1U) == 0) {
            found = p + sizeof(marker) - 1U;
            break;
        }
    }
    if (found == NULL) {
        return false;
    }
    size_t length = pathLength - (size_t)(found - path);
    if (length == 0U || length >= nameSize) {
        return false;
    }
    memcpy(name, found, length);
    name[length] = '\0';
    if (!S3UrlRequest_IsValidName(name)) {
        name[0] = '\0';
        return false;
    }
    return true;
}

/*
 * An attempt failed (rejected, no answer, refused transfer): ask again for the same object after a backoff with
 * full jitter, or give the sequence up after S3_DEMO_RETRY_MAX_ATTEMPTS. Never exits: MQTT keeps running.
 */
static uint32_t Retry(S3Demo_t *demo, const char *why)
{
    uint32_t random = 0;
    uint16_t delayUnits = 0;
    switch (demo->step) {
    case S3_DEMO_REQUEST_GET:
    case S3_DEMO_WAIT_GET:
        demo->step = S3_DEMO_REQUEST_GET;
        break;
    case S3_DEMO_REQUEST_FLEET:
    case S3_DEMO_WAIT_FLEET:
        demo->step = S3_DEMO_REQUEST_FLEET;
        break;
    default:
        demo->step = S3_DEMO_REQUEST_PUT;
        break;
    }
    if (Platform_GetRandom(&random, sizeof(random)) != PLATFORM_SUCCESS ||
        BackoffAlgorithm_GetNextBackoff(&demo->backoff, random, &delayUnits) != BackoffAlgorithmSuccess) {
        Platform_Log(PLATFORM_LOG_ERROR,
                     "S3: %s; giving the S3 step up after %u attempts (MQTT keeps running): check the presign "
                     "function's logs and its dead-letter queue",
                     why, S3_DEMO_RETRY_MAX_ATTEMPTS + 1U);
        demo->step = S3_DEMO_DONE;
        return 0U;
    }
    uint32_t delayMs = (uint32_t)delayUnits * RETRY_BACKOFF_UNIT_MS;
    Platform_Log(PLATFORM_LOG_WARN, "S3: %s; new URL request in %lu ms", why, (unsigned long)delayMs);
    return (delayMs == 0U) ? S3_DEMO_NOW_MS : delayMs;
}

/* Reads the fleet file with url; returns when to step again (0: done). */
static uint32_t ReadFleetFile(S3Demo_t *demo, const char *url, bool baked)
{
    size_t objectSize = 0;
    memset(demo->readBack, 0, sizeof(demo->readBack));
    S3Status_t status = S3Transfer_Download(url, demo->readBack, sizeof(demo->readBack) - 1U, &objectSize);
    if (status == S3_SUCCESS) {
        Platform_Log(PLATFORM_LOG_INFO, "S3: fleet file (%s URL): %.*s", baked ? "baked" : "runtime", (int)objectSize,
                     (const char *)demo->readBack);
        demo->step = S3_DEMO_DONE;
        return 0U;
    }
    if (status == S3_FORBIDDEN && baked && demo->fleetName[0] != '\0') {
        Platform_Log(PLATFORM_LOG_WARN, "S3: the image's fleet URL was refused (expired): asking for a runtime URL");
        demo->step = S3_DEMO_REQUEST_FLEET;
        return S3_DEMO_NOW_MS;
    }
    if (status == S3_FORBIDDEN && !baked) {
        return Retry(demo, "fleet file download refused (403: the URL expired)");
    }
    Platform_Log(PLATFORM_LOG_WARN, "S3: fleet file not read (see above): carrying on without it");
    demo->step = S3_DEMO_DONE;
    return 0U;
}

/* Acts on the answer to the URL request in flight: transfer with the URL, or retry. Returns the next delay. */
static uint32_t UseUrl(S3Demo_t *demo, S3UrlStatus_t outcome)
{
    size_t objectSize = 0;
    const S3UrlClient_t *urls = &demo->urls;
    if (demo->step == S3_DEMO_WAIT_FLEET && outcome != S3_URL_SUCCESS) {
        /* A refusal, or a URL for another key, is the service's answer, not a transient failure: asking again would
         * get the same (a presign function older than the fleet scope ignores it and signs devices/<thing>/<name>). */
        Platform_Log(PLATFORM_LOG_WARN, "S3: no runtime URL for the fleet file (%s%s%s): carrying on without it",
                     S3UrlRequest_StatusString(outcome), (outcome == S3_URL_REJECTED) ? ": " : "",
                     (outcome == S3_URL_REJECTED) ? urls->reason : "");
        demo->step = S3_DEMO_DONE;
        return 0U;
    }
    if (outcome == S3_URL_REJECTED) {
        Platform_Log(PLATFORM_LOG_WARN, "S3: URL request rejected: %s", urls->reason);
        return Retry(demo, "URL request rejected");
    }
    if (outcome != S3_URL_SUCCESS) {
        return Retry(demo, S3UrlRequest_StatusString(outcome));
    }
    Platform_Log(PLATFORM_LOG_INFO, "S3: runtime %s URL for %s, expires at %lld",
                 demo->step == S3_DEMO_WAIT_PUT ? "PUT" : "GET", urls->key, (long long)urls->expiresAt);
    switch (demo->step) {
    case S3_DEMO_WAIT_PUT: {
        S3Status_t status = S3Transfer_Upload(urls->url, demo->object, demo->objectLength);
        if (status != S3_SUCCESS) {
            return Retry(demo, (status == S3_FORBIDDEN) ? "upload refused (403: the URL expired)" : "upload failed");
        }
        Platform_Log(PLATFORM_LOG_INFO, "S3: uploaded %lu bytes to %s with the runtime PUT URL",
                     (unsigned long)demo->objectLength, urls->key);
        demo->step = S3_DEMO_REQUEST_GET;
        return S3_DEMO_NOW_MS;
    }
    case S3_DEMO_WAIT_GET: {
        memset(demo->readBack, 0, sizeof(demo->readBack));
        S3Status_t status = S3Transfer_Download(urls->url, demo->readBack, sizeof(demo->readBack) - 1U, &objectSize);
        if (status != S3_SUCCESS) {
            return Retry(demo, (status == S3_FORBIDDEN) ? "download refused (403: the URL expired)" : "download failed");
        }
        if (objectSize != demo->objectLength || memcmp(demo->readBack, demo->object, objectSize) != 0) {
            return Retry(demo, "downloaded object differs from the upload");
        }
        Platform_Log(PLATFORM_LOG_INFO, "S3: read back %s with the runtime GET URL: %.*s", urls->key, (int)objectSize,
                     (const char *)demo->readBack);
        demo->step = (demo->fleetUrl != NULL) ? S3_DEMO_FLEET : S3_DEMO_DONE;
        return (demo->step == S3_DEMO_DONE) ? 0U : S3_DEMO_NOW_MS;
    }
    case S3_DEMO_WAIT_FLEET:
        return ReadFleetFile(demo, urls->url, false);
    default:
        return 0U;
    }
}

/* Publishes the request of the current REQUEST_* step. */
static S3DemoStatus_t Request(S3Demo_t *demo, MQTTContext_t *mqtt, uint32_t *nextStepMs)
{
    S3UrlOperation_t operation = S3_URL_OPERATION_PUT;
    const char *name = S3_DEMO_OBJECT_NAME;
    uint32_t contentLength = 0U;
    S3DemoStep_t wait = S3_DEMO_WAIT_PUT;
    if (demo->step == S3_DEMO_REQUEST_PUT) {
        contentLength = (uint32_t)demo->objectLength;
    } else if (demo->step == S3_DEMO_REQUEST_GET) {
        operation = S3_URL_OPERATION_GET;
        wait = S3_DEMO_WAIT_GET;
    } else {
        operation = S3_URL_OPERATION_GET_FLEET;
        name = demo->fleetName;
        wait = S3_DEMO_WAIT_FLEET;
    }
    S3UrlStatus_t status = S3UrlRequest_Send(&demo->urls, mqtt, operation, name, contentLength);
    if (status == S3_URL_MQTT_FAILURE) {
        return S3_DEMO_MQTT_FAILURE;
    }
    if (status != S3_URL_SUCCESS) {
        Platform_Log(PLATFORM_LOG_ERROR, "S3: cannot build the URL request (%s): S3 step skipped",
                     S3UrlRequest_StatusString(status));
        demo->step = S3_DEMO_DONE;
        return S3_DEMO_SUCCESS;
    }
    demo->step = wait;
    demo->waitStartMs = Platform_GetTimeMs();
    *nextStepMs = S3_DEMO_POLL_MS;
    return S3_DEMO_SUCCESS;
}

S3DemoStatus_t S3Demo_Step(S3Demo_t *demo, MQTTContext_t *mqtt, uint32_t *nextStepMs)
{
    S3UrlStatus_t outcome = S3_URL_NOT_PENDING;
    if (demo == NULL || mqtt == NULL || nextStepMs == NULL) {
        return S3_DEMO_BAD_PARAMETER;
    }
    *nextStepMs = 0U;
    switch (demo->step) {
    case S3_DEMO_REQUEST_PUT:
    case S3_DEMO_REQUEST_GET:
    case S3_DEMO_REQUEST_FLEET:
        return Request(demo, mqtt, nextStepMs);
    case S3_DEMO_WAIT_PUT:
    case S3_DEMO_WAIT_GET:
    case S3_DEMO_WAIT_FLEET:
        if (S3UrlRequest_TakeAnswer(&demo->urls, &outcome)) {
            *nextStepMs = UseUrl(demo, outcome);
        } else if (Platform_GetTimeMs() - demo->waitStartMs >= S3_DEMO_URL_REPLY_TIMEOUT_MS) {
            S3UrlRequest_Cancel(&demo->urls);
            *nextStepMs = Retry(demo, "no answer to the URL request within 10 s");
        } else {
            *nextStepMs = S3_DEMO_POLL_MS;
        }
        return S3_DEMO_SUCCESS;
    case S3_DEMO_FLEET:
        *nextStepMs = ReadFleetFile(demo, demo->fleetUrl, true);
        return S3_DEMO_SUCCESS;
    case S3_DEMO_DONE:
    default:
        return S3_DEMO_SUCCESS;
    }
}

void S3Demo_OnConnectionLost(S3Demo_t *demo)
{
    if (demo == NULL) {
        return;
    }
    S3UrlRequest_Cancel(&demo->urls);
    if (demo->step == S3_DEMO_WAIT_PUT) {
        demo->step = S3_DEMO_REQUEST_PUT;
    } else if (demo->step == S3_DEMO_WAIT_GET) {
        demo->step = S3_DEMO_REQUEST_GET;
    } else if (demo->step == S3_DEMO_WAIT_FLEET) {
        demo->step = S3_DEMO_REQUEST_FLEET;
    }
}
