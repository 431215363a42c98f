/* Bounds of the reconnect policy: ceilings double from the base, never pass the cap, the total is bounded. */
#include <stdint.h>

#include "check.h"
#include "retry_policy.h"

int main(void)
{
    const RetryPolicy_t policy = RETRY_POLICY_DEFAULT;
    const RetryPolicy_t small = {100U, 1000U, 6U};

    /* The app's own policy is bounded and valid. */
    CHECK(RetryPolicy_IsValid(&policy, RETRY_MIN_EXPECTED_TOTAL_MS, RETRY_MAX_TOTAL_MS));
    CHECK(RetryPolicy_WorstCaseTotalMs(&policy) <= RETRY_MAX_TOTAL_MS);
    CHECK(RetryPolicy_WorstCaseTotalMs(&policy) > 0U);

    /* Sized for a fleet reboot storm (retry_policy.h): a device whose certificate is activated waits at most
     * 30 s more, and it keeps trying on average for at least 30 minutes before it gives up. */
    CHECK(RETRY_MAX_DELAY_MS <= 30000U);
    CHECK(RETRY_MIN_EXPECTED_TOTAL_MS >= 30U * 60U * 1000U);
    CHECK(RetryPolicy_ExpectedTotalMs(&policy) >= RETRY_MIN_EXPECTED_TOTAL_MS);
    /* The figures of the header's comments: ceilings 2, 4, 8, 16, then 30 s 176 times; 88.5 min at worst. */
    CHECK(RetryPolicy_CeilingMs(&policy, 3) == 16000U);
    CHECK(RetryPolicy_CeilingMs(&policy, 4) == 30000U);
    CHECK(RetryPolicy_WorstCaseTotalMs(&policy) == 30000U + 176U * 30000U);
    CHECK(RetryPolicy_ExpectedTotalMs(&policy) == (30000U + 176U * 30000U) / 2U);

    /* Exponential up to the cap: 100, 200, 400, 800, 1000, 1000. */
    CHECK(RetryPolicy_CeilingMs(&small, 0) == 100U);
    CHECK(RetryPolicy_CeilingMs(&small, 1) == 200U);
    CHECK(RetryPolicy_CeilingMs(&small, 2) == 400U);
    CHECK(RetryPolicy_CeilingMs(&small, 3) == 800U);
    CHECK(RetryPolicy_CeilingMs(&small, 4) == 1000U);
    CHECK(RetryPolicy_CeilingMs(&small, 5) == 1000U);
    CHECK(RetryPolicy_WorstCaseTotalMs(&small) == 100U + 200U + 400U + 800U + 1000U + 1000U);

    /* Never above the cap, never overflowing, for every retry number a policy could ask about. */
    for (uint32_t retry = 0; retry < 64U; retry++) {
        uint32_t ceiling = RetryPolicy_CeilingMs(&policy, retry);
        CHECK(ceiling <= RETRY_MAX_DELAY_MS);
        CHECK(ceiling >= RETRY_BASE_DELAY_MS);
        if (retry > 0U) {
            CHECK(ceiling >= RetryPolicy_CeilingMs(&policy, retry - 1U));
        }
    }
    const RetryPolicy_t huge = {UINT32_MAX / 2U, UINT32_MAX, 40U};
    CHECK(RetryPolicy_CeilingMs(&huge, 39) == UINT32_MAX);

    /* Invalid policies: unbounded, no retry, base above cap, total above the budget. */
    const RetryPolicy_t forever = {100U, 1000U, UINT32_MAX};
    const RetryPolicy_t none = {100U, 1000U, 0U};
    const RetryPolicy_t inverted = {2000U, 1000U, 3U};
    CHECK(!RetryPolicy_IsValid(&forever, 0U, UINT64_MAX));
    CHECK(!RetryPolicy_IsValid(&none, 0U, UINT64_MAX));
    CHECK(!RetryPolicy_IsValid(&inverted, 0U, UINT64_MAX));
    CHECK(!RetryPolicy_IsValid(&small, 0U, 3499U));
    CHECK(RetryPolicy_IsValid(&small, 0U, 3500U));
    CHECK(!RetryPolicy_IsValid(NULL, 0U, UINT64_MAX));

    /* Gives up too soon: the mean total of full jitter is half the worst case (3500 / 2 = 1750 ms). */
    CHECK(RetryPolicy_ExpectedTotalMs(&small) == 1750U);
    CHECK(RetryPolicy_IsValid(&small, 1750U, 3500U));
    CHECK(!RetryPolicy_IsValid(&small, 1751U, 3500U));
    CHECK(RetryPolicy_ExpectedTotalMs(NULL) == 0U);
    /* The policy before the storm work (120 s cap, 12 retries) gave up after 7 min on average (14 at worst);
     * with a 30 s cap and 12 retries, after 2.25 min (4.5): both fail the app's budget. */
    const RetryPolicy_t before = {2000U, 120000U, 12U};
    const RetryPolicy_t shortCap = {2000U, 30000U, 12U};
    CHECK(!RetryPolicy_IsValid(&before, RETRY_MIN_EXPECTED_TOTAL_MS, RETRY_MAX_TOTAL_MS));
    CHECK(!RetryPolicy_IsValid(&shortCap, RETRY_MIN_EXPECTED_TOTAL_MS, RETRY_MAX_TOTAL_MS));

    /* Backoff resets only after a session that stayed up for RETRY_STABLE_SESSION_MS (60 s). */
    CHECK(RETRY_STABLE_SESSION_MS >= 60000U);
    CHECK(!RetryPolicy_SessionWasStable(0U));
    CHECK(!RetryPolicy_SessionWasStable(RETRY_STABLE_SESSION_MS - 1U));
    CHECK(RetryPolicy_SessionWasStable(RETRY_STABLE_SESSION_MS));

    /* Never two CONNECTs within a second (AWS IoT's limit per client id), whatever the jitter drew. */
    CHECK(RETRY_MIN_CONNECT_INTERVAL_MS >= 1000U);
    CHECK(RetryPolicy_ApplyConnectFloor(0U, 0U) == RETRY_MIN_CONNECT_INTERVAL_MS);
    CHECK(RetryPolicy_ApplyConnectFloor(0U, 400U) == RETRY_MIN_CONNECT_INTERVAL_MS - 400U);
    CHECK(RetryPolicy_ApplyConnectFloor(5000U, 0U) == 5000U);
    CHECK(RetryPolicy_ApplyConnectFloor(0U, RETRY_MIN_CONNECT_INTERVAL_MS) == 0U);
    for (uint32_t since = 0; since < 3000U; since += 7U) {
        CHECK(since + RetryPolicy_ApplyConnectFloor(0U, since) >= RETRY_MIN_CONNECT_INTERVAL_MS);
    }

    return CHECK_DONE();
}
