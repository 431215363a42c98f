/*
 * S3 transfers through presigned URLs (HTTPS PUT and GET; the URLs come from s3_url_request or the image) with coreHTTP over the verified TLS transport (server checked against
 * the bundled Amazon roots, no client certificate): PUT upload, and download by ranged GETs so the receive
 * buffer stays small whatever the object size.
 */
#ifndef S3_TRANSFER_H
#define S3_TRANSFER_H

#include <stddef.h>
#include <stdint.h>

/** @brief Result of a transfer. */
typedef enum S3Status {
    S3_SUCCESS = 0,
    S3_BAD_PARAMETER,     /**< NULL argument or a URL that is not https. */
    S3_CONNECT_FAILURE,   /**< DNS, TCP or TLS (see the log for the stage). */
    S3_HTTP_FAILURE,      /**< coreHTTP could not send or parse. */
    S3_FORBIDDEN,         /**< S3 answered 403: the URL expired, or its signature is refused. */
    S3_UNEXPECTED_STATUS, /**< S3 answered with another status we do not accept (404: no such object). */
    S3_BUFFER_TOO_SMALL   /**< The object does not fit the caller's buffer. */
} S3Status_t;

/**
 * @brief Upload a buffer with one PUT to a presigned URL.
 * @return S3_SUCCESS on 200, S3_FORBIDDEN on 403, or why not.
 */
S3Status_t S3Transfer_Upload(const char *presignedPutUrl, const uint8_t *data, size_t length);

/**
 * @brief Download an object with ranged GETs of S3_RANGE_CHUNK_SIZE bytes from a presigned URL.
 * @param[out] buffer Receives the object.
 * @param[in] bufferSize Size of buffer.
 * @param[out] objectSize Size of the object.
 * @return S3_SUCCESS or why not.
 */
S3Status_t S3Transfer_Download(const char *presignedGetUrl, uint8_t *buffer, size_t bufferSize, size_t *objectSize);

#endif /* S3_TRANSFER_H */
