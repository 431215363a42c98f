/*
 * Connection manager: one MQTT session over the verified TLS transport, with reconnects paced by
 * backoffAlgorithm (exponential backoff, full jitter, bounded by retry_policy.h).
 *
 * With JITR the first connection after boot is expected to fail: AWS IoT registers the new certificate as
 * PENDING_ACTIVATION and closes the connection, the Lambda activates it, and a later attempt succeeds. Every
 * failure is logged with the stage that failed (DNS, TCP, TLS, MQTT CONNACK). Attempts are driven by the
 * event loop: Connection_Attempt does one attempt; Connection_NextRetryDelay says when to try again.
 *
 * The backoff is not reset by a CONNACK but by a session that stayed up RETRY_STABLE_SESSION_MS: drops right
 * after CONNACK escalate the delay like failed attempts and are logged with their likely causes. Whatever the
 * jitter draws, two attempts are at least RETRY_MIN_CONNECT_INTERVAL_MS apart (AWS IoT: one CONNECT per second
 * per client id).
 */
#ifndef MQTT_CONNECTION_H
#define MQTT_CONNECTION_H

#include <stdbool.h>
#include <stdint.h>

#include "backoff_algorithm.h"
#include "core_mqtt.h"
#include "identity.h"
#include "tls_transport.h"

/** @brief Result of a connection call, naming the stage that failed. */
typedef enum ConnectionStatus {
    CONNECTION_SUCCESS = 0,
    CONNECTION_BAD_PARAMETER,
    CONNECTION_NOT_READY,          /**< Network or device authentication not ready yet. */
    CONNECTION_DNS_FAILURE,
    CONNECTION_TCP_FAILURE,
    CONNECTION_TLS_FAILURE,        /**< Credentials or handshake. */
    CONNECTION_MQTT_FAILURE,       /**< No CONNACK, or CONNACK refused (JITR closes the first connection here). */
    CONNECTION_RETRIES_EXHAUSTED   /**< The policy's attempts are used up. */
} ConnectionStatus_t;

/** @brief What the connection manager needs; strings must outlive the connection. */
typedef struct ConnectionConfig {
    const char *host;         /**< AWS IoT data endpoint. */
    uint16_t port;            /**< 8883, or 443 with ALPN x-amzn-mqtt-ca. */
    const char *clientId;     /**< Thing name = device ID. */
    uint16_t keepAliveSeconds;
    MQTTEventCallback_t eventCallback; /**< Only parses and sets flags (never calls back into the library). */
    MQTTGetCurrentTimeFunc_t getTimeMs; /**< Clock for the retry rules; NULL: Platform_GetTimeMs. */
} ConnectionConfig_t;

/** @brief Connection state; caller-owned, static in main. */
typedef struct Connection {
    ConnectionConfig_t config;
    NetworkContext_t network;
    MQTTContext_t mqtt;
    MQTTFixedBuffer_t buffer;
    BackoffAlgorithmContext_t backoff;
    uint32_t attempts;       /**< Attempts since the backoff was last reset. */
    bool connected;
    bool everConnected;      /**< To tell the expected JITR rejection from a real failure in logs. */
    bool attempted;          /**< lastAttemptMs is set. */
    uint32_t lastAttemptMs;  /**< When the last attempt started (CONNECT rate limit). */
    uint32_t connectedAtMs;  /**< When the current session got its CONNACK. */
    uint32_t shortDrops;     /**< Sessions in a row dropped before RETRY_STABLE_SESSION_MS. */
} Connection_t;

/**
 * @brief Initialise the connection manager (no I/O).
 * @return CONNECTION_SUCCESS or CONNECTION_BAD_PARAMETER.
 */
ConnectionStatus_t Connection_Init(Connection_t *connection, const ConnectionConfig_t *config);

/**
 * @brief One attempt: TCP, verified TLS with the current DeviceAuth certificate, MQTT CONNECT/CONNACK.
 * @param[out] sessionPresent Whether the broker kept a session; may be NULL.
 * @return CONNECTION_SUCCESS or the stage that failed.
 */
ConnectionStatus_t Connection_Attempt(Connection_t *connection, bool *sessionPresent);

/**
 * @brief The delay before the next attempt (full jitter from backoffAlgorithm).
 * @param[out] delayMs Milliseconds to wait.
 * @return CONNECTION_SUCCESS, or CONNECTION_RETRIES_EXHAUSTED when the policy is used up.
 */
ConnectionStatus_t Connection_NextRetryDelay(Connection_t *connection, uint32_t *delayMs);

/**
 * @brief The session was lost (process loop or publish failed): close it and decide on the backoff. A session
 *        that lasted RETRY_STABLE_SESSION_MS resets it; a shorter one counts as a failed attempt (the delay
 *        grows) and is logged with the likely causes.
 * @return How long the session lasted, in milliseconds (0 when it was not connected).
 */
uint32_t Connection_HandleDrop(Connection_t *connection);

/** @brief Send DISCONNECT when connected, close TLS and TCP. Safe when closed. */
void Connection_Close(Connection_t *connection);

/** @brief A short description of a status, for logs. */
const char *Connection_StatusString(ConnectionStatus_t status);

/** @brief Whether the session is up (CONNACK received, not dropped since). */
bool Connection_IsConnected(const Connection_t *connection);

/** @brief The MQTT context of the connection, for the modules that subscribe and publish on it. */
MQTTContext_t *Connection_Mqtt(Connection_t *connection);

/** @brief Attempts since the backoff was last reset (for the log). */
uint32_t Connection_Attempts(const Connection_t *connection);

#endif /* MQTT_CONNECTION_H */
