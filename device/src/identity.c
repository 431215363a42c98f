/* Device identity from the DeviceAuth certificate: see identity.h. */
#include "identity.h"

#include <ctype.h>
#include <string.h>

#include "wolfssl_include.h"

/*
 * Copies the CN of a subject into commonName (at most size - 1 characters, NUL-terminated).
 * Returns its length, or -1 without a CN.
 *
 * Read from the one-line subject with wolfSSL_X509_NAME_oneline, a WOLFSSL_ABI function, as Microsoft's
 * device-ID snippet does; wolfSSL_X509_NAME_get_text_by_NID is not ABI, so Azure Sphere does not export it.
 */
static int GetCommonName(WOLFSSL_X509_NAME *subject, char *commonName, size_t size)
{
    /* "/C=../O=../CN=<id>": the CN is the text after the last "/CN=" up to the next "/". */
    /* Zeroed: for an empty subject wolfSSL may return the buffer without writing to it. */
    char oneLine[512] = {0};
    if (wolfSSL_X509_NAME_oneline(subject, oneLine, (int)sizeof(oneLine) - 1) == NULL) {
        return -1;
    }
    const char *cn = NULL;
    for (const char *p = strstr(oneLine, "/CN="); p != NULL; p = strstr(p + 1, "/CN=")) {
        cn = p + 4;
    }
    if (cn == NULL) {
        return -1;
    }
    size_t length = strcspn(cn, "/");
    if (length >= size) {
        length = size - 1U;
    }
    memcpy(commonName, cn, length);
    commonName[length] = '\0';
    return (int)length;
}

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
    int length = (subject == NULL) ? -1 : GetCommonName(subject, commonName, sizeof(commonName));
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
