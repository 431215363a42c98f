/* URL splitting: see https_url.h. */
#include "https_url.h"

#include <stdlib.h>
#include <string.h>

#define HTTPS_SCHEME "https://"

HttpsUrlStatus_t HttpsUrl_Parse(const char *url, char *host, size_t hostSize, HttpsUrlParts_t *parts)
{
    if (url == NULL || host == NULL || hostSize == 0U || parts == NULL) {
        return URL_BAD_PARAMETER;
    }
    if (strncmp(url, HTTPS_SCHEME, strlen(HTTPS_SCHEME)) != 0) {
        return URL_NOT_HTTPS;
    }
    const char *authority = url + strlen(HTTPS_SCHEME);
    size_t authorityLength = strcspn(authority, "/?#");
    const char *colon = memchr(authority, ':', authorityLength);
    size_t hostLength = (colon != NULL) ? (size_t)(colon - authority) : authorityLength;
    if (hostLength == 0U || memchr(authority, '@', authorityLength) != NULL) {
        return URL_MALFORMED;
    }
    if (hostLength >= hostSize) {
        return URL_HOST_TOO_LONG;
    }
    parts->port = 443U;
    if (colon != NULL) {
        char *end = NULL;
        unsigned long port = strtoul(colon + 1, &end, 10);
        if (end != authority + authorityLength || end == colon + 1 || port == 0UL || port > 65535UL) {
            return URL_MALFORMED;
        }
        parts->port = (uint16_t)port;
    }
    memcpy(host, authority, hostLength);
    host[hostLength] = '\0';
    const char *rest = authority + authorityLength;
    if (*rest == '/') {
        parts->path = rest;
        parts->pathLength = strcspn(rest, "#");
    } else {
        parts->path = "/";
        parts->pathLength = 1U;
    }
    return URL_SUCCESS;
}
