/* TLS transport on wolfSSL: see tls_transport.h. */
#include "tls_transport.h"

#include <errno.h>
#include <stdbool.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "platform.h"

#if defined(FP_ECC)
#include <wolfssl/wolfcrypt/ecc.h>
#endif

#if !defined(DEVICE_WOLFSSL_HAS_SNI)
#error "wolfSSL is built without SNI (HAVE_SNI): AWS IoT and S3 need it"
#endif

void Transport_Init(NetworkContext_t *context)
{
    if (context != NULL) {
        context->socketFd = -1;
        context->ctx = NULL;
        context->ssl = NULL;
        context->recvWaitMs = 0U;
    }
}

static void SetSocketTimeouts(int fd, uint32_t timeoutMs)
{
    struct timeval tv = {.tv_sec = (time_t)(timeoutMs / 1000U), .tv_usec = (suseconds_t)((timeoutMs % 1000U) * 1000U)};
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    /* SO_SNDTIMEO also bounds connect() on Linux. */
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static TransportStatus_t ConnectTcp(NetworkContext_t *context, const TransportConfig_t *config)
{
    char service[8];
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP};
    struct addrinfo *addresses = NULL;

    (void)snprintf(service, sizeof(service), "%u", (unsigned)config->port);
    int rc = getaddrinfo(config->host, service, &hints, &addresses);
    if (rc != 0) {
        Platform_Log(PLATFORM_LOG_ERROR, "DNS: cannot resolve %s: %s; check the endpoint and the network",
                     config->host, gai_strerror(rc));
        return TRANSPORT_DNS_FAILURE;
    }
    int lastErrno = 0;
    for (struct addrinfo *a = addresses; a != NULL; a = a->ai_next) {
        int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) {
            lastErrno = errno;
            continue;
        }
        SetSocketTimeouts(fd, config->timeoutMs);
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
            context->socketFd = fd;
            break;
        }
        lastErrno = errno;
        close(fd);
    }
    freeaddrinfo(addresses);
    if (context->socketFd < 0) {
        Platform_Log(PLATFORM_LOG_ERROR,
                     "TCP: cannot connect to %s:%u: %s; check app_manifest.json AllowedConnections and the port",
                     config->host, (unsigned)config->port, strerror(lastErrno));
        return TRANSPORT_TCP_FAILURE;
    }
    return TRANSPORT_SUCCESS;
}

static TransportStatus_t LoadCredentials(WOLFSSL_CTX *ctx, const TransportConfig_t *config)
{
    size_t loaded = 0;
    for (size_t i = 0; i < config->rootCaCount; i++) {
        if (config->rootCaPaths[i] == NULL) {
            continue;
        }
        if (wolfSSL_CTX_load_verify_locations(ctx, config->rootCaPaths[i], NULL) != WOLFSSL_SUCCESS) {
            Platform_Log(PLATFORM_LOG_ERROR, "TLS: cannot load root CA %s", config->rootCaPaths[i]);
            return TRANSPORT_CREDENTIALS_FAILURE;
        }
        loaded++;
    }
    if (loaded == 0U) {
        Platform_Log(PLATFORM_LOG_ERROR, "TLS: no trusted root CA: refusing to connect without server verification");
        return TRANSPORT_CREDENTIALS_FAILURE;
    }
#if defined(OPENSSL_COMPATIBLE_DEFAULTS)
    /* A wolfSSL built with OpenSSL-compatible defaults (Debian's) does not verify unless told to. wolfSSL's own
     * default, which Azure Sphere's wolfSSL keeps (Microsoft's samples never call this), verifies the server;
     * not calling it there avoids a function older Azure Sphere wolfSSL ABIs lack. */
    wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_PEER, NULL);
#endif

    if (config->clientCertPath != NULL) {
        if (wolfSSL_CTX_use_certificate_chain_file(ctx, config->clientCertPath) != WOLFSSL_SUCCESS) {
            Platform_Log(PLATFORM_LOG_ERROR, "TLS: cannot load client certificate %s", config->clientCertPath);
            return TRANSPORT_CREDENTIALS_FAILURE;
        }
        /* Without a key file the platform signs with the certificate's key (Azure Sphere's DAA key); key files
         * exist only on the host, whose platform loads them. */
        if (Platform_UseClientKey(ctx, config->clientKeyPath) != PLATFORM_SUCCESS) {
            Platform_Log(PLATFORM_LOG_ERROR, "TLS: cannot load client key %s", config->clientKeyPath);
            return TRANSPORT_CREDENTIALS_FAILURE;
        }
    }
    return TRANSPORT_SUCCESS;
}

static TransportStatus_t ConnectTls(NetworkContext_t *context, const TransportConfig_t *config)
{
    context->ctx = wolfSSL_CTX_new(wolfTLSv1_2_client_method());
    if (context->ctx == NULL) {
        Platform_Log(PLATFORM_LOG_ERROR, "TLS: wolfSSL_CTX_new failed (out of memory?)");
        return TRANSPORT_TLS_FAILURE;
    }
    TransportStatus_t status = LoadCredentials(context->ctx, config);
    if (status != TRANSPORT_SUCCESS) {
        return status;
    }
    context->ssl = wolfSSL_new(context->ctx);
    if (context->ssl == NULL) {
        Platform_Log(PLATFORM_LOG_ERROR, "TLS: wolfSSL_new failed (out of memory?)");
        return TRANSPORT_TLS_FAILURE;
    }
    size_t hostLength = strlen(config->host);
    if (wolfSSL_UseSNI(context->ssl, WOLFSSL_SNI_HOST_NAME, config->host, (unsigned short)hostLength) !=
            WOLFSSL_SUCCESS ||
        wolfSSL_check_domain_name(context->ssl, config->host) != WOLFSSL_SUCCESS) {
        Platform_Log(PLATFORM_LOG_ERROR, "TLS: cannot set SNI / host name check for %s", config->host);
        return TRANSPORT_TLS_FAILURE;
    }
    if (config->alpn != NULL) {
#if defined(DEVICE_WOLFSSL_HAS_ALPN)
        char alpn[32];
        (void)snprintf(alpn, sizeof(alpn), "%s", config->alpn);
        if (wolfSSL_UseALPN(context->ssl, alpn, (unsigned int)strlen(alpn), WOLFSSL_ALPN_FAILED_ON_MISMATCH) !=
            WOLFSSL_SUCCESS) {
            Platform_Log(PLATFORM_LOG_ERROR, "TLS: cannot set ALPN %s", config->alpn);
            return TRANSPORT_TLS_FAILURE;
        }
#else
        Platform_Log(PLATFORM_LOG_ERROR, "TLS: this wolfSSL has no ALPN; use port 8883");
        return TRANSPORT_TLS_FAILURE;
#endif
    }
    if (wolfSSL_set_fd(context->ssl, context->socketFd) != WOLFSSL_SUCCESS) {
        return TRANSPORT_TLS_FAILURE;
    }
    if (wolfSSL_connect(context->ssl) != WOLFSSL_SUCCESS) {
        int error = wolfSSL_get_error(context->ssl, 0);
        Platform_Log(PLATFORM_LOG_ERROR,
                     "TLS: handshake with %s:%u failed: wolfSSL error %d (server certificate must chain to the "
                     "bundled root CA and name the host; the server may have refused the client certificate)",
                     config->host, (unsigned)config->port, error);
        return TRANSPORT_TLS_FAILURE;
    }
    return TRANSPORT_SUCCESS;
}

TransportStatus_t Transport_Connect(NetworkContext_t *context, const TransportConfig_t *config)
{
    if (context == NULL || config == NULL || config->host == NULL || config->host[0] == '\0' ||
        config->port == 0U || config->rootCaPaths == NULL || config->rootCaCount == 0U ||
        context->socketFd >= 0 || context->ssl != NULL) {
        return TRANSPORT_BAD_PARAMETER;
    }
    /* Once per process: wolfSSL_Init is reference counted and the library stays up for the app's life. */
    static bool wolfSslReady = false;
    if (!wolfSslReady) {
        if (wolfSSL_Init() != WOLFSSL_SUCCESS) {
            return TRANSPORT_TLS_FAILURE;
        }
        wolfSslReady = true;
    }
    context->recvWaitMs = config->recvWaitMs;
    TransportStatus_t status = ConnectTcp(context, config);
    if (status == TRANSPORT_SUCCESS) {
        status = ConnectTls(context, config);
    }
    if (status != TRANSPORT_SUCCESS) {
        Transport_Disconnect(context);
        return status;
    }
    return TRANSPORT_SUCCESS;
}

void Transport_Disconnect(NetworkContext_t *context)
{
    if (context == NULL) {
        return;
    }
    bool wasOpen = (context->ssl != NULL) && (context->socketFd >= 0);
    if (context->ssl != NULL) {
        if (wasOpen) {
            (void)wolfSSL_shutdown(context->ssl);
        }
        wolfSSL_free(context->ssl);
        context->ssl = NULL;
    }
    if (context->ctx != NULL) {
        wolfSSL_CTX_free(context->ctx);
        context->ctx = NULL;
    }
    if (context->socketFd >= 0) {
        close(context->socketFd);
        context->socketFd = -1;
    }
#if defined(FP_ECC)
    /* A wolfSSL with the ECC fixed-point cache keeps a table per verified key until told otherwise (measured:
     * ~800 KiB per handshake with Debian's build); sessions are rare here and RAM is 256 KiB, so drop it. */
    wc_ecc_fp_free();
#endif
}

int32_t Transport_Recv(NetworkContext_t *context, void *buffer, size_t bytesToRecv)
{
    if (context == NULL || context->ssl == NULL || buffer == NULL || bytesToRecv == 0U) {
        return -1;
    }
    /* Wait on the socket (bounded) when nothing is buffered: the SDK's waits sleep here instead of spinning. */
    if (wolfSSL_pending(context->ssl) == 0) {
        struct pollfd fds = {.fd = context->socketFd, .events = POLLIN};
        int waitMs = (context->recvWaitMs > (uint32_t)INT32_MAX) ? INT32_MAX : (int)context->recvWaitMs;
        int ready = poll(&fds, 1, waitMs);
        if (ready == 0) {
            return 0;
        }
        if (ready < 0) {
            return (errno == EINTR) ? 0 : -1;
        }
    }
    int size = (bytesToRecv > (size_t)INT32_MAX) ? INT32_MAX : (int)bytesToRecv;
    int rc = wolfSSL_read(context->ssl, buffer, size);
    if (rc > 0) {
        return (int32_t)rc;
    }
    int error = wolfSSL_get_error(context->ssl, rc);
    if (error == WOLFSSL_ERROR_WANT_READ || error == WOLFSSL_ERROR_WANT_WRITE) {
        return 0;
    }
    Platform_Log(PLATFORM_LOG_DEBUG, "TLS: read ended: %d", error);
    return -1;
}

int32_t Transport_Send(NetworkContext_t *context, const void *buffer, size_t bytesToSend)
{
    if (context == NULL || context->ssl == NULL || buffer == NULL || bytesToSend == 0U) {
        return -1;
    }
    int size = (bytesToSend > (size_t)INT32_MAX) ? INT32_MAX : (int)bytesToSend;
    int rc = wolfSSL_write(context->ssl, buffer, size);
    if (rc > 0) {
        return (int32_t)rc;
    }
    int error = wolfSSL_get_error(context->ssl, rc);
    if (error == WOLFSSL_ERROR_WANT_READ || error == WOLFSSL_ERROR_WANT_WRITE) {
        return 0;
    }
    Platform_Log(PLATFORM_LOG_DEBUG, "TLS: write failed: %d", error);
    return -1;
}

const char *Transport_StatusString(TransportStatus_t status)
{
    switch (status) {
    case TRANSPORT_SUCCESS:
        return "success";
    case TRANSPORT_BAD_PARAMETER:
        return "bad parameter";
    case TRANSPORT_DNS_FAILURE:
        return "DNS";
    case TRANSPORT_TCP_FAILURE:
        return "TCP";
    case TRANSPORT_CREDENTIALS_FAILURE:
        return "TLS credentials";
    case TRANSPORT_TLS_FAILURE:
        return "TLS handshake";
    default:
        return "unknown";
    }
}
