/* Formatting helper behind the SDK logging macros (see sdk_log.h). */
#include "sdk_log.h"

#include <stdio.h>

#define SDK_LOG_LINE_SIZE 256U

const char *SdkLog_Format(const char *format, ...)
{
    static char line[SDK_LOG_LINE_SIZE];
    va_list args;
    va_start(args, format);
    (void)vsnprintf(line, sizeof(line), format, args);
    va_end(args);
    return line;
}
