/*
 * Asking for runtime S3 URLs over MQTT (the transfer itself is s3_transfer's). The device asks the stack's presign function for a short-lived presigned URL of an
 * object under its own prefix (devices/<thing>/<name>): it publishes
 *   {"operation":"PUT","name":"hello.txt","contentLength":42,"clientToken":"…"}   (or GET, without a length)
 * on <root>/<thing>/s3/url, and the answer comes on <root>/<thing>/s3/url/accepted
 *   {"clientToken":"…","url":"https://…","method":"PUT","key":"devices/<thing>/hello.txt","contentLength":42,
 *    "expiresAt":1700000000}
 * or on …/rejected {"clientToken":"…","reason":"…"} (internal/contract, S3URLRequest and S3URLReply). A reply is
 * taken only when its clientToken is the one of the request in flight, so a late answer to an earlier request is
 * ignored. A GET of a fleet-wide object (fleet/<name>, the file the image also has a baked URL for) adds
 * "scope":"fleet"; the answer's key is then fleet/<name>. The request is built from checked parts (the name's character set needs no JSON escaping) and checked
 * with coreJSON's validator; replies are parsed with coreJSON. No malloc: the client and its URL are caller-owned.
 */
#ifndef S3_URL_REQUEST_H
#define S3_URL_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buffer_config.h"
#include "core_mqtt.h"

/** @brief Request topic leaf under <root>/<thing>/ (contract.S3URLTopicSuffix). */
#define S3_URL_TOPIC_SUFFIX "s3/url"
/** @brief Leaf of the reply topics under the request topic (contract.ReplyAccepted, contract.ReplyRejected). */
#define S3_URL_REPLY_ACCEPTED "accepted"
#define S3_URL_REPLY_REJECTED "rejected"
/** @brief Scope of a request for a fleet-wide object, and the prefix of its key. */
#define S3_URL_SCOPE_FLEET "fleet"
#define S3_URL_FLEET_KEY_PREFIX S3_URL_SCOPE_FLEET "/"

/** @brief Client token buffer: "s3-" and eight hex digits, NUL-terminated. */
#define S3_URL_TOKEN_SIZE 12U

/** @brief Result of an S3 URL call. */
typedef enum S3UrlStatus {
    S3_URL_SUCCESS = 0,      /**< Done; for a reply: an accepted URL is ready in the client. */
    S3_URL_BAD_PARAMETER,    /**< NULL argument, bad name (charset, length, ".." segment), bad length. */
    S3_URL_NOT_FOR_US,       /**< A publish on another topic. */
    S3_URL_NOT_PENDING,      /**< A reply while no request is in flight: ignored. */
    S3_URL_WRONG_TOKEN,      /**< A reply to another request (clientToken differs): ignored. */
    S3_URL_MALFORMED,        /**< Not JSON, a missing or wrong field (method, key, length, URL not https). */
    S3_URL_TOO_LONG,         /**< A URL or key longer than the device's buffers (S3_URL_MAX_LENGTH). */
    S3_URL_REJECTED,         /**< The function refused the request; the reason is in the client. */
    S3_URL_MQTT_FAILURE      /**< Subscribe or publish failed. */
} S3UrlStatus_t;

/** @brief What the URL is for. */
typedef enum S3UrlOperation {
    S3_URL_OPERATION_PUT = 0, /**< PUT of devices/<thing>/<name>. */
    S3_URL_OPERATION_GET,     /**< GET of devices/<thing>/<name>. */
    S3_URL_OPERATION_GET_FLEET /**< GET of fleet/<name> (read-only, the same object for every device). */
} S3UrlOperation_t;

/** @brief Topics of the thing and the request in flight; caller-owned (it holds the URL: keep it static). */
typedef struct S3UrlClient {
    char requestTopic[TOPIC_BUFFER_SIZE];
    uint16_t requestTopicLength;
    char acceptedTopic[TOPIC_BUFFER_SIZE];
    uint16_t acceptedTopicLength;
    char rejectedTopic[TOPIC_BUFFER_SIZE];
    uint16_t rejectedTopicLength;
    uint32_t requestCount;            /**< Source of the client tokens. */
    char token[S3_URL_TOKEN_SIZE];    /**< clientToken of the request in flight. */
    bool pending;                     /**< A request is in flight and not answered yet. */
    S3UrlOperation_t operation;       /**< Operation of the request in flight. */
    uint32_t contentLength;           /**< PUT: the length asked for. */
    bool answered;                    /**< Set by the callback when the answer arrived; S3UrlRequest_TakeAnswer clears it. */
    S3UrlStatus_t outcome;            /**< That answer: S3_URL_SUCCESS, S3_URL_REJECTED or why it was unusable. */
    char url[S3_URL_MAX_LENGTH + 1U]; /**< Accepted URL, unescaped, NUL-terminated. */
    size_t urlLength;
    char key[S3_URL_KEY_MAX_LENGTH + 1U]; /**< Object key the URL is for. */
    int64_t expiresAt;                /**< Unix seconds. */
    char reason[S3_URL_REASON_SIZE];  /**< Rejection reason (cut to fit), NUL-terminated. */
} S3UrlClient_t;

/**
 * @brief Build the request and reply topics of a thing.
 * @param[out] client Client to initialise.
 * @param[in] topicRoot Topic root (DEVICE_TOPIC_ROOT).
 * @param[in] thingName The device's thing name.
 * @return S3_URL_SUCCESS or S3_URL_BAD_PARAMETER (bad root or thing name, topics too long).
 */
S3UrlStatus_t S3UrlRequest_Init(S3UrlClient_t *client, const char *topicRoot, const char *thingName);

/**
 * @brief Subscribe (QoS 1) to the accepted and rejected topics. Call before the first request.
 * @return S3_URL_SUCCESS or S3_URL_MQTT_FAILURE.
 */
S3UrlStatus_t S3UrlRequest_Subscribe(S3UrlClient_t *client, MQTTContext_t *mqtt);

/**
 * @brief Check an object name as the presign function does: 1..S3_URL_NAME_MAX_LENGTH bytes of letters, digits
 *        and . _ - /, no empty, "." or ".." segment (so no leading or trailing '/').
 * @return true when the function would accept it.
 */
bool S3UrlRequest_IsValidName(const char *name);

/**
 * @brief Start a new request: a new client token, and the JSON payload written into @p buffer. Any earlier request
 *        is forgotten (its late answer will carry another token).
 * @param[in,out] client Client.
 * @param[in] operation PUT, GET, or GET of a fleet-wide object.
 * @param[in] name Object name under devices/<thing>/ (fleet/ for S3_URL_OPERATION_GET_FLEET).
 * @param[in] contentLength PUT: the exact byte count (1..UINT32_MAX); GET: 0.
 * @param[out] buffer Payload, NUL-terminated.
 * @param[in] bufferSize Size of buffer.
 * @param[out] length Payload length without the NUL.
 * @return S3_URL_SUCCESS or S3_URL_BAD_PARAMETER (bad name or length, buffer too small).
 */
S3UrlStatus_t S3UrlRequest_Build(S3UrlClient_t *client, S3UrlOperation_t operation, const char *name,
                                 uint32_t contentLength, char *buffer, size_t bufferSize, size_t *length);

/**
 * @brief Build a request and publish it (QoS 1) on the request topic.
 * @return S3_URL_SUCCESS, S3_URL_BAD_PARAMETER or S3_URL_MQTT_FAILURE.
 */
S3UrlStatus_t S3UrlRequest_Send(S3UrlClient_t *client, MQTTContext_t *mqtt, S3UrlOperation_t operation, const char *name,
                            uint32_t contentLength);

/**
 * @brief Parse an answer to the request in flight. An accepted one must carry the request's token, an https URL of
 *        at most S3_URL_MAX_LENGTH bytes, the request's method, a key and, for a PUT, the length asked for; a
 *        rejected one the token and a reason. An answer to the request in flight (right token) ends it: answered
 *        and outcome are set, whatever the outcome.
 * @param[in,out] client Client.
 * @param[in] accepted true for the accepted topic, false for the rejected one.
 * @param[in] payload JSON document (not NUL-terminated).
 * @param[in] length Its length.
 * @return S3_URL_SUCCESS (URL ready), S3_URL_REJECTED, S3_URL_NOT_PENDING, S3_URL_WRONG_TOKEN (ignored),
 *         S3_URL_MALFORMED or S3_URL_TOO_LONG.
 */
S3UrlStatus_t S3UrlRequest_ParseReply(S3UrlClient_t *client, bool accepted, const char *payload, size_t length);

/**
 * @brief From the MQTT callback: route a publish on the accepted or rejected topic to S3UrlRequest_ParseReply. Only
 *        parses and sets flags; the event loop takes the answer with S3UrlRequest_TakeAnswer.
 * @return S3_URL_NOT_FOR_US for other topics, else as S3UrlRequest_ParseReply.
 */
S3UrlStatus_t S3UrlRequest_HandlePublish(S3UrlClient_t *client, const MQTTPublishInfo_t *publish);

/**
 * @brief From the event loop: take the answer to the request in flight, once.
 * @param[in,out] client Client.
 * @param[out] outcome S3_URL_SUCCESS (client->url, client->key ready), S3_URL_REJECTED (client->reason) or why the
 *             answer was unusable.
 * @return true when an answer arrived since the last call (it is then taken), false while none has.
 */
bool S3UrlRequest_TakeAnswer(S3UrlClient_t *client, S3UrlStatus_t *outcome);

/**
 * @brief Forget the request in flight (timeout, lost connection): a late answer is then ignored.
 * @param[in,out] client Client.
 */
void S3UrlRequest_Cancel(S3UrlClient_t *client);

/** @brief A short name of a status for the log. */
const char *S3UrlRequest_StatusString(S3UrlStatus_t status);

#endif /* S3_URL_REQUEST_H */
