/* Declarations checked against Microsoft's applibs reference (see device/README.md); not the SDK header. */
#pragma once

#include <stdbool.h>

/* learn.microsoft.com: azure-sphere/reference/applibs-reference/applibs-networking/function-networking-isnetworkingready */
int Networking_IsNetworkingReady(bool *outIsNetworkingReady);
