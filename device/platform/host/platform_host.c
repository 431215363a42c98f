/*
 * Linux implementation of the platform seam: credentials and endpoint from the command line or the
 * environment, log lines on stderr, an epoll loop over timerfds in place of the applibs EventLoop.
 */
#include "platform.h"

#include "wolfssl_include.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

struct PlatformTimer {
    int fd;
    PlatformTimerHandler_t handler;
    void *context;
};

static PlatformTimer_t timers[PLATFORM_MAX_TIMERS];
static size_t timerCount;
static int epollFd = -1;
static PlatformCredentials_t credentials;
static const char *endpointHost;
static const char *s3FleetUrl;
static uint16_t endpointPort;
static uint32_t publishLimit;
static bool skipS3;
static PlatformLogLevel_t logLevel = PLATFORM_LOG_INFO;

#ifndef DEVICE_DEFAULT_CERTS_DIR
#define DEVICE_DEFAULT_CERTS_DIR "certs"
#endif

static const char *const defaultRootCas[PLATFORM_MAX_ROOT_CAS] = {
    DEVICE_DEFAULT_CERTS_DIR "/AmazonRootCA1.pem", DEVICE_DEFAULT_CERTS_DIR "/AmazonRootCA3.pem",
    DEVICE_DEFAULT_CERTS_DIR "/StarfieldServicesRootCA-G2.pem"};

static void PrintUsage(const char *program)
{
    fprintf(stderr,
            "usage: %s --cert FILE --key FILE [--ca FILE]... [--endpoint HOST] [--port N] [--publish-count N]\n"
            "          [--s3-fleet-url URL] [--skip-s3] [--debug]\n"
            "  the S3 object of the device comes through URLs it asks for over MQTT; --s3-fleet-url names the\n"
            "  fleet-wide file to read (read-only; not read without it); --skip-s3: no S3 step (a broker without\n"
            "  the presign function)\n"
            "  environment fallbacks: DEVICE_CERT, DEVICE_KEY, DEVICE_CA, DEVICE_ENDPOINT, DEVICE_PORT\n"
            "  without --ca the bundled Amazon root CAs are trusted\n",
            program);
}

static bool ParsePort(const char *text, uint16_t *port)
{
    char *end = NULL;
    unsigned long value = strtoul(text, &end, 10);
    if (end == text || *end != '\0' || value == 0 || value > 65535UL) {
        return false;
    }
    *port = (uint16_t)value;
    return true;
}

PlatformStatus_t Platform_Init(int argc, char *argv[])
{
    size_t caCount = 0;
    const char *portText = getenv("DEVICE_PORT");

    credentials.clientCertPath = getenv("DEVICE_CERT");
    credentials.clientKeyPath = getenv("DEVICE_KEY");
    endpointHost = getenv("DEVICE_ENDPOINT");
    if (getenv("DEVICE_CA") != NULL) {
        credentials.rootCaPaths[caCount++] = getenv("DEVICE_CA");
    }

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = (i + 1 < argc) ? argv[i + 1] : NULL;
        if (strcmp(arg, "--debug") == 0) {
            logLevel = PLATFORM_LOG_DEBUG;
            continue;
        }
        if (strcmp(arg, "--skip-s3") == 0) {
            skipS3 = true;
            continue;
        }
        if (value == NULL) {
            PrintUsage(argv[0]);
            return PLATFORM_BAD_PARAMETER;
        }
        if (strcmp(arg, "--cert") == 0) {
            credentials.clientCertPath = value;
        } else if (strcmp(arg, "--key") == 0) {
            credentials.clientKeyPath = value;
        } else if (strcmp(arg, "--ca") == 0 && caCount < PLATFORM_MAX_ROOT_CAS) {
            credentials.rootCaPaths[caCount++] = value;
        } else if (strcmp(arg, "--endpoint") == 0) {
            endpointHost = value;
        } else if (strcmp(arg, "--port") == 0) {
            portText = value;
        } else if (strcmp(arg, "--s3-fleet-url") == 0) {
            s3FleetUrl = value;
        } else if (strcmp(arg, "--publish-count") == 0) {
            publishLimit = (uint32_t)strtoul(value, NULL, 10);
        } else {
            PrintUsage(argv[0]);
            return PLATFORM_BAD_PARAMETER;
        }
        i++;
    }
    if (portText != NULL && !ParsePort(portText, &endpointPort)) {
        fprintf(stderr, "invalid port %s\n", portText);
        return PLATFORM_BAD_PARAMETER;
    }
    if (caCount == 0) {
        for (size_t i = 0; i < PLATFORM_MAX_ROOT_CAS; i++) {
            credentials.rootCaPaths[i] = defaultRootCas[i];
        }
    }
    if (credentials.clientCertPath == NULL || credentials.clientKeyPath == NULL) {
        PrintUsage(argv[0]);
        return PLATFORM_BAD_PARAMETER;
    }

    epollFd = epoll_create1(EPOLL_CLOEXEC);
    if (epollFd < 0) {
        Platform_Log(PLATFORM_LOG_ERROR, "epoll_create1: %s", strerror(errno));
        return PLATFORM_FAILURE;
    }
    return PLATFORM_SUCCESS;
}

void Platform_Close(void)
{
    for (size_t i = 0; i < timerCount; i++) {
        if (timers[i].fd >= 0) {
            close(timers[i].fd);
            timers[i].fd = -1;
        }
    }
    timerCount = 0;
    if (epollFd >= 0) {
        close(epollFd);
        epollFd = -1;
    }
}

void Platform_LogV(PlatformLogLevel_t level, const char *format, va_list args)
{
    static const char *const names[] = {"", "ERROR", "WARN", "INFO", "DEBUG"};
    if (level > logLevel) {
        return;
    }
    fprintf(stderr, "[%s] ", names[level]);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
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
    return PLATFORM_SUCCESS;
}

PlatformStatus_t Platform_IsDeviceAuthReady(void)
{
    return (access(credentials.clientCertPath, R_OK) == 0) ? PLATFORM_SUCCESS : PLATFORM_NOT_READY;
}

PlatformStatus_t Platform_GetCredentials(PlatformCredentials_t *out)
{
    if (out == NULL) {
        return PLATFORM_BAD_PARAMETER;
    }
    *out = credentials;
    return PLATFORM_SUCCESS;
}

void Platform_GetEndpointOverride(const char **host, uint16_t *port)
{
    if (host != NULL && endpointHost != NULL) {
        *host = endpointHost;
    }
    if (port != NULL && endpointPort != 0U) {
        *port = endpointPort;
    }
}

void Platform_GetFleetUrlOverride(const char **url)
{
    if (url != NULL) {
        *url = s3FleetUrl;
    }
}

bool Platform_S3StepEnabled(void)
{
    return !skipS3;
}

uint32_t Platform_GetPublishLimit(void)
{
    return publishLimit;
}

static struct itimerspec ToItimerspec(uint32_t delayMs, uint32_t periodMs)
{
    struct itimerspec spec = {
        .it_value = {.tv_sec = (time_t)(delayMs / 1000U), .tv_nsec = (long)((delayMs % 1000U) * 1000000U)},
        .it_interval = {.tv_sec = (time_t)(periodMs / 1000U), .tv_nsec = (long)((periodMs % 1000U) * 1000000U)},
    };
    return spec;
}

PlatformStatus_t Platform_TimerSet(PlatformTimer_t *timer, uint32_t delayMs, uint32_t periodMs)
{
    if (timer == NULL) {
        return PLATFORM_BAD_PARAMETER;
    }
    /* A zero it_value disarms a timerfd: fire "now" as 1 ms instead. */
    struct itimerspec spec = ToItimerspec((delayMs == 0U && periodMs != 0U) ? 1U : delayMs, periodMs);
    if (timerfd_settime(timer->fd, 0, &spec, NULL) != 0) {
        Platform_Log(PLATFORM_LOG_ERROR, "timerfd_settime: %s", strerror(errno));
        return PLATFORM_FAILURE;
    }
    return PLATFORM_SUCCESS;
}

PlatformTimer_t *Platform_TimerCreate(uint32_t periodMs, PlatformTimerHandler_t handler, void *context)
{
    if (handler == NULL || timerCount >= PLATFORM_MAX_TIMERS || epollFd < 0) {
        return NULL;
    }
    PlatformTimer_t *timer = &timers[timerCount];
    timer->fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (timer->fd < 0) {
        Platform_Log(PLATFORM_LOG_ERROR, "timerfd_create: %s", strerror(errno));
        return NULL;
    }
    timer->handler = handler;
    timer->context = context;
    struct epoll_event event = {.events = EPOLLIN, .data.ptr = timer};
    if (epoll_ctl(epollFd, EPOLL_CTL_ADD, timer->fd, &event) != 0) {
        Platform_Log(PLATFORM_LOG_ERROR, "epoll_ctl: %s", strerror(errno));
        close(timer->fd);
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
    struct epoll_event events[PLATFORM_MAX_TIMERS];
    int count = epoll_wait(epollFd, events, (int)PLATFORM_MAX_TIMERS, -1);
    if (count < 0) {
        return (errno == EINTR) ? PLATFORM_SUCCESS : PLATFORM_FAILURE;
    }
    for (int i = 0; i < count; i++) {
        PlatformTimer_t *timer = events[i].data.ptr;
        uint64_t expirations;
        if (read(timer->fd, &expirations, sizeof(expirations)) == (ssize_t)sizeof(expirations)) {
            timer->handler(timer->context);
        }
    }
    return PLATFORM_SUCCESS;
}

PlatformStatus_t Platform_UseClientKey(struct WOLFSSL_CTX *ctx, const char *keyPath)
{
    if (keyPath == NULL) {
        return PLATFORM_SUCCESS;
    }
    if (ctx == NULL) {
        return PLATFORM_BAD_PARAMETER;
    }
    return (wolfSSL_CTX_use_PrivateKey_file(ctx, keyPath, WOLFSSL_FILETYPE_PEM) == WOLFSSL_SUCCESS) ? PLATFORM_SUCCESS
                                                                                                   : PLATFORM_FAILURE;
}
