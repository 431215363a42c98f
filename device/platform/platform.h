/*
 * The platform seam: everything the app needs from the operating system, in one small interface.
 * platform/azsphere/ implements it on Azure Sphere applibs (networking readiness, DeviceAuth certificate,
 * image-package resources, Log_Debug, EventLoop); platform/host/ implements it on Linux for tests and for
 * running the app against a local broker (files and endpoint from the command line or environment, stderr
 * logging, epoll). The code above this header is identical on both.
 */
#ifndef PLATFORM_H
#define PLATFORM_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** @brief Severity of a log line. */
typedef enum PlatformLogLevel {
    PLATFORM_LOG_ERROR = 1,
    PLATFORM_LOG_WARN = 2,
    PLATFORM_LOG_INFO = 3,
    PLATFORM_LOG_DEBUG = 4
} PlatformLogLevel_t;

/** @brief Result of a platform call. */
typedef enum PlatformStatus {
    PLATFORM_SUCCESS = 0,
    PLATFORM_BAD_PARAMETER,
    PLATFORM_NOT_READY, /**< Try again later (network or device authentication not ready yet). */
    PLATFORM_FAILURE
} PlatformStatus_t;

/**
 * @brief Number of trusted root CA files the platform can hand out: Amazon Root CA 1 (RSA) and 3 (ECC), which
 *        AWS IoT Core's ATS endpoints and S3 chain to, and Starfield Services Root Certificate Authority - G2,
 *        which cross-signs them: AWS may send the cross-signed chain, and a wolfSSL built without alternate
 *        chains (WOLFSSL_ALT_CERT_CHAINS) can only verify that chain up to the Starfield root.
 */
#define PLATFORM_MAX_ROOT_CAS 3U

/** @brief Where the TLS credentials and the endpoint come from. */
typedef struct PlatformCredentials {
    const char *clientCertPath; /**< PEM client certificate (DeviceAuth certificate on Azure Sphere). */
    const char *clientKeyPath;  /**< PEM private key, or NULL on Azure Sphere: the DAA key stays in the
                                     security subsystem and only the certificate is loaded. */
    const char *rootCaPaths[PLATFORM_MAX_ROOT_CAS]; /**< Trusted roots; unused entries are NULL. */
} PlatformCredentials_t;

/** @brief wolfSSL's context (wolfssl/ssl.h), named here so this header needs no wolfSSL include. */
struct WOLFSSL_CTX;

/**
 * @brief Load the client's private key into a TLS context. Only the host has key files (its test certificates);
 *        on Azure Sphere the DeviceAuth key never leaves the security subsystem, wolfSSL signs with it through
 *        the certificate alone, and no key-file loading is compiled in (make device-arm-check fails if it is).
 * @param[in] ctx The TLS context the client certificate was loaded into.
 * @param[in] keyPath PlatformCredentials_t.clientKeyPath: a PEM key file, or NULL when the platform holds the key.
 * @return PLATFORM_SUCCESS (loaded, or NULL: nothing to load), PLATFORM_BAD_PARAMETER (a key file where the
 *         platform holds the key) or PLATFORM_FAILURE (the file could not be loaded).
 */
PlatformStatus_t Platform_UseClientKey(struct WOLFSSL_CTX *ctx, const char *keyPath);

/** @brief Opaque periodic timer driven by the platform event loop. */
typedef struct PlatformTimer PlatformTimer_t;

/** @brief Called from the event loop when a timer fires. Must not block. */
typedef void (*PlatformTimerHandler_t)(void *context);

/**
 * @brief Initialise the platform (event loop, arguments on the host).
 * @param[in] argc Argument count of main.
 * @param[in] argv Arguments of main.
 * @return PLATFORM_SUCCESS, or PLATFORM_BAD_PARAMETER for bad command-line arguments, PLATFORM_FAILURE otherwise.
 */
PlatformStatus_t Platform_Init(int argc, char *argv[]);

/** @brief Release what Platform_Init acquired. Safe to call after a failed init. */
void Platform_Close(void);

/**
 * @brief Write one log line (a newline is added).
 * @param[in] level Severity.
 * @param[in] format printf format.
 */
void Platform_Log(PlatformLogLevel_t level, const char *format, ...) __attribute__((format(printf, 2, 3)));

/** @brief As Platform_Log with a va_list. */
void Platform_LogV(PlatformLogLevel_t level, const char *format, va_list args);

/**
 * @brief Whether the network can be used now.
 * @return PLATFORM_SUCCESS when ready, PLATFORM_NOT_READY when not yet, PLATFORM_FAILURE on error.
 */
PlatformStatus_t Platform_IsNetworkReady(void);

/**
 * @brief Whether the device authentication certificate can be used now.
 * @return PLATFORM_SUCCESS when ready, PLATFORM_NOT_READY when not yet, PLATFORM_FAILURE on error.
 */
PlatformStatus_t Platform_IsDeviceAuthReady(void);

/**
 * @brief The files TLS needs. The paths stay valid until Platform_Close; the certificate file may be replaced
 *        by the OS at any time (it renews), so read it afresh for every connection.
 * @param[out] credentials Filled on success.
 * @return PLATFORM_SUCCESS or PLATFORM_FAILURE (a resource is missing from the image package).
 */
PlatformStatus_t Platform_GetCredentials(PlatformCredentials_t *credentials);

/**
 * @brief Endpoint override: the host build takes it from the command line or environment so the app can talk
 *        to a local broker; Azure Sphere always uses the generated configuration.
 * @param[out] host Set to the host name, or left untouched.
 * @param[out] port Set to the port, or left untouched.
 */
void Platform_GetEndpointOverride(const char **host, uint16_t *port);

/**
 * @brief Fleet file URL override: the host build reads the fleet-wide file only from `--s3-fleet-url URL` (so a
 *        test can serve it) and otherwise sets the URL to NULL (skip); Azure Sphere always uses the generated
 *        configuration's read-only URL. The device's own objects need no URL here: it asks for them over MQTT.
 * @param[in,out] url The configured URL; replaced, set to NULL (skip), or left untouched.
 */
void Platform_GetFleetUrlOverride(const char **url);

/**
 * @brief Whether to run the S3 step (runtime URLs over MQTT): always on Azure Sphere; the host build's `--skip-s3`
 *        turns it off for a broker with no presign function behind it (the mosquitto test).
 */
bool Platform_S3StepEnabled(void);

/**
 * @brief How many telemetry messages to publish before exiting with success: the host build's
 *        `--publish-count N` for scripted runs; 0 (always on Azure Sphere) runs until SIGTERM.
 */
uint32_t Platform_GetPublishLimit(void);

/**
 * @brief Fill a buffer with random bytes from the OS (for backoff jitter).
 * @return PLATFORM_SUCCESS or PLATFORM_FAILURE.
 */
PlatformStatus_t Platform_GetRandom(void *buffer, size_t length);

/** @brief Monotonic milliseconds, wrapping at 2^32 (what coreMQTT's MQTTGetCurrentTimeFunc_t wants). */
uint32_t Platform_GetTimeMs(void);

/**
 * @brief Create a periodic timer on the event loop. Timers are static (PLATFORM_MAX_TIMERS of them).
 * @param[in] periodMs Period in milliseconds; 0 creates a disarmed timer.
 * @param[in] handler Called on expiry.
 * @param[in] context Passed to handler.
 * @return The timer, or NULL.
 */
PlatformTimer_t *Platform_TimerCreate(uint32_t periodMs, PlatformTimerHandler_t handler, void *context);

/**
 * @brief Re-arm a timer: one shot after delayMs (periodMs 0) or periodic.
 * @return PLATFORM_SUCCESS or PLATFORM_FAILURE.
 */
PlatformStatus_t Platform_TimerSet(PlatformTimer_t *timer, uint32_t delayMs, uint32_t periodMs);

/** @brief Number of timers the platform can hold. */
#define PLATFORM_MAX_TIMERS 4U

/**
 * @brief Wait for and dispatch one round of events (the body of the sample's `while` loop).
 * @return PLATFORM_SUCCESS, or PLATFORM_FAILURE when the loop failed (EINTR from SIGTERM is success).
 */
PlatformStatus_t Platform_RunEventLoopOnce(void);

#endif /* PLATFORM_H */
