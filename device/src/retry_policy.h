/*
 * Bounds of the reconnect policy. The first connection after boot is expected to be closed by AWS IoT while
 * JITR registers the new certificate, and a fleet rebooting together must not hammer the endpoint, so the
 * connection manager retries with exponential backoff and full jitter (backoffAlgorithm: the delay before
 * retry n is uniform in [0, ceiling(n)]), a bounded number of times. This header holds the policy and the
 * arithmetic of its bounds; it does not depend on the SDK libraries.
 *
 * Sized for a fleet reboot storm. AWS IoT activates the fleet's new certificates at its control-plane quota
 * rate, so the last of N devices is usable only at about bound = N / 10 s (100 s for 1000 devices), and a device
 * whose certificate is still PENDING_ACTIVATION has every connection closed. Three pulls set the numbers:
 * - connect soon after activation: the wait after activation is at most one backoff draw, so the cap is the
 *   worst lateness. A 30 s cap keeps the last device within ~1.3 x bound of a 100 s storm (a 120 s cap: ~2.1 x);
 * - do not flood AWS IoT: every attempt with a PENDING_ACTIVATION certificate makes AWS IoT publish the
 *   certificate-registered event again. Full jitter under a 30 s cap averages one attempt per 15 s per device
 *   once the ceiling is reached: ~8 attempts per device in a 100 s storm, ~10 in a 150 s one.
 * - never give up during a storm: quotas can be lower than the defaults, so a storm can last 10 minutes or more.
 *   The retries must on average last RETRY_MIN_EXPECTED_TOTAL_MS (30 min) before the app exits.
 * The emulator's storm simulator reads these #defines (emulator/devicesim/retrypolicy.go): keep them plain
 * `#define NAME value` lines, the values integer expressions of U-suffixed decimals.
 */
#ifndef RETRY_POLICY_H
#define RETRY_POLICY_H

#include <stdbool.h>
#include <stdint.h>

/** @brief Ceiling of the first retry delay. */
#ifndef RETRY_BASE_DELAY_MS
#define RETRY_BASE_DELAY_MS 2000U
#endif

/**
 * @brief Largest delay between two attempts. 30 s: after its certificate is activated, a device in a reboot storm
 *        connects at most 30 s later (at most 0.3 x the bound of a 1000-device storm), and the ceiling is reached
 *        by the 5th retry (2, 4, 8, 16, 30 s), about 30 s after boot.
 */
#ifndef RETRY_MAX_DELAY_MS
#define RETRY_MAX_DELAY_MS 30000U
#endif

/**
 * @brief Retries after the first attempt before the app gives up and exits (the OS restarts it). 180 retries of
 *        full jitter under a 30 s cap last 44 min on average and 88 min at worst; their sum (sd ~2 min) falls
 *        to 30 min only 7 standard deviations below its mean: a storm of 10 minutes or more never exhausts them.
 */
#ifndef RETRY_MAX_ATTEMPTS
#define RETRY_MAX_ATTEMPTS 180U
#endif

/** @brief Upper bound of the whole retry sequence; RetryPolicy_IsValid checks the policy stays under it. */
#ifndef RETRY_MAX_TOTAL_MS
#define RETRY_MAX_TOTAL_MS (90U * 60U * 1000U)
#endif

/**
 * @brief Lower bound of the mean duration of the whole retry sequence (full jitter: half its worst case);
 *        RetryPolicy_IsValid checks the policy keeps trying at least this long, through a long fleet storm.
 */
#ifndef RETRY_MIN_EXPECTED_TOTAL_MS
#define RETRY_MIN_EXPECTED_TOTAL_MS (30U * 60U * 1000U)
#endif

/**
 * @brief A session that stayed up this long was healthy: only then is the backoff reset. A broker that drops the
 *        client right after CONNACK (a publish or subscribe the IoT policy denies, another connection with the
 *        same client id, a deactivated certificate) must meet a growing delay, not a reconnect every 0-2 s.
 */
#ifndef RETRY_STABLE_SESSION_MS
#define RETRY_STABLE_SESSION_MS 60000U
#endif

/** @brief AWS IoT Core allows one CONNECT per second per client id: never try again sooner than this. */
#ifndef RETRY_MIN_CONNECT_INTERVAL_MS
#define RETRY_MIN_CONNECT_INTERVAL_MS 1000U
#endif

/** @brief backoffAlgorithm counts in 16-bit units: one unit is this many milliseconds. */
#ifndef RETRY_BACKOFF_UNIT_MS
#define RETRY_BACKOFF_UNIT_MS 10U
#endif

_Static_assert(RETRY_MAX_DELAY_MS / RETRY_BACKOFF_UNIT_MS <= 65535U, "RETRY_MAX_DELAY_MS must fit backoffAlgorithm");
_Static_assert(RETRY_BASE_DELAY_MS % RETRY_BACKOFF_UNIT_MS == 0U && RETRY_MAX_DELAY_MS % RETRY_BACKOFF_UNIT_MS == 0U,
               "retry delays must be whole backoff units");
/* backoffAlgorithm doubles its ceiling while it is below maxBackoffDelay / 2 (integer division, in units) and
 * otherwise sets it to maxBackoffDelay: that is min(max, base * 2^n), RetryPolicy_CeilingMs, only when the cap
 * is an even number of units. */
_Static_assert((RETRY_MAX_DELAY_MS / RETRY_BACKOFF_UNIT_MS) % 2U == 0U,
               "RETRY_MAX_DELAY_MS must be an even number of backoff units (see RetryPolicy_CeilingMs)");
_Static_assert(RETRY_MIN_EXPECTED_TOTAL_MS <= RETRY_MAX_TOTAL_MS, "the retry budget's bounds are inverted");

/** @brief A retry policy. */
typedef struct RetryPolicy {
    uint32_t baseDelayMs; /**< Ceiling of the first retry delay. */
    uint32_t maxDelayMs;  /**< Cap of every delay. */
    uint32_t maxAttempts; /**< Retries allowed. */
} RetryPolicy_t;

/** @brief The app's policy, from the macros above. */
#define RETRY_POLICY_DEFAULT {RETRY_BASE_DELAY_MS, RETRY_MAX_DELAY_MS, RETRY_MAX_ATTEMPTS}

/**
 * @brief Largest delay before retry number @p retry (0-based): min(maxDelayMs, baseDelayMs * 2^retry),
 *        computed without overflow.
 * @return The ceiling in milliseconds, 0 for a NULL policy.
 */
uint32_t RetryPolicy_CeilingMs(const RetryPolicy_t *policy, uint32_t retry);

/**
 * @brief Worst-case sum of all delays of the policy.
 * @return Milliseconds, 0 for a NULL policy.
 */
uint64_t RetryPolicy_WorstCaseTotalMs(const RetryPolicy_t *policy);

/**
 * @brief Mean sum of all delays of the policy: full jitter draws each delay uniformly in [0, ceiling], so half
 *        the worst case (the RETRY_MIN_CONNECT_INTERVAL_MS floor only lengthens it).
 * @return Milliseconds, 0 for a NULL policy.
 */
uint64_t RetryPolicy_ExpectedTotalMs(const RetryPolicy_t *policy);

/**
 * @brief A policy is valid when it retries at least once, is bounded (not "retry forever"), its base is
 *        positive and not above its cap, it keeps trying on average at least @p minExpectedTotalMs (a device
 *        must not give up during a long fleet storm), and its worst case stays under @p maxTotalMs.
 */
bool RetryPolicy_IsValid(const RetryPolicy_t *policy, uint64_t minExpectedTotalMs, uint64_t maxTotalMs);

/**
 * @brief Whether a session that lasted @p sessionMs (CONNACK to drop) earns a backoff reset.
 * @return true when sessionMs >= RETRY_STABLE_SESSION_MS.
 */
bool RetryPolicy_SessionWasStable(uint32_t sessionMs);

/**
 * @brief The delay to wait, raised so the next CONNECT comes at least RETRY_MIN_CONNECT_INTERVAL_MS after the
 *        previous one (full jitter can draw 0).
 * @param[in] delayMs Delay drawn by the backoff.
 * @param[in] sinceLastConnectMs Time since the previous connection attempt started.
 * @return max(delayMs, RETRY_MIN_CONNECT_INTERVAL_MS - sinceLastConnectMs).
 */
uint32_t RetryPolicy_ApplyConnectFloor(uint32_t delayMs, uint32_t sinceLastConnectMs);

#endif /* RETRY_POLICY_H */
