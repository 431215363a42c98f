/*
 * Maps the SDK libraries' logging macros (LogError( ( "fmt", args ) ) ...) to the platform log.
 * Included by core_mqtt_config.h, core_http_config.h and shadow_config.h after LIBRARY_LOG_NAME is set.
 */
#ifndef SDK_LOG_H
#define SDK_LOG_H

#include "platform.h"

/**
 * @brief Format an SDK log message into a static buffer (single-threaded app).
 * @return The formatted text.
 */
const char *SdkLog_Format(const char *format, ...) __attribute__((format(printf, 1, 2)));

#ifndef SDK_LOG_LEVEL
#define SDK_LOG_LEVEL PLATFORM_LOG_WARN
#endif

#define SDK_LOG(level, message)                                                                  \
    do {                                                                                         \
        if ((level) <= SDK_LOG_LEVEL) {                                                          \
            Platform_Log((level), "[%s] %s", LIBRARY_LOG_NAME, SdkLog_Format message);           \
        }                                                                                        \
    } while (0)

#define LogError(message) SDK_LOG(PLATFORM_LOG_ERROR, message)
#define LogWarn(message) SDK_LOG(PLATFORM_LOG_WARN, message)
#define LogInfo(message) SDK_LOG(PLATFORM_LOG_INFO, message)
#define LogDebug(message) SDK_LOG(PLATFORM_LOG_DEBUG, message)

#endif /* SDK_LOG_H */
