/* S3 transfers through presigned URLs: see s3_transfer.h. */
#include "s3_transfer.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer_config.h"
#include "core_http_client.h"
#include "platform.h"
#include "tls_transport.h"
#include "https_url.h"

#define S3_TRANSPORT_TIMEOUT_MS 10000U
/** @brief Transport_Recv waits this long per call while coreHTTP waits for the response (no spinning). */
#define S3_RECV_WAIT_MS 1000U

static uint8_t userBuffer[HTTP_USER_BUFFER_SIZE];

typedef struct S3Session {
    NetworkContext_t network;
    TransportInterface_t transport;
    char host[URL_HOST_SIZE];
    char hostHeader[URL_HOST_SIZE + 6U]; /**< host, or host:port when not 443 (it is part of the signature) */
    HttpsUrlParts_t url;
} S3Session_t;

static S3Status_t Open(S3Session_t *session, const char *presignedUrl)
{
    PlatformCredentials_t credentials;
    Transport_Init(&session->network);
    if (HttpsUrl_Parse(presignedUrl, session->host, sizeof(session->host), &session->url) != URL_SUCCESS) {
        Platform_Log(PLATFORM_LOG_ERROR, "S3: presigned URL is not an https URL we can use");
        return S3_BAD_PARAMETER;
    }
    if (session->url.port == 443U) {
        (void)snprintf(session->hostHeader, sizeof(session->hostHeader), "%s", session->host);
    } else {
        (void)snprintf(session->hostHeader, sizeof(session->hostHeader), "%s:%u", session->host,
                       (unsigned)session->url.port);
    }
    if (Platform_GetCredentials(&credentials) != PLATFORM_SUCCESS) {
        return S3_CONNECT_FAILURE;
    }
    TransportConfig_t config = {
        .host = session->host,
        .port = session->url.port,
        .rootCaPaths = credentials.rootCaPaths,
        .rootCaCount = PLATFORM_MAX_ROOT_CAS,
        .timeoutMs = S3_TRANSPORT_TIMEOUT_MS,
        .recvWaitMs = S3_RECV_WAIT_MS,
    };
    TransportStatus_t status = Transport_Connect(&session->network, &config);
    if (status != TRANSPORT_SUCCESS) {
        Platform_Log(PLATFORM_LOG_ERROR, "S3: connect to %s failed at stage %s", session->host,
                     Transport_StatusString(status));
        return S3_CONNECT_FAILURE;
    }
    session->transport.recv = Transport_Recv;
    session->transport.send = Transport_Send;
    session->transport.writev = NULL;
    session->transport.pNetworkContext = &session->network;
    return S3_SUCCESS;
}

static S3Status_t Request(S3Session_t *session, const char *method, int32_t rangeStart, int32_t rangeEnd,
                          const uint8_t *body, size_t bodyLength, HTTPResponse_t *response)
{
    HTTPRequestInfo_t info = {
        .pMethod = method,
        .methodLen = strlen(method),
        .pPath = session->url.path,
        .pathLen = session->url.pathLength,
        .pHost = session->hostHeader,
        .hostLen = strlen(session->hostHeader),
        .reqFlags = HTTP_REQUEST_KEEP_ALIVE_FLAG,
    };
    HTTPRequestHeaders_t headers = {.pBuffer = userBuffer, .bufferLen = sizeof(userBuffer)};
    HTTPStatus_t status = HTTPClient_InitializeRequestHeaders(&headers, &info);
    if (status == HTTPSuccess && rangeStart >= 0) {
        status = HTTPClient_AddRangeHeader(&headers, rangeStart, rangeEnd);
    }
    if (status == HTTPSuccess) {
        memset(response, 0, sizeof(*response));
        response->pBuffer = userBuffer;
        response->bufferLen = sizeof(userBuffer);
        response->getTime = Platform_GetTimeMs;
        status = HTTPClient_Send(&session->transport, &headers, body, bodyLength, response, 0U);
    }
    if (status != HTTPSuccess) {
        Platform_Log(PLATFORM_LOG_ERROR, "S3: %s %s: %s", method, session->host, HTTPClient_strerror(status));
        return S3_HTTP_FAILURE;
    }
    return S3_SUCCESS;
}

S3Status_t S3Transfer_Upload(const char *presignedPutUrl, const uint8_t *data, size_t length)
{
    S3Session_t session;
    HTTPResponse_t response;
    if (presignedPutUrl == NULL || (data == NULL && length > 0U)) {
        return S3_BAD_PARAMETER;
    }
    S3Status_t status = Open(&session, presignedPutUrl);
    if (status != S3_SUCCESS) {
        return status;
    }
    status = Request(&session, HTTP_METHOD_PUT, -1, -1, data, length, &response);
    if (status == S3_SUCCESS && response.statusCode != 200U) {
        Platform_Log(PLATFORM_LOG_ERROR, "S3: PUT answered %u (403: URL expired or signed for other headers)",
                     (unsigned)response.statusCode);
        status = (response.statusCode == 403U) ? S3_FORBIDDEN : S3_UNEXPECTED_STATUS;
    }
    Transport_Disconnect(&session.network);
    if (status == S3_SUCCESS) {
        Platform_Log(PLATFORM_LOG_INFO, "S3: uploaded %lu bytes to %s", (unsigned long)length, session.host);
    }
    return status;
}

/* "bytes 0-511/1234" → 1234. */
static bool ParseContentRangeTotal(const HTTPResponse_t *response, size_t *total)
{
    const char *value = NULL;
    size_t valueLength = 0;
    if (HTTPClient_ReadHeader(response, "Content-Range", strlen("Content-Range"), &value, &valueLength) !=
        HTTPSuccess) {
        return false;
    }
    const char *slash = memchr(value, '/', valueLength);
    if (slash == NULL) {
        return false;
    }
    size_t result = 0;
    size_t digits = 0;
    for (const char *c = slash + 1; c < value + valueLength && *c >= '0' && *c <= '9'; c++, digits++) {
        result = result * 10U + (size_t)(*c - '0');
    }
    *total = result;
    return digits > 0U;
}

S3Status_t S3Transfer_Download(const char *presignedGetUrl, uint8_t *buffer, size_t bufferSize, size_t *objectSize)
{
    S3Session_t session;
    HTTPResponse_t response;
    size_t received = 0;
    size_t total = 0;
    bool complete = false;
    if (presignedGetUrl == NULL || buffer == NULL || objectSize == NULL) {
        return S3_BAD_PARAMETER;
    }
    S3Status_t status = Open(&session, presignedGetUrl);
    while (status == S3_SUCCESS && !complete) {
        int32_t start = (int32_t)received;
        status = Request(&session, HTTP_METHOD_GET, start, start + (int32_t)S3_RANGE_CHUNK_SIZE - 1, NULL, 0U,
                         &response);
        if (status != S3_SUCCESS) {
            break;
        }
        if (response.statusCode == 206U) {
            if (!ParseContentRangeTotal(&response, &total)) {
                status = S3_HTTP_FAILURE;
                break;
            }
        } else if (response.statusCode == 200U) {
            total = response.bodyLen; /* the server ignored the range: the whole object came */
        } else {
            Platform_Log(PLATFORM_LOG_ERROR, "S3: GET answered %u (403: URL expired or refused)",
                         (unsigned)response.statusCode);
            status = (response.statusCode == 403U) ? S3_FORBIDDEN : S3_UNEXPECTED_STATUS;
            break;
        }
        if (received + response.bodyLen > bufferSize || total > bufferSize) {
            Platform_Log(PLATFORM_LOG_ERROR, "S3: object of %lu bytes does not fit the %lu-byte buffer",
                         (unsigned long)total, (unsigned long)bufferSize);
            status = S3_BUFFER_TOO_SMALL;
            break;
        }
        memcpy(buffer + received, response.pBody, response.bodyLen);
        received += response.bodyLen;
        complete = (received >= total) || (response.bodyLen == 0U);
    }
    if (session.network.ssl != NULL || session.network.socketFd >= 0) {
        Transport_Disconnect(&session.network);
    }
    if (status == S3_SUCCESS) {
        *objectSize = received;
        Platform_Log(PLATFORM_LOG_INFO, "S3: downloaded %lu bytes from %s in ranges of %u", (unsigned long)received,
                     session.host, (unsigned)S3_RANGE_CHUNK_SIZE);
    }
    return status;
}
