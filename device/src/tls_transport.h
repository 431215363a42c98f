/*
 * TLS transport on wolfSSL implementing the SDK transport interface (coreMQTT/coreHTTP
 * transport_interface.h: TransportRecv_t, TransportSend_t over struct NetworkContext).
 *
 * The server is always verified: against the trusted root CAs given (the bundled Amazon roots on the
 * device), with SNI and a host-name check on the certificate. There is no switch to turn verification off,
 * on any build. A fresh WOLFSSL_CTX is made for every connection because the DeviceAuth certificate renews
 * (on every boot and at least daily) and must be re-read.
 *
 * Only wolfSSL functions marked WOLFSSL_ABI are called: Azure Sphere exports no others to applications
 * (`make device-arm-check` proves it from the ARM objects). Hence TLS 1.2 (wolfTLSv1_2_client_method: AWS IoT
 * Core's ATS endpoints and S3 both accept it; the version-flexible wolfSSLv23_client_method is not ABI), and
 * wolfSSL_CTX_set_verify only where wolfSSL's client default of verifying the server was switched off
 * (OPENSSL_COMPATIBLE_DEFAULTS, as in Debian's build): it is not ABI in older wolfSSL releases.
 */
#ifndef TLS_TRANSPORT_H
#define TLS_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#include "wolfssl_include.h"

/** @brief The transport state; the SDK sees it as the opaque NetworkContext_t. */
struct NetworkContext {
    int socketFd;        /**< -1 when closed. */
    WOLFSSL_CTX *ctx;    /**< NULL when closed. */
    WOLFSSL *ssl;        /**< NULL when closed. */
    uint32_t recvWaitMs; /**< How long Transport_Recv waits on the socket when nothing is buffered. */
};

/* Same typedef as transport_interface.h (a repeated identical typedef is valid C11). */
typedef struct NetworkContext NetworkContext_t;

/** @brief Result of a connect, naming the stage that failed. */
typedef enum TransportStatus {
    TRANSPORT_SUCCESS = 0,
    TRANSPORT_BAD_PARAMETER,
    TRANSPORT_DNS_FAILURE,         /**< getaddrinfo failed. */
    TRANSPORT_TCP_FAILURE,         /**< socket/connect failed. */
    TRANSPORT_CREDENTIALS_FAILURE, /**< A root CA, client certificate or key could not be loaded. */
    TRANSPORT_TLS_FAILURE          /**< Handshake failed: server not trusted, wrong host, client refused. */
} TransportStatus_t;

/** @brief ALPN protocol AWS IoT needs for MQTT over port 443. */
#define TRANSPORT_ALPN_AWS_MQTT "x-amzn-mqtt-ca"

/** @brief What to connect to and with which credentials. */
typedef struct TransportConfig {
    const char *host;                /**< Host name: DNS, SNI and certificate check. */
    uint16_t port;                   /**< TCP port. */
    const char *const *rootCaPaths;  /**< Trusted root CA PEM files; at least one, NULL entries skipped. */
    size_t rootCaCount;              /**< Number of entries in rootCaPaths. */
    const char *clientCertPath;      /**< Client certificate (chain) PEM, or NULL for no client certificate. */
    const char *clientKeyPath;       /**< Client private key PEM, or NULL when the platform holds the key: the
                                          DeviceAuth certificate on Azure Sphere, whose key never leaves the
                                          security subsystem (load the certificate only, as Microsoft does). */
    const char *alpn;                /**< ALPN protocol, or NULL. */
    uint32_t timeoutMs;              /**< Socket send/receive timeout (TCP connect, handshake, writes). */
    uint32_t recvWaitMs;             /**< Transport_Recv waits this long for data before returning 0. */
} TransportConfig_t;

/**
 * @brief Initialise a context to the closed state (fds -1).
 * @param[out] context The context.
 */
void Transport_Init(NetworkContext_t *context);

/**
 * @brief Resolve, connect TCP, and complete a verified TLS handshake.
 * @param[in,out] context A closed context; on failure it is left closed.
 * @param[in] config What to connect to.
 * @return TRANSPORT_SUCCESS or the stage that failed.
 */
TransportStatus_t Transport_Connect(NetworkContext_t *context, const TransportConfig_t *config);

/**
 * @brief Send a TLS close_notify (best effort), close the socket and free the TLS state.
 * @param[in,out] context The context; closed afterwards. Safe on a closed context.
 */
void Transport_Disconnect(NetworkContext_t *context);

/**
 * @brief TransportRecv_t: read what is buffered, or wait on the socket (poll) up to the context's recvWaitMs
 *        for data, so the SDK's waits for CONNACK, SUBACK or an HTTP response sleep instead of spinning.
 * @return Bytes read, 0 when nothing arrived within the wait, negative on error or when the peer closed.
 */
int32_t Transport_Recv(NetworkContext_t *context, void *buffer, size_t bytesToRecv);

/**
 * @brief TransportSend_t: write bytes.
 * @return Bytes written, 0 when the socket cannot take data now, negative on error.
 */
int32_t Transport_Send(NetworkContext_t *context, const void *buffer, size_t bytesToSend);

/** @brief A short description of a status, for logs. */
const char *Transport_StatusString(TransportStatus_t status);

#endif /* TLS_TRANSPORT_H */
