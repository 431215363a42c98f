/*
 * Azure Sphere implementation of the platform seam, on applibs: networking readiness, the DeviceAuth
 * client certificate managed by the OS, the Amazon root CAs from the image package, Log_Debug, and the
 * applibs EventLoop with timerfd-backed timers (what the samples' eventloop_timer_utilities do).
 */
#include "platform.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <applibs/application.h>
#include <applibs/eventloop.h>
#include <applibs/log.h>
#include <applibs/networking.h>
#include <applibs/storage.h>
#include <tlsutils/deviceauth.h>

struct PlatformTimer {
    int fd;
    EventRegistration *registration;
    PlatformTimerHandler_t handler;
    void *context;
};

static EventLoop *eventLoop = NULL;
static PlatformTimer_t timers[PLATFORM_MAX_TIMERS];
static size_t timerCount;
static char *rootCaPaths[PLATFORM_MAX_ROOT_CAS];

/* Image-package resources added by azsphere_target_add_image_package in CMakeLists.txt. */
static const char *const rootCaResources[PLATFORM_MAX_ROOT_CAS] = {
    "certs/AmazonRootCA1.pem", "certs/AmazonRootCA3.pem", "certs/StarfieldServicesRootCA-G2.pem"};

PlatformStatus_t Platform_Init(int argc, char *argv[])
{
    (void)argc;
    (void)argv;
    eventLoop = EventLoop_Create();
    if (eventLoop == NULL) {
        Log_Debug("ERROR: could not create event loop: %s (%d)\n", strerror(errno), errno);
        return PLATFORM_FAILURE;
    }
    for (size_t i = 0; i < PLATFORM_MAX_ROOT_CAS; i++) {
        /* Allocated once at start-up, never in the protocol path. */
        rootCaPaths[i] = Storage_GetAbsolutePathInImagePackage(rootCaResources[i]);
        if (rootCaPaths[i] == NULL) {
            Log_Debug("ERROR: %s is missing from the image package: %s (%d); check RESOURCE_FILES in "
                      "CMakeLists.txt\n",
                      rootCaResources[i], strerror(errno), errno);
            return PLATFORM_FAILURE;
        }
    }
    return PLATFORM_SUCCESS;
}

void Platform_Close(void)
{
    for (size_t i = 0; i < timerCount; i++) {
        if (timers[i].registration != NULL) {
            EventLoop_UnregisterIo(eventLoop, timers[i].registration);
        }
        if (timers[i].fd >= 0) {
            close(timers[i].fd);
        }
    }
    timerCount = 0;
    for (size_t i = 0; i < PLATFORM_MAX_ROOT_CAS; i++) {
        free(rootCaPaths[i]);
        rootCaPaths[i] = NULL;
    }
    EventLoop_Close(eventLoop);
    eventLoop = NULL;
}

void Platform_LogV(PlatformLogLevel_t level, const char *format, va_list args)
{
    static const char *const prefixes[] = {"", "ERROR: ", "WARN: ", "", "DEBUG: "};
#ifdef NDEBUG
    if (level == PLATFORM_LOG_DEBUG) {
        return;
    }
#endif
    Log_Debug("%s", prefixes[level]);
    Log_DebugVarArgs(format, args);
    Log_Debug("\n");
}

void Platform_Log(PlatformLogLevel_t level, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    Platform_LogV(level, format, args);
    va_end(args);
}

PlatformStatus_t Platform_IsNetworkReady(void)
{
    bool ready = false;
    if (Networking_IsNetworkingReady(&ready) == -1) {
        Platform_Log(PLATFORM_LOG_ERROR, "Networking_IsNetworkingReady: %s (%d)", strerror(errno), errno);
        return PLATFORM_FAILURE;
    }
    return ready ? PLATFORM_SUCCESS : PLATFORM_NOT_READY;
}

PlatformStatus_t Platform_IsDeviceAuthReady(void)
{
    bool ready = false;
    if (Application_IsDeviceAuthReady(&ready) == -1) {
        Platform_Log(PLATFORM_LOG_ERROR,
                     "Application_IsDeviceAuthReady: %s (%d); check DeviceAuthentication (tenant id) in "
                     "app_manifest.json",
                     strerror(errno), errno);
        return PLATFORM_FAILURE;
    }
    return ready ? PLATFORM_SUCCESS : PLATFORM_NOT_READY;
}

PlatformStatus_t Platform_GetCredentials(PlatformCredentials_t *credentials)
{
    if (credentials == NULL) {
        return PLATFORM_BAD_PARAMETER;
    }
    /* The certificate only: its private key never leaves the security subsystem, and the OS's wolfSSL signs
     * with it (Microsoft's samples load DeviceAuth_GetCertificatePath() with wolfSSL_CTX_use_certificate_file
     * and no key). Loading a key from this path fails, on every attempt. */
    credentials->clientCertPath = DeviceAuth_GetCertificatePath();
    credentials->clientKeyPath = NULL;
    for (size_t i = 0; i < PLATFORM_MAX_ROOT_CAS; i++) {
        credentials->rootCaPaths[i] = rootCaPaths[i];
    }
    return (credentials->clientCertPath != NULL) ? PLATFORM_SUCCESS : PLATFORM_FAILURE;
}

void Platform_GetEndpointOverride(const char **host, uint16_t *port)
{
    /* The device only talks to the endpoint in the generated configuration (and AllowedConnections). */
    (void)host;
    (void)port;
}

void Platform_GetFleetUrlOverride(const char **url)
{
    /* The device reads the fleet file with the read-only URL of the generated configuration. */
    (void)url;
}

bool Platform_S3StepEnabled(void)
{
    return true;
}

uint32_t Platform_GetPublishLimit(void)
{
    return 0U;
}

static void TimerEventHandler(EventLoop *el, int fd, EventLoop_IoEvents events, void *context)
{
    (void)el;
    (void)events;
    PlatformTimer_t *timer = context;
    uint64_t expirations;
    if (read(fd, &expirations, sizeof(expirations)) == (ssize_t)sizeof(expirations)) {
        timer->handler(timer->context);
    }
}

PlatformStatus_t Platform_TimerSet(PlatformTimer_t *timer, uint32_t delayMs, uint32_t periodMs)
{
    if (timer == NULL) {
        return PLATFORM_BAD_PARAMETER;
    }
    uint32_t firstMs = (delayMs == 0U && periodMs != 0U) ? 1U : delayMs;
    /* Explicit conversions: time_t is 32-bit and signed on the 32-bit target, and the SDK builds with -Wconversion. */
    struct itimerspec spec = {
        .it_value = {.tv_sec = (time_t)(firstMs / 1000U), .tv_nsec = (long)((firstMs % 1000U) * 1000000U)},
        .it_interval = {.tv_sec = (time_t)(periodMs / 1000U), .tv_nsec = (long)((periodMs % 1000U) * 1000000U)},
    };
    if (timerfd_settime(timer->fd, 0, &spec, NULL) == -1) {
        Platform_Log(PLATFORM_LOG_ERROR, "timerfd_settime: %s (%d)", strerror(errno), errno);
        return PLATFORM_FAILURE;
    }
    return PLATFORM_SUCCESS;
}

PlatformTimer_t *Platform_TimerCreate(uint32_t periodMs, PlatformTimerHandler_t handler, void *context)
{
    if (handler == NULL || timerCount >= PLATFORM_MAX_TIMERS || eventLoop == NULL) {
        return NULL;
    }
    PlatformTimer_t *timer = &timers[timerCount];
    timer->fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    if (timer->fd == -1) {
        Platform_Log(PLATFORM_LOG_ERROR, "timerfd_create: %s (%d)", strerror(errno), errno);
        return NULL;
    }
    timer->handler = handler;
    timer->context = context;
    timer->registration = EventLoop_RegisterIo(eventLoop, timer->fd, EventLoop_Input, TimerEventHandler, timer);
    if (timer->registration == NULL) {
        Platform_Log(PLATFORM_LOG_ERROR, "EventLoop_RegisterIo: %s (%d)", strerror(errno), errno);
        close(timer->fd);
        timer->fd = -1;
        return NULL;
    }
    timerCount++;
    if (periodMs != 0U && Platform_TimerSet(timer, periodMs, periodMs) != PLATFORM_SUCCESS) {
        return NULL;
    }
    return timer;
}

PlatformStatus_t Platform_RunEventLoopOnce(void)
{
    EventLoop_Run_Result result = EventLoop_Run(eventLoop, -1, true);
    /* EINTR is how SIGTERM wakes the loop; the caller checks the exit code. */
    if (result == EventLoop_Run_Failed && errno != EINTR) {
        return PLATFORM_FAILURE;
    }
    return PLATFORM_SUCCESS;
}

PlatformStatus_t Platform_UseClientKey(struct WOLFSSL_CTX *ctx, const char *keyPath)
{
    (void)ctx;
    /* The DeviceAuth key stays in the security subsystem: there is no key file to load, and no code to load one. */
    return (keyPath == NULL) ? PLATFORM_SUCCESS : PLATFORM_BAD_PARAMETER;
}
