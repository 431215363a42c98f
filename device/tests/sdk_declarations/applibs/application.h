/* Declarations checked against Microsoft's applibs reference (see device/README.md); not the SDK header. */
#pragma once

#include <stdbool.h>

/* learn.microsoft.com: azure-sphere/reference/applibs-reference/applibs-application/function-application-isdeviceauthready */
int Application_IsDeviceAuthReady(bool *outIsDeviceAuthReady);
