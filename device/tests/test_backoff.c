/*
 * The reconnect delays come from backoffAlgorithm with the app's policy: full jitter inside the ceilings of
 * retry_policy.h, the ceilings reachable, and a bounded number of retries.
 */
#include <stdint.h>
#include <string.h>

#include "backoff_algorithm.h"
#include "check.h"
#include "mqtt_connection.h"
#include "platform.h"
#include "retry_policy.h"

static uint32_t fakeNowMs;

static uint32_t FakeClock(void)
{
    return fakeNowMs;
}

static void NoCallback(MQTTContext_t *mqtt, MQTTPacketInfo_t *packet, MQTTDeserializedInfo_t *info)
{
    (void)mqtt;
    (void)packet;
    (void)info;
}

int main(int argc, char *argv[])
{
    /* Any readable file stands for the DeviceAuth certificate: no attempt gets past TCP here. */
    char *platformArgs[] = {argv[0], "--cert", argv[0], "--key", argv[0], NULL};
    (void)argc;
    CHECK(Platform_Init(5, platformArgs) == PLATFORM_SUCCESS);
    const RetryPolicy_t policy = RETRY_POLICY_DEFAULT;
    const uint32_t randoms[] = {0U, 1U, 12345U, 0x7FFFFFFFU, UINT32_MAX};

    /* For each fixed random value: every delay within its ceiling, and exhausted after maxAttempts. */
    for (size_t r = 0; r < sizeof(randoms) / sizeof(randoms[0]); r++) {
        BackoffAlgorithmContext_t context;
        uint16_t delay = 0;
        BackoffAlgorithm_InitializeParams(&context, (uint16_t)(policy.baseDelayMs / RETRY_BACKOFF_UNIT_MS),
                                          (uint16_t)(policy.maxDelayMs / RETRY_BACKOFF_UNIT_MS), policy.maxAttempts);
        for (uint32_t retry = 0; retry < policy.maxAttempts; retry++) {
            CHECK(BackoffAlgorithm_GetNextBackoff(&context, randoms[r], &delay) == BackoffAlgorithmSuccess);
            CHECK((uint32_t)delay * RETRY_BACKOFF_UNIT_MS <= RetryPolicy_CeilingMs(&policy, retry));
        }
        CHECK(BackoffAlgorithm_GetNextBackoff(&context, randoms[r], &delay) == BackoffAlgorithmRetriesExhausted);
    }

    /* The ceiling itself is drawn when the random value equals it: the jitter spans [0, ceiling]. */
    {
        BackoffAlgorithmContext_t context;
        uint16_t delay = 0;
        BackoffAlgorithm_InitializeParams(&context, (uint16_t)(policy.baseDelayMs / RETRY_BACKOFF_UNIT_MS),
                                          (uint16_t)(policy.maxDelayMs / RETRY_BACKOFF_UNIT_MS), policy.maxAttempts);
        for (uint32_t retry = 0; retry < policy.maxAttempts; retry++) {
            uint32_t ceilingUnits = RetryPolicy_CeilingMs(&policy, retry) / RETRY_BACKOFF_UNIT_MS;
            CHECK(BackoffAlgorithm_GetNextBackoff(&context, ceilingUnits, &delay) == BackoffAlgorithmSuccess);
            CHECK(delay == ceilingUnits);
        }
    }

    /* The connection manager: RETRY_MAX_ATTEMPTS delays from the OS's randomness, each in bounds, then done. */
    {
        static Connection_t connection;
        ConnectionConfig_t config = {.host = "localhost", .port = 8883, .clientId = "id", .keepAliveSeconds = 60,
                                     .eventCallback = NoCallback};
        uint32_t delayMs = 0;
        uint64_t totalMs = 0;
        CHECK(Connection_Init(&connection, &config) == CONNECTION_SUCCESS);
        for (uint32_t retry = 0; retry < RETRY_MAX_ATTEMPTS; retry++) {
            CHECK(Connection_NextRetryDelay(&connection, &delayMs) == CONNECTION_SUCCESS);
            CHECK(delayMs <= RetryPolicy_CeilingMs(&policy, retry));
            totalMs += delayMs;
        }
        CHECK(totalMs <= RETRY_MAX_TOTAL_MS);
        CHECK(Connection_NextRetryDelay(&connection, &delayMs) == CONNECTION_RETRIES_EXHAUSTED);
        config.eventCallback = NULL;
        CHECK(Connection_Init(&connection, &config) == CONNECTION_BAD_PARAMETER);
    }
    /* Against a port nothing listens on: every delay keeps the next attempt a second after the previous one
     * started (the fake clock stands still, so the jitter alone could draw less). */
    {
        static Connection_t connection;
        ConnectionConfig_t config = {.host = "127.0.0.1", .port = 1, .clientId = "id", .keepAliveSeconds = 60,
                                     .eventCallback = NoCallback, .getTimeMs = FakeClock};
        uint32_t delayMs = 0;
        fakeNowMs = 5000U;
        CHECK(Connection_Init(&connection, &config) == CONNECTION_SUCCESS);
        for (uint32_t retry = 0; retry < RETRY_MAX_ATTEMPTS; retry++) {
            CHECK(Connection_Attempt(&connection, NULL) == CONNECTION_TCP_FAILURE);
            CHECK(Connection_NextRetryDelay(&connection, &delayMs) == CONNECTION_SUCCESS);
            CHECK(delayMs >= RETRY_MIN_CONNECT_INTERVAL_MS);
        }
    }

    /* Drops right after CONNACK escalate: the backoff is not reset, the drops are counted; a session that
     * stayed up RETRY_STABLE_SESSION_MS resets it. (The session is marked connected by hand: no broker here.) */
    {
        static Connection_t connection;
        ConnectionConfig_t config = {.host = "localhost", .port = 8883, .clientId = "id", .keepAliveSeconds = 60,
                                     .eventCallback = NoCallback, .getTimeMs = FakeClock};
        uint32_t delayMs = 0;
        fakeNowMs = 1000U;
        CHECK(Connection_Init(&connection, &config) == CONNECTION_SUCCESS);
        for (uint32_t drop = 1; drop <= 3U; drop++) {
            CHECK(Connection_NextRetryDelay(&connection, &delayMs) == CONNECTION_SUCCESS);
            connection.connected = true;
            connection.connectedAtMs = fakeNowMs;
            fakeNowMs += 2000U; /* dropped 2 s after CONNACK */
            CHECK(Connection_HandleDrop(&connection) == 2000U);
            CHECK(!connection.connected);
            CHECK(connection.shortDrops == drop);
            CHECK(connection.backoff.attemptsDone == drop); /* not reset: the next ceiling is higher */
        }
        connection.connected = true;
        connection.connectedAtMs = fakeNowMs;
        fakeNowMs += RETRY_STABLE_SESSION_MS;
        CHECK(Connection_HandleDrop(&connection) == RETRY_STABLE_SESSION_MS);
        CHECK(connection.shortDrops == 0U && connection.backoff.attemptsDone == 0U);
    }
    Platform_Close();
    return CHECK_DONE();
}
