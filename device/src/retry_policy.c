/* Reconnect policy bounds: see retry_policy.h. */
#include "retry_policy.h"

#include <stddef.h>

uint32_t RetryPolicy_CeilingMs(const RetryPolicy_t *policy, uint32_t retry)
{
    if (policy == NULL) {
        return 0U;
    }
    uint64_t ceiling = policy->baseDelayMs;
    for (uint32_t i = 0; i < retry && ceiling < policy->maxDelayMs; i++) {
        ceiling *= 2U;
    }
    return (ceiling > policy->maxDelayMs) ? policy->maxDelayMs : (uint32_t)ceiling;
}

uint64_t RetryPolicy_WorstCaseTotalMs(const RetryPolicy_t *policy)
{
    uint64_t total = 0U;
    if (policy == NULL) {
        return 0U;
    }
    for (uint32_t retry = 0; retry < policy->maxAttempts; retry++) {
        total += RetryPolicy_CeilingMs(policy, retry);
    }
    return total;
}

uint64_t RetryPolicy_ExpectedTotalMs(const RetryPolicy_t *policy)
{
    return RetryPolicy_WorstCaseTotalMs(policy) / 2U;
}

bool RetryPolicy_IsValid(const RetryPolicy_t *policy, uint64_t minExpectedTotalMs, uint64_t maxTotalMs)
{
    return (policy != NULL) && (policy->maxAttempts > 0U) && (policy->maxAttempts != UINT32_MAX) &&
           (policy->baseDelayMs > 0U) && (policy->baseDelayMs <= policy->maxDelayMs) &&
           (RetryPolicy_ExpectedTotalMs(policy) >= minExpectedTotalMs) &&
           (RetryPolicy_WorstCaseTotalMs(policy) <= maxTotalMs);
}

bool RetryPolicy_SessionWasStable(uint32_t sessionMs)
{
    return sessionMs >= RETRY_STABLE_SESSION_MS;
}

uint32_t RetryPolicy_ApplyConnectFloor(uint32_t delayMs, uint32_t sinceLastConnectMs)
{
    if (sinceLastConnectMs >= RETRY_MIN_CONNECT_INTERVAL_MS) {
        return delayMs;
    }
    uint32_t floorMs = RETRY_MIN_CONNECT_INTERVAL_MS - sinceLastConnectMs;
    return (delayMs > floorMs) ? delayMs : floorMs;
}
