/*
 * sphere-jitr device app: an Azure Sphere MT3620 high-level app that connects to AWS IoT Core with its
 * DeviceAuth certificate and relies on just-in-time registration (JITR) to be provisioned.
 *
 * It waits for networking and device authentication, reads its device ID (the CN of the DeviceAuth
 * certificate) which is its thing name and MQTT client id, connects over verified mutual TLS (retrying with
 * exponential backoff and jitter: the first connection of a new certificate is closed by AWS IoT while JITR
 * runs), then publishes telemetry, syncs its shadow, and moves an object through S3 with presigned URLs it asks
 * for over MQTT (devices/<thing>/<name>, short-lived, minted by the stack's presign function).
 *
 * Shape of the Azure Sphere samples: an ExitCode per failure site, a SIGTERM handler that only sets the exit
 * code, InitPeripheralsAndHandlers → event loop → ClosePeripheralsAndHandlers. Timers drive everything; the
 * MQTT callback only parses and sets flags, the timer handlers act. The S3 step runs from its own timer once MQTT
 * is up (the sequence is s3_demo's; this file arms its timer and hands it the URL replies). The MQTT session stays
 * open during the HTTPS transfer (two TLS sessions for a few seconds; RAM: see device/README.md); the transfer
 * blocks the event loop for at most the transport timeout, well inside the keep-alive.
 *
 * This file wires the modules and reacts to their callbacks and results; it never writes their fields.
 */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "app_config.h"
#include "identity.h"
#include "mqtt_connection.h"
#include "platform.h"
#include "s3_demo.h"
#include "shadow_sync.h"
#include "telemetry.h"

/// <summary>
/// Exit codes for this application. They are used for the application exit code and must all be between
/// zero and 255, where zero is reserved for successful termination.
/// </summary>
typedef enum {
    ExitCode_Success = 0,
    ExitCode_TermHandler_SigTerm = 1,
    ExitCode_Init_Platform = 2,
    ExitCode_Init_ConnectTimer = 3,
    ExitCode_Init_ProcessTimer = 4,
    ExitCode_Init_TelemetryTimer = 5,
    ExitCode_Main_EventLoopFail = 6,
    ExitCode_Identity_DeviceAuth = 7,
    ExitCode_Identity_InvalidCertificate = 8,
    ExitCode_Topics_Init = 9,
    ExitCode_Shadow_Init = 10,
    ExitCode_Connection_Init = 11,
    ExitCode_Connect_RetriesExhausted = 12,
    ExitCode_Timer_Set = 13,
    ExitCode_Init_Arguments = 14,
    ExitCode_Init_S3Timer = 15,
    ExitCode_S3Demo_Init = 16
} ExitCode;

/** @brief Poll readiness (network, DeviceAuth) this often until both are ready. */
#define READINESS_POLL_MS 1000U
/** @brief Run the MQTT process loop (receive, acks, keep-alive) this often. */
#define PROCESS_LOOP_PERIOD_MS 100U
/** @brief Telemetry interval until the shadow says otherwise. */
#define DEFAULT_TELEMETRY_INTERVAL_SEC 30U
/** @brief MQTT keep-alive. */
#define MQTT_KEEP_ALIVE_SEC 60U

_Static_assert(S3_DEMO_URL_REPLY_TIMEOUT_MS < MQTT_KEEP_ALIVE_SEC * 1000U, "the reply wait must end inside the keep-alive");

static volatile sig_atomic_t exitCode = ExitCode_Success;

static PlatformTimer_t *connectTimer = NULL;
static PlatformTimer_t *processTimer = NULL;
static PlatformTimer_t *telemetryTimer = NULL;
static PlatformTimer_t *s3Timer = NULL;

static char deviceId[IDENTITY_DEVICE_ID_BUFFER_SIZE];
static bool identityKnown = false;
static Connection_t connection;
static Telemetry_t telemetry;
static ShadowSync_t shadow;
static S3Demo_t s3Demo;
static uint32_t publishedCount = 0;
static uint32_t startMs = 0;
static bool publishLimitReached = false;
static bool finished = false; /* host --publish-count reached: leave the loop with ExitCode_Success */

/// <summary>
/// Signal handler for termination requests. This handler must be async-signal-safe.
/// </summary>
static void TerminationHandler(int signalNumber)
{
    (void)signalNumber;
    // Don't use Log_Debug here, as it is not guaranteed to be async-signal-safe.
    exitCode = ExitCode_TermHandler_SigTerm;
}

static void ArmTimer(PlatformTimer_t *timer, uint32_t delayMs, uint32_t periodMs)
{
    if (Platform_TimerSet(timer, delayMs, periodMs) != PLATFORM_SUCCESS) {
        exitCode = ExitCode_Timer_Set;
    }
}

/// <summary>
/// MQTT callback: only parses and sets flags (shadow delta, command). The timer handlers act on them.
/// </summary>
static void MqttEventCallback(MQTTContext_t *mqtt, MQTTPacketInfo_t *packetInfo, MQTTDeserializedInfo_t *info)
{
    (void)mqtt;
    if ((packetInfo->type & 0xF0U) == MQTT_PACKET_TYPE_PUBLISH) {
        if (!S3Demo_HandlePublish(&s3Demo, info->pPublishInfo) &&
            ShadowSync_HandlePublish(&shadow, info->pPublishInfo) == SHADOW_SYNC_NOT_FOR_US &&
            !Telemetry_HandlePublish(&telemetry, info->pPublishInfo)) {
            Platform_Log(PLATFORM_LOG_WARN, "publish on an unexpected topic %.*s",
                         (int)info->pPublishInfo->topicNameLength, info->pPublishInfo->pTopicName);
        }
    } else if (packetInfo->type == MQTT_PACKET_TYPE_PUBACK) {
        (void)Telemetry_HandlePubAck(&telemetry, info->packetIdentifier);
    } else if (packetInfo->type == MQTT_PACKET_TYPE_SUBACK) {
        uint8_t *codes = NULL;
        size_t count = 0;
        if (MQTT_GetSubAckStatusCodes(packetInfo, &codes, &count) == MQTTSuccess) {
            for (size_t i = 0; i < count; i++) {
                if (codes[i] == (uint8_t)MQTTSubAckFailure) {
                    Platform_Log(PLATFORM_LOG_ERROR, "subscription %lu refused: check the thing's IoT policy",
                                 (unsigned long)i);
                }
            }
        }
    }
}

/// <summary>
/// Reads the device ID once DeviceAuth is ready and prepares everything named after it.
/// Returns false while the certificate is not ready yet (or on a fatal error, with exitCode set).
/// </summary>
static bool PrepareIdentity(void)
{
    PlatformCredentials_t credentials;
    PlatformStatus_t ready = Platform_IsDeviceAuthReady();
    if (ready == PLATFORM_NOT_READY) {
        Platform_Log(PLATFORM_LOG_INFO, "waiting for device authentication (DeviceAuth certificate)");
        return false;
    }
    if (ready != PLATFORM_SUCCESS || Platform_GetCredentials(&credentials) != PLATFORM_SUCCESS) {
        exitCode = ExitCode_Identity_DeviceAuth;
        return false;
    }
    IdentityStatus_t status = Identity_GetDeviceId(credentials.clientCertPath, deviceId, sizeof(deviceId));
    if (status != IDENTITY_SUCCESS) {
        Platform_Log(PLATFORM_LOG_ERROR, "device ID from %s: %s", credentials.clientCertPath,
                     Identity_StatusString(status));
        exitCode = ExitCode_Identity_InvalidCertificate;
        return false;
    }
    Platform_Log(PLATFORM_LOG_INFO, "device ID (thing name, client id): %s", deviceId);

    const char *host = AWS_IOT_ENDPOINT;
    uint16_t port = (uint16_t)AWS_IOT_PORT;
    Platform_GetEndpointOverride(&host, &port);
    ConnectionConfig_t config = {.host = host,
                                 .port = port,
                                 .clientId = deviceId,
                                 .keepAliveSeconds = MQTT_KEEP_ALIVE_SEC,
                                 .eventCallback = MqttEventCallback};
    if (Telemetry_Init(&telemetry, DEVICE_TOPIC_ROOT, deviceId) != TELEMETRY_SUCCESS) {
        exitCode = ExitCode_Topics_Init;
        return false;
    }
    if (ShadowSync_Init(&shadow, deviceId, DEFAULT_TELEMETRY_INTERVAL_SEC) != SHADOW_SYNC_SUCCESS) {
        exitCode = ExitCode_Shadow_Init;
        return false;
    }
    const char *fleetUrl = S3_FLEET_GET_URL;
    Platform_GetFleetUrlOverride(&fleetUrl);
    if (!Platform_S3StepEnabled()) {
        Platform_Log(PLATFORM_LOG_INFO, "S3 step skipped (--skip-s3)");
    }
    if (S3Demo_Init(&s3Demo, DEVICE_TOPIC_ROOT, deviceId, fleetUrl, Platform_S3StepEnabled()) != S3_DEMO_SUCCESS) {
        exitCode = ExitCode_S3Demo_Init;
        return false;
    }
    if (Connection_Init(&connection, &config) != CONNECTION_SUCCESS) {
        exitCode = ExitCode_Connection_Init;
        return false;
    }
    identityKnown = true;
    return true;
}

/// <summary>
/// Schedules the next connection attempt after a backoff delay, or ends the app when the policy is used up
/// (the OS restarts a high-level app that exits).
/// </summary>
static void ScheduleReconnect(void)
{
    uint32_t delayMs = 0;
    if (Connection_NextRetryDelay(&connection, &delayMs) != CONNECTION_SUCCESS) {
        Platform_Log(PLATFORM_LOG_ERROR,
                     "giving up after %lu attempts: check the endpoint, the CA registration (auto-registration on) "
                     "and the JITR Lambda's logs",
                     (unsigned long)Connection_Attempts(&connection));
        exitCode = ExitCode_Connect_RetriesExhausted;
        return;
    }
    Platform_Log(PLATFORM_LOG_INFO, "next connection attempt in %lu ms", (unsigned long)delayMs);
    ArmTimer(connectTimer, delayMs, 0U);
}

static void OnConnectionLost(const char *why);

/// <summary>
/// S3 timer: one step of the S3 demo sequence, only while MQTT is connected; the sequence says when it wants the
/// next one.
/// </summary>
static void S3TimerEventHandler(void *context)
{
    (void)context;
    uint32_t nextStepMs = 0;
    if (!Connection_IsConnected(&connection)) {
        return;
    }
    if (S3Demo_Step(&s3Demo, Connection_Mqtt(&connection), &nextStepMs) == S3_DEMO_MQTT_FAILURE) {
        OnConnectionLost("S3 URL request publish failed");
        return;
    }
    ArmTimer(s3Timer, nextStepMs, 0U);
}

static void OnConnected(void)
{
    /* The URL replies' topics are subscribed before any request, so no answer can be missed. */
    MQTTContext_t *mqtt = Connection_Mqtt(&connection);
    if (Telemetry_Subscribe(&telemetry, mqtt) != TELEMETRY_SUCCESS ||
        ShadowSync_Subscribe(&shadow, mqtt) != SHADOW_SYNC_SUCCESS ||
        S3Demo_Subscribe(&s3Demo, mqtt) != S3_DEMO_SUCCESS) {
        OnConnectionLost("subscribe failed");
        return;
    }
    /* Desired state set while the device was offline comes with the get; the report follows its answer. */
    if (ShadowSync_RequestGet(&shadow, mqtt) != SHADOW_SYNC_SUCCESS) {
        OnConnectionLost("shadow get failed");
        return;
    }
    ArmTimer(processTimer, PROCESS_LOOP_PERIOD_MS, PROCESS_LOOP_PERIOD_MS);
    ArmTimer(telemetryTimer, 1U, ShadowSync_TelemetryIntervalSec(&shadow) * 1000U);
    if (!S3Demo_IsDone(&s3Demo)) {
        ArmTimer(s3Timer, S3_DEMO_START_DELAY_MS, 0U);
    }
}

/// <summary>
/// Connect timer: waits for readiness, then makes one connection attempt; on failure re-arms itself with
/// the backoff delay.
/// </summary>
static void ConnectTimerEventHandler(void *context)
{
    (void)context;
    if (!identityKnown && !PrepareIdentity()) {
        if (exitCode == ExitCode_Success) {
            ArmTimer(connectTimer, READINESS_POLL_MS, 0U);
        }
        return;
    }
    ConnectionStatus_t status = Connection_Attempt(&connection, NULL);
    if (status == CONNECTION_SUCCESS) {
        OnConnected();
    } else if (status == CONNECTION_NOT_READY) {
        Platform_Log(PLATFORM_LOG_INFO, "waiting for networking");
        ArmTimer(connectTimer, READINESS_POLL_MS, 0U);
    } else {
        ScheduleReconnect();
    }
}

static void OnConnectionLost(const char *why)
{
    Platform_Log(PLATFORM_LOG_WARN, "connection lost: %s", why);
    ArmTimer(processTimer, 0U, 0U);
    ArmTimer(telemetryTimer, 0U, 0U);
    ArmTimer(s3Timer, 0U, 0U);
    S3Demo_OnConnectionLost(&s3Demo);
    (void)Connection_HandleDrop(&connection);
    ScheduleReconnect();
}

/// <summary>
/// Process timer: runs the MQTT process loop, then acts on what the callback flagged.
/// </summary>
static void ProcessTimerEventHandler(void *context)
{
    (void)context;
    if (!Connection_IsConnected(&connection)) {
        return;
    }
    MQTTStatus_t status = MQTT_ProcessLoop(Connection_Mqtt(&connection));
    if (status != MQTTSuccess && status != MQTTNeedMoreBytes) {
        OnConnectionLost(MQTT_Status_strerror(status));
        return;
    }
    if (publishLimitReached && Telemetry_LastAcknowledged(&telemetry) && S3Demo_IsDone(&s3Demo)) {
        Platform_Log(PLATFORM_LOG_INFO, "published %lu telemetry messages, last one acknowledged, S3 step over: done",
                     (unsigned long)publishedCount);
        finished = true;
        return;
    }
    const char *command = Telemetry_TakeCommand(&telemetry);
    if (command != NULL) {
        Platform_Log(PLATFORM_LOG_INFO, "command received: %s", command);
    }
    if (ShadowSync_ReportPending(&shadow)) {
        uint32_t intervalMs = ShadowSync_TelemetryIntervalSec(&shadow) * 1000U;
        if (ShadowSync_Report(&shadow, Connection_Mqtt(&connection)) != SHADOW_SYNC_SUCCESS) {
            OnConnectionLost("shadow report failed");
            return;
        }
        ArmTimer(telemetryTimer, intervalMs, intervalMs);
    }
}

/// <summary>
/// Telemetry timer: publishes one message.
/// </summary>
static void TelemetryTimerEventHandler(void *context)
{
    (void)context;
    if (!Connection_IsConnected(&connection)) {
        return;
    }
    if (Telemetry_Publish(&telemetry, Connection_Mqtt(&connection), Platform_GetTimeMs() - startMs) != TELEMETRY_SUCCESS) {
        OnConnectionLost("telemetry publish failed");
        return;
    }
    publishedCount++;
    uint32_t limit = Platform_GetPublishLimit();
    if (limit != 0U && publishedCount >= limit) {
        /* Leave once the broker acknowledged it (the process timer checks), then DISCONNECT cleanly. */
        publishLimitReached = true;
        ArmTimer(telemetryTimer, 0U, 0U);
    }
}

/// <summary>
/// Set up SIGTERM termination handler, the platform and the event loop timers.
/// </summary>
/// <returns>ExitCode_Success if all resources were allocated successfully; otherwise another ExitCode value
/// which indicates the specific failure.</returns>
static ExitCode InitPeripheralsAndHandlers(int argc, char *argv[])
{
    struct sigaction action;
    memset(&action, 0, sizeof(struct sigaction));
    action.sa_handler = TerminationHandler;
    sigaction(SIGTERM, &action, NULL);
    // A peer that closes the TLS connection must surface as a send error, not kill the app.
    signal(SIGPIPE, SIG_IGN);

    PlatformStatus_t status = Platform_Init(argc, argv);
    if (status == PLATFORM_BAD_PARAMETER) {
        return ExitCode_Init_Arguments;
    }
    if (status != PLATFORM_SUCCESS) {
        return ExitCode_Init_Platform;
    }
    connectTimer = Platform_TimerCreate(0U, ConnectTimerEventHandler, NULL);
    if (connectTimer == NULL || Platform_TimerSet(connectTimer, 1U, 0U) != PLATFORM_SUCCESS) {
        return ExitCode_Init_ConnectTimer;
    }
    processTimer = Platform_TimerCreate(0U, ProcessTimerEventHandler, NULL);
    if (processTimer == NULL) {
        return ExitCode_Init_ProcessTimer;
    }
    telemetryTimer = Platform_TimerCreate(0U, TelemetryTimerEventHandler, NULL);
    if (telemetryTimer == NULL) {
        return ExitCode_Init_TelemetryTimer;
    }
    s3Timer = Platform_TimerCreate(0U, S3TimerEventHandler, NULL);
    if (s3Timer == NULL) {
        return ExitCode_Init_S3Timer;
    }
    return ExitCode_Success;
}

/// <summary>
/// Close the connection and the platform.
/// </summary>
static void ClosePeripheralsAndHandlers(void)
{
    Connection_Close(&connection);
    Platform_Close();
}

int main(int argc, char *argv[])
{
    startMs = Platform_GetTimeMs();
    Platform_Log(PLATFORM_LOG_INFO, "sphere-jitr device app starting");
    exitCode = InitPeripheralsAndHandlers(argc, argv);

    // Use the event loop to wait for events and trigger handlers, until an error or SIGTERM happens
    while (exitCode == ExitCode_Success && !finished) {
        if (Platform_RunEventLoopOnce() != PLATFORM_SUCCESS) {
            exitCode = ExitCode_Main_EventLoopFail;
        }
    }

    ClosePeripheralsAndHandlers();
    Platform_Log(PLATFORM_LOG_INFO, "application exiting with code %d", (int)exitCode);
    return exitCode;
}
