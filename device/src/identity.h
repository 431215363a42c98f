/*
 * Device identity: the Azure Sphere device ID is the CN of the DeviceAuth certificate (there is no applibs
 * call for it). Validated as 128 hex characters and lower-cased, it is the AWS IoT thing name and the MQTT
 * client id, exactly what the JITR Lambda derives from the same certificate.
 */
#ifndef IDENTITY_H
#define IDENTITY_H

#include <stddef.h>

#include "buffer_config.h"

/** @brief Buffer size for a device ID with its terminating NUL. */
#define IDENTITY_DEVICE_ID_BUFFER_SIZE (DEVICE_ID_LENGTH + 1U)

/** @brief Result of an identity call. */
typedef enum IdentityStatus {
    IDENTITY_SUCCESS = 0,
    IDENTITY_BAD_PARAMETER,     /**< NULL argument or output buffer too small. */
    IDENTITY_CERT_UNREADABLE,   /**< The certificate file is missing or not a PEM certificate. */
    IDENTITY_NO_COMMON_NAME,    /**< The subject has no CN. */
    IDENTITY_INVALID_DEVICE_ID  /**< The CN is not 128 hex characters. */
} IdentityStatus_t;

/**
 * @brief Validate a CN as an Azure Sphere device ID and write it lower-cased.
 * @param[in] commonName NUL-terminated CN.
 * @param[out] deviceId Output buffer.
 * @param[in] deviceIdSize Size of deviceId, at least IDENTITY_DEVICE_ID_BUFFER_SIZE.
 * @return IDENTITY_SUCCESS, IDENTITY_BAD_PARAMETER or IDENTITY_INVALID_DEVICE_ID.
 */
IdentityStatus_t Identity_NormalizeDeviceId(const char *commonName, char *deviceId, size_t deviceIdSize);

/**
 * @brief Read the device ID from the CN of a PEM certificate (the DeviceAuth certificate on the device).
 * @param[in] certPath Path of the PEM certificate.
 * @param[out] deviceId Output buffer, lower-case device ID on success.
 * @param[in] deviceIdSize Size of deviceId, at least IDENTITY_DEVICE_ID_BUFFER_SIZE.
 * @return IDENTITY_SUCCESS or the reason it failed.
 */
IdentityStatus_t Identity_GetDeviceId(const char *certPath, char *deviceId, size_t deviceIdSize);

/** @brief A short description of a status, for logs. */
const char *Identity_StatusString(IdentityStatus_t status);

#endif /* IDENTITY_H */
