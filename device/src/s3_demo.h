/*
 * The S3 demo sequence, run once MQTT is up: ask for a PUT URL of devices/<thing>/hello.txt over MQTT
 * (s3_url_request), upload the object through it (s3_transfer), ask for a GET URL and read the object back, then
 * read the fleet-wide file once with the image's baked read-only URL. A rejection, no answer within
 * S3_DEMO_URL_REPLY_TIMEOUT_MS or a refused transfer (403: the URL expired) leads to a new request after a backoff
 * (full jitter, S3_DEMO_RETRY_BASE_DELAY_MS doubling to S3_DEMO_RETRY_MAX_DELAY_MS, S3_DEMO_RETRY_MAX_ATTEMPTS
 * retries, then the step is given up and logged: never an exit).
 *
 * The baked fleet URL expires (7 days at most) while an image may be rolled out for months: when S3 refuses it
 * (403), the device asks for a runtime URL of the same object over MQTT (a GET with "scope":"fleet") and reads the
 * file with that; a refusal of that request, or an answer for another key, ends the fleet step (asking again would
 * get the same answer). Any other failure of the fleet file (404: not uploaded) is logged and the app carries on.
 *
 * The event loop owns the timer: S3Demo_Step does one step and says when it wants the next one. The MQTT
 * callback only hands publishes to S3Demo_HandlePublish. No malloc: the demo state is caller-owned (static).
 */
#ifndef S3_DEMO_H
#define S3_DEMO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backoff_algorithm.h"
#include "core_mqtt.h"
#include "s3_url_request.h"

/** @brief Object moved through S3 (and buffer for the fleet file). */
#define S3_DEMO_BUFFER_SIZE 1536U
/** @brief Name of that object under devices/<thing>/. */
#define S3_DEMO_OBJECT_NAME "hello.txt"
/** @brief First step this long after the subscriptions were sent (their SUBACKs come first). */
#define S3_DEMO_START_DELAY_MS 1000U
/** @brief While a URL request is in flight, look for its answer this often. */
#define S3_DEMO_POLL_MS 100U
/** @brief No answer within this long (the function failed: its error went to the dead-letter queue): ask again. */
#define S3_DEMO_URL_REPLY_TIMEOUT_MS 10000U
/** @brief Ceiling of the first retry delay, and of every one (full jitter, backoffAlgorithm). */
#define S3_DEMO_RETRY_BASE_DELAY_MS 2000U
#define S3_DEMO_RETRY_MAX_DELAY_MS 60000U
/** @brief Attempts after the first before the step is given up (MQTT keeps running; a reboot tries again). */
#define S3_DEMO_RETRY_MAX_ATTEMPTS 8U

/** @brief Result of an S3 demo call. */
typedef enum S3DemoStatus {
    S3_DEMO_SUCCESS = 0,
    S3_DEMO_BAD_PARAMETER, /**< NULL argument, bad root or thing name. */
    S3_DEMO_MQTT_FAILURE   /**< Subscribe or publish failed: the connection is lost. */
} S3DemoStatus_t;

/** @brief Where the sequence is. */
typedef enum S3DemoStep {
    S3_DEMO_REQUEST_PUT = 0, /**< Ask for a PUT URL. */
    S3_DEMO_WAIT_PUT,        /**< Asked; upload once it comes. */
    S3_DEMO_REQUEST_GET,     /**< Ask for a GET URL. */
    S3_DEMO_WAIT_GET,        /**< Asked; download once it comes. */
    S3_DEMO_FLEET,           /**< Read the fleet-wide file with the image's baked URL. */
    S3_DEMO_REQUEST_FLEET,   /**< The baked URL was refused: ask for a runtime URL of the fleet file. */
    S3_DEMO_WAIT_FLEET,      /**< Asked; download once it comes. */
    S3_DEMO_DONE             /**< Done, or given up after S3_DEMO_RETRY_MAX_ATTEMPTS. */
} S3DemoStep_t;

/** @brief The sequence's state; caller-owned (keep it static: it holds the URL and the buffers). */
typedef struct S3Demo {
    S3UrlClient_t urls;
    S3DemoStep_t step;
    uint32_t waitStartMs;
    BackoffAlgorithmContext_t backoff;
    const char *fleetUrl;                      /**< Baked URL of the fleet file, or NULL: no fleet step. */
    char fleetName[S3_URL_NAME_MAX_LENGTH + 1U]; /**< Its name under fleet/, for a runtime URL; empty: none. */
    uint8_t object[S3_DEMO_BUFFER_SIZE];
    size_t objectLength;
    uint8_t readBack[S3_DEMO_BUFFER_SIZE];
} S3Demo_t;

/**
 * @brief Prepare the sequence for a thing.
 * @param[out] demo State to initialise.
 * @param[in] topicRoot Topic root (DEVICE_TOPIC_ROOT).
 * @param[in] thingName The device's thing name.
 * @param[in] fleetUrl Baked URL of the fleet file (S3_FLEET_GET_URL), or NULL to leave the fleet file out.
 * @param[in] enabled false leaves the whole sequence out (a broker with no presign function behind it).
 * @return S3_DEMO_SUCCESS or S3_DEMO_BAD_PARAMETER.
 */
S3DemoStatus_t S3Demo_Init(S3Demo_t *demo, const char *topicRoot, const char *thingName, const char *fleetUrl,
                           bool enabled);

/**
 * @brief Subscribe to the URL replies; call on every connection before the first step.
 * @return S3_DEMO_SUCCESS or S3_DEMO_MQTT_FAILURE.
 */
S3DemoStatus_t S3Demo_Subscribe(S3Demo_t *demo, MQTTContext_t *mqtt);

/**
 * @brief From the MQTT callback: take a URL reply. Only parses and sets flags.
 * @return true when the publish was on one of the demo's reply topics.
 */
bool S3Demo_HandlePublish(S3Demo_t *demo, const MQTTPublishInfo_t *publish);

/**
 * @brief From the event loop: one step of the sequence (a request, a transfer, or a look for the answer).
 * @param[in,out] demo State.
 * @param[in] mqtt The connected MQTT context.
 * @param[out] nextStepMs When to call again, in milliseconds (at least 1); 0 when no step is due (done).
 * @return S3_DEMO_SUCCESS, or S3_DEMO_MQTT_FAILURE when the request could not be published (connection lost).
 */
S3DemoStatus_t S3Demo_Step(S3Demo_t *demo, MQTTContext_t *mqtt, uint32_t *nextStepMs);

/**
 * @brief The connection dropped: a request in flight is asked again on the next connection (its late answer
 *        carries an old token and is ignored).
 */
void S3Demo_OnConnectionLost(S3Demo_t *demo);

/** @brief Whether the sequence is over (done, given up, or left out). */
bool S3Demo_IsDone(const S3Demo_t *demo);

/**
 * @brief The name under fleet/ of the object a presigned URL points at (path-style or virtual-hosted), e.g.
 *        "notice.txt" for https://bucket.s3.amazonaws.com/fleet/notice.txt?X-Amz-...
 * @param[in] url Presigned URL.
 * @param[out] name NUL-terminated name.
 * @param[in] nameSize Size of name.
 * @return true when the URL names an object under fleet/ whose name the presign function would accept.
 */
bool S3Demo_FleetObjectName(const char *url, char *name, size_t nameSize);

#endif /* S3_DEMO_H */
