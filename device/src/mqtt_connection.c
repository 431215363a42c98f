/* Connection manager: see mqtt_connection.h. */
#include "mqtt_connection.h"

#include <string.h>

#include "buffer_config.h"
#include "platform.h"
#include "retry_policy.h"

/** @brief How long to wait for CONNACK. */
#define CONNACK_TIMEOUT_MS 10000U
/** @brief Socket timeout of the transport. */
#define TRANSPORT_TIMEOUT_MS 10000U
/** @brief Transport_Recv waits this long for data: the process loop runs every 100 ms and must not stall it. */
#define TRANSPORT_RECV_WAIT_MS 20U

static uint8_t networkBuffer[MQTT_NETWORK_BUFFER_SIZE];
static MQTTPubAckInfo_t outgoingPublishRecords[MQTT_OUTGOING_PUBLISH_RECORDS];
static MQTTPubAckInfo_t incomingPublishRecords[MQTT_INCOMING_PUBLISH_RECORDS];

/* The SDK's transport interface is our transport's signature: checked here at compile time. */
static const TransportRecv_t transportRecv = Transport_Recv;
static const TransportSend_t transportSend = Transport_Send;

static void ResetBackoff(Connection_t *connection)
{
    const RetryPolicy_t policy = RETRY_POLICY_DEFAULT;
    BackoffAlgorithm_InitializeParams(&connection->backoff, (uint16_t)(policy.baseDelayMs / RETRY_BACKOFF_UNIT_MS),
                                      (uint16_t)(policy.maxDelayMs / RETRY_BACKOFF_UNIT_MS), policy.maxAttempts);
    connection->attempts = 0;
}

static uint32_t Now(const Connection_t *connection)
{
    return (connection->config.getTimeMs != NULL) ? connection->config.getTimeMs() : Platform_GetTimeMs();
}

ConnectionStatus_t Connection_Init(Connection_t *connection, const ConnectionConfig_t *config)
{
    const RetryPolicy_t policy = RETRY_POLICY_DEFAULT;
    if (connection == NULL || config == NULL || config->host == NULL || config->clientId == NULL ||
        config->eventCallback == NULL ||
        !RetryPolicy_IsValid(&policy, RETRY_MIN_EXPECTED_TOTAL_MS, RETRY_MAX_TOTAL_MS)) {
        return CONNECTION_BAD_PARAMETER;
    }
    memset(connection, 0, sizeof(*connection));
    connection->config = *config;
    Transport_Init(&connection->network);
    connection->buffer.pBuffer = networkBuffer;
    connection->buffer.size = sizeof(networkBuffer);
    ResetBackoff(connection);
    return CONNECTION_SUCCESS;
}

static ConnectionStatus_t FromTransport(TransportStatus_t status)
{
    switch (status) {
    case TRANSPORT_SUCCESS:
        return CONNECTION_SUCCESS;
    case TRANSPORT_DNS_FAILURE:
        return CONNECTION_DNS_FAILURE;
    case TRANSPORT_TCP_FAILURE:
        return CONNECTION_TCP_FAILURE;
    case TRANSPORT_BAD_PARAMETER:
        return CONNECTION_BAD_PARAMETER;
    default:
        return CONNECTION_TLS_FAILURE;
    }
}

static ConnectionStatus_t ConnectMqtt(Connection_t *connection, bool *sessionPresent)
{
    TransportInterface_t transport = {
        .recv = transportRecv, .send = transportSend, .writev = NULL, .pNetworkContext = &connection->network};
    MQTTStatus_t status = MQTT_Init(&connection->mqtt, &transport, Platform_GetTimeMs,
                                    connection->config.eventCallback, &connection->buffer);
    if (status == MQTTSuccess) {
        status = MQTT_InitStatefulQoS(&connection->mqtt, outgoingPublishRecords, MQTT_OUTGOING_PUBLISH_RECORDS,
                                      incomingPublishRecords, MQTT_INCOMING_PUBLISH_RECORDS);
    }
    if (status != MQTTSuccess) {
        Platform_Log(PLATFORM_LOG_ERROR, "MQTT: init failed: %s", MQTT_Status_strerror(status));
        return CONNECTION_MQTT_FAILURE;
    }
    MQTTConnectInfo_t connectInfo = {
        .cleanSession = true,
        .keepAliveSeconds = connection->config.keepAliveSeconds,
        .pClientIdentifier = connection->config.clientId,
        .clientIdentifierLength = (uint16_t)strlen(connection->config.clientId),
    };
    bool present = false;
    status = MQTT_Connect(&connection->mqtt, &connectInfo, NULL, CONNACK_TIMEOUT_MS, &present);
    if (status != MQTTSuccess) {
        Platform_Log(PLATFORM_LOG_WARN,
                     "MQTT CONNACK: %s from %s:%u%s", MQTT_Status_strerror(status), connection->config.host,
                     (unsigned)connection->config.port,
                     connection->everConnected
                         ? ""
                         : " (expected on the first connection of a new certificate: AWS IoT closes it while "
                           "just-in-time registration activates the certificate)");
        return CONNECTION_MQTT_FAILURE;
    }
    if (sessionPresent != NULL) {
        *sessionPresent = present;
    }
    return CONNECTION_SUCCESS;
}

ConnectionStatus_t Connection_Attempt(Connection_t *connection, bool *sessionPresent)
{
    PlatformCredentials_t credentials;
    if (connection == NULL || connection->connected) {
        return CONNECTION_BAD_PARAMETER;
    }
    PlatformStatus_t ready = Platform_IsNetworkReady();
    if (ready == PLATFORM_SUCCESS) {
        ready = Platform_IsDeviceAuthReady();
    }
    if (ready != PLATFORM_SUCCESS) {
        return CONNECTION_NOT_READY;
    }
    /* Fresh credentials every attempt: the DeviceAuth certificate renews. */
    if (Platform_GetCredentials(&credentials) != PLATFORM_SUCCESS) {
        return CONNECTION_TLS_FAILURE;
    }
    connection->attempts++;
    connection->attempted = true;
    connection->lastAttemptMs = Now(connection);
    TransportConfig_t transportConfig = {
        .host = connection->config.host,
        .port = connection->config.port,
        .rootCaPaths = credentials.rootCaPaths,
        .rootCaCount = PLATFORM_MAX_ROOT_CAS,
        .clientCertPath = credentials.clientCertPath,
        .clientKeyPath = credentials.clientKeyPath,
        .alpn = (connection->config.port == 443U) ? TRANSPORT_ALPN_AWS_MQTT : NULL,
        .timeoutMs = TRANSPORT_TIMEOUT_MS,
        .recvWaitMs = TRANSPORT_RECV_WAIT_MS,
    };
    Platform_Log(PLATFORM_LOG_INFO, "connecting to %s:%u as %.16s... (attempt %lu)", transportConfig.host,
                 (unsigned)transportConfig.port, connection->config.clientId, (unsigned long)connection->attempts);
    ConnectionStatus_t status = FromTransport(Transport_Connect(&connection->network, &transportConfig));
    if (status == CONNECTION_SUCCESS) {
        status = ConnectMqtt(connection, sessionPresent);
        if (status != CONNECTION_SUCCESS) {
            Transport_Disconnect(&connection->network);
        }
    }
    if (status != CONNECTION_SUCCESS) {
        Platform_Log(PLATFORM_LOG_WARN, "connection attempt %lu failed at stage %s",
                     (unsigned long)connection->attempts, Connection_StatusString(status));
        return status;
    }
    /* No backoff reset here: a CONNACK followed by a drop is no proof of health (see Connection_HandleDrop). */
    connection->connected = true;
    connection->everConnected = true;
    connection->connectedAtMs = Now(connection);
    Platform_Log(PLATFORM_LOG_INFO, "MQTT connected to %s:%u", transportConfig.host, (unsigned)transportConfig.port);
    return CONNECTION_SUCCESS;
}

uint32_t Connection_HandleDrop(Connection_t *connection)
{
    if (connection == NULL || !connection->connected) {
        Connection_Close(connection);
        return 0U;
    }
    uint32_t sessionMs = Now(connection) - connection->connectedAtMs;
    /* The session is gone: close the transport without writing a DISCONNECT into it. */
    connection->connected = false;
    Connection_Close(connection);
    if (RetryPolicy_SessionWasStable(sessionMs)) {
        connection->shortDrops = 0;
        ResetBackoff(connection);
        Platform_Log(PLATFORM_LOG_INFO, "session lasted %lu s: reconnecting with a fresh backoff",
                     (unsigned long)(sessionMs / 1000U));
    } else {
        connection->shortDrops++;
        Platform_Log(PLATFORM_LOG_WARN,
                     "session dropped %lu ms after CONNACK (%lu in a row): the backoff keeps growing. Likely causes: "
                     "the thing's IoT policy denies a publish or subscribe of this app, another connection uses "
                     "the same client id (%.16s...), or the certificate was deactivated or revoked",
                     (unsigned long)sessionMs, (unsigned long)connection->shortDrops, connection->config.clientId);
    }
    return sessionMs;
}

ConnectionStatus_t Connection_NextRetryDelay(Connection_t *connection, uint32_t *delayMs)
{
    uint32_t random = 0;
    uint16_t delay = 0;
    if (connection == NULL || delayMs == NULL) {
        return CONNECTION_BAD_PARAMETER;
    }
    if (Platform_GetRandom(&random, sizeof(random)) != PLATFORM_SUCCESS) {
        random = Platform_GetTimeMs();
    }
    if (BackoffAlgorithm_GetNextBackoff(&connection->backoff, random, &delay) != BackoffAlgorithmSuccess) {
        return CONNECTION_RETRIES_EXHAUSTED;
    }
    *delayMs = (uint32_t)delay * RETRY_BACKOFF_UNIT_MS;
    if (connection->attempted) {
        /* Counted from the start of the previous attempt: one CONNECT per second per client id at most. */
        *delayMs = RetryPolicy_ApplyConnectFloor(*delayMs, Now(connection) - connection->lastAttemptMs);
    }
    return CONNECTION_SUCCESS;
}

void Connection_Close(Connection_t *connection)
{
    if (connection == NULL) {
        return;
    }
    if (connection->connected) {
        (void)MQTT_Disconnect(&connection->mqtt);
        connection->connected = false;
    }
    Transport_Disconnect(&connection->network);
}

const char *Connection_StatusString(ConnectionStatus_t status)
{
    switch (status) {
    case CONNECTION_SUCCESS:
        return "none";
    case CONNECTION_BAD_PARAMETER:
        return "bad parameter";
    case CONNECTION_NOT_READY:
        return "not ready";
    case CONNECTION_DNS_FAILURE:
        return "DNS";
    case CONNECTION_TCP_FAILURE:
        return "TCP";
    case CONNECTION_TLS_FAILURE:
        return "TLS";
    case CONNECTION_MQTT_FAILURE:
        return "MQTT CONNACK";
    case CONNECTION_RETRIES_EXHAUSTED:
        return "retries exhausted";
    default:
        return "unknown";
    }
}

bool Connection_IsConnected(const Connection_t *connection)
{
    return (connection != NULL) && connection->connected;
}

MQTTContext_t *Connection_Mqtt(Connection_t *connection)
{
    return (connection != NULL) ? &connection->mqtt : NULL;
}

uint32_t Connection_Attempts(const Connection_t *connection)
{
    return (connection != NULL) ? connection->attempts : 0U;
}
