/* Declarations checked against Microsoft's applibs reference (see device/README.md); not the SDK header. */
#pragma once

#include <stdarg.h>

/* learn.microsoft.com: azure-sphere/reference/applibs-reference/applibs-log/function-log-debug */
int Log_Debug(const char *fmt, ...);
/* learn.microsoft.com: azure-sphere/reference/applibs-reference/applibs-log/function-log-debugvarargs */
int Log_DebugVarArgs(const char *fmt, va_list args);
