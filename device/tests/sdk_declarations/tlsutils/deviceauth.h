/* Declarations checked against Microsoft's tlsutils reference (see device/README.md); not the SDK header. */
#pragma once

/* learn.microsoft.com: azure-sphere/reference/applibs-reference/tlsutils/function-deviceauth-getcertificatepath
 * The DAA certificate (PEM); its private key stays in the security subsystem. */
const char *DeviceAuth_GetCertificatePath(void);
