/*
 * Splits an https URL (a presigned S3 URL) into host and request path, which coreHTTP takes separately.
 */
#ifndef HTTPS_URL_H
#define HTTPS_URL_H

#include <stddef.h>
#include <stdint.h>

/** @brief Result of parsing a URL. */
typedef enum HttpsUrlStatus {
    URL_SUCCESS = 0,
    URL_BAD_PARAMETER,    /**< NULL argument. */
    URL_NOT_HTTPS,        /**< Not an https:// URL: presigned URLs are always fetched over verified TLS. */
    URL_MALFORMED,        /**< No host, bad port. */
    URL_HOST_TOO_LONG     /**< The host does not fit the host buffer. */
} HttpsUrlStatus_t;

/** @brief The parts of a URL. */
typedef struct HttpsUrlParts {
    uint16_t port;     /**< 443 unless the URL names another. */
    const char *path;  /**< Points into the URL: "/key?query", or "/" when the URL has no path. */
    size_t pathLength; /**< Length of path. */
} HttpsUrlParts_t;

/**
 * @brief Parse an https URL.
 * @param[in] url NUL-terminated URL.
 * @param[out] host NUL-terminated host name.
 * @param[in] hostSize Size of host.
 * @param[out] parts Port and path.
 * @return URL_SUCCESS or why not.
 */
HttpsUrlStatus_t HttpsUrl_Parse(const char *url, char *host, size_t hostSize, HttpsUrlParts_t *parts);

#endif /* HTTPS_URL_H */
