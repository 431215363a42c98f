/* Device identity from the DeviceAuth certificate: see identity.h. */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "identity.h"

#include <ctype.h>
#include <string.h>

IdentityStatus_t Identity_NormalizeDeviceId(const char *commonName, char *deviceId, size_t deviceIdSize)
{
    if (commonName == NULL || deviceId == NULL || deviceIdSize < IDENTITY_DEVICE_ID_BUFFER_SIZE) {
        return IDENTITY_BAD_PARAMETER;
    }
    if (strnlen(commonName, DEVICE_ID_LENGTH + 1U) != DEVICE_ID_LENGTH) {
        return IDENTITY_INVALID_DEVICE_ID;
    }
    for (size_t i = 0; i < DEVICE_ID_LENGTH; i++) {
        unsigned char c = (unsigned char)commonName[i];
        if (!isxdigit(c)) {
            return IDENTITY_INVALID_DEVICE_ID;
        }
        deviceId[i] = (char)tolower(c);
    }
    deviceId[DEVICE_ID_LENGTH] = '\0';
    return IDENTITY_SUCCESS;
}

IdentityStatus_t Identity_GetDeviceId(const char *certPath, char *deviceId, size_t deviceIdSize)
{
    /* One byte more than a device ID, so a longer CN is seen as longer rather than silently truncated. */
    char commonName[DEVICE_ID_LENGTH + 2U];
    IdentityStatus_t status = IDENTITY_SUCCESS;

    if (certPath == NULL || deviceId == NULL || deviceIdSize < IDENTITY_DEVICE_ID_BUFFER_SIZE) {
        return IDENTITY_BAD_PARAMETER;
    }
    WOLFSSL_X509 *cert = wolfSSL_X509_load_certificate_file(certPath, WOLFSSL_FILETYPE_PEM);
    if (cert == NULL) {
        return IDENTITY_CERT_UNREADABLE;
    }
    WOLFSSL_X509_NAME *subject = wolfSSL_X509_get_subject_name(cert);
    int length = (subject == NULL) ? -1
                                   : wolfSSL_X509_NAME_get_text_by_NID(subject, NID_commonName, commonName,
                                                                       (int)sizeof(commonName));
    if (length <= 0) {
        status = IDENTITY_NO_COMMON_NAME;
    } else {
        commonName[sizeof(commonName) - 1U] = '\0';
        status = Identity_NormalizeDeviceId(commonName, deviceId, deviceIdSize);
    }
    wolfSSL_X509_free(cert);
    return status;
}

const char *Identity_StatusString(IdentityStatus_t status)
{
    switch (status) {
    case IDENTITY_SUCCESS:
        return "success";
    case IDENTITY_BAD_PARAMETER:
        return "bad parameter";
    case IDENTITY_CERT_UNREADABLE:
        return "certificate unreadable";
    case IDENTITY_NO_COMMON_NAME:
        return "certificate subject has no CN";
    case IDENTITY_INVALID_DEVICE_ID:
        return "CN is not a 128-hex-character device ID";
    default:
        return "unknown";
    }
}
