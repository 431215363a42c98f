/*
 * The TLS transport against a real wolfSSL server started by the test on 127.0.0.1 (one thread, one
 * connection per case, no sleeps): mutual TLS succeeds and the server sees the device certificate; a server
 * from an untrusted CA, a server certificate for another host name, and a server requiring a client
 * certificate that gets none are all refused; ALPN is offered and negotiated when asked for; Transport_Recv
 * waits on the socket for data that comes later instead of returning at once (the SDK's waits must sleep).
 */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/ecc.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "check.h"
#include "tls_transport.h"

#define GREETING "hello-from-server"

static char pkiDir[512];

static const char *PkiPath(const char *name)
{
    static char paths[8][600];
    static int next;
    char *path = paths[next++ % 8];
    (void)snprintf(path, 600, "%s/%s", pkiDir, name);
    return path;
}

typedef struct TestServer {
    const char *certPath;
    const char *keyPath;
    const char *clientCaPath; /* NULL: do not ask for a client certificate */
    const char *alpn;         /* NULL: no ALPN */
    unsigned greetingDelayMs; /* the greeting is sent this long after the handshake */
    int listenFd;
    uint16_t port;
    pthread_t thread;
    bool handshakeOk;
    char peerCommonName[160];
    char negotiatedAlpn[32];
} TestServer_t;

/* Debian's wolfSSL keeps an ECC fixed-point cache per thread (FP_ECC): a server thread frees its own. */
static void FreeThreadEccCache(void)
{
#if defined(FP_ECC)
    wc_ecc_fp_free();
#endif
}

static void *ServeOne(void *arg)
{
    TestServer_t *server = arg;
    int fd = accept(server->listenFd, NULL, NULL);
    if (fd < 0) {
        return NULL;
    }
    struct timeval tv = {.tv_sec = 30};
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    WOLFSSL_CTX *ctx = wolfSSL_CTX_new(wolfSSLv23_server_method());
    if (ctx != NULL && wolfSSL_CTX_use_certificate_file(ctx, server->certPath, WOLFSSL_FILETYPE_PEM) == WOLFSSL_SUCCESS &&
        wolfSSL_CTX_use_PrivateKey_file(ctx, server->keyPath, WOLFSSL_FILETYPE_PEM) == WOLFSSL_SUCCESS) {
        if (server->clientCaPath != NULL) {
            (void)wolfSSL_CTX_load_verify_locations(ctx, server->clientCaPath, NULL);
            wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_PEER | WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        } else {
            wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, NULL);
        }
        WOLFSSL *ssl = wolfSSL_new(ctx);
        if (ssl != NULL) {
            if (server->alpn != NULL) {
                char alpn[32];
                (void)snprintf(alpn, sizeof(alpn), "%s", server->alpn);
                (void)wolfSSL_UseALPN(ssl, alpn, (unsigned int)strlen(alpn), WOLFSSL_ALPN_FAILED_ON_MISMATCH);
            }
            (void)wolfSSL_set_fd(ssl, fd);
            if (wolfSSL_accept(ssl) == WOLFSSL_SUCCESS) {
                server->handshakeOk = true;
                WOLFSSL_X509 *peer = wolfSSL_get_peer_certificate(ssl);
                if (peer != NULL) {
                    (void)wolfSSL_X509_NAME_get_text_by_NID(wolfSSL_X509_get_subject_name(peer), NID_commonName,
                                                            server->peerCommonName, (int)sizeof(server->peerCommonName));
                    wolfSSL_X509_free(peer);
                }
                char *protocol = NULL;
                unsigned short protocolLength = 0;
                if (wolfSSL_ALPN_GetProtocol(ssl, &protocol, &protocolLength) == WOLFSSL_SUCCESS &&
                    protocolLength < sizeof(server->negotiatedAlpn)) {
                    memcpy(server->negotiatedAlpn, protocol, protocolLength);
                    server->negotiatedAlpn[protocolLength] = '\0';
                }
                if (server->greetingDelayMs > 0U) {
                    /* Orders the test: the client is already waiting in Transport_Recv (no assertion on time). */
                    (void)usleep(server->greetingDelayMs * 1000U);
                }
                (void)wolfSSL_write(ssl, GREETING, (int)strlen(GREETING));
                /* Wait for the client to hang up. */
                char sink[64];
                while (wolfSSL_read(ssl, sink, sizeof(sink)) > 0) {
                }
            } else {
                /* A TLS 1.3 client learns of a refused certificate after its own handshake: read it out. */
                char sink[64];
                (void)wolfSSL_read(ssl, sink, sizeof(sink));
            }
            wolfSSL_free(ssl);
        }
    }
    wolfSSL_CTX_free(ctx);
    close(fd);
    FreeThreadEccCache();
    return NULL;
}

static bool StartServer(TestServer_t *server)
{
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t length = sizeof(address);
    server->listenFd = socket(AF_INET, SOCK_STREAM, 0);
    if (server->listenFd < 0 || bind(server->listenFd, (struct sockaddr *)&address, sizeof(address)) != 0 ||
        listen(server->listenFd, 1) != 0 ||
        getsockname(server->listenFd, (struct sockaddr *)&address, &length) != 0) {
        return false;
    }
    server->port = ntohs(address.sin_port);
    return pthread_create(&server->thread, NULL, ServeOne, server) == 0;
}

static void StopServer(TestServer_t *server)
{
    (void)pthread_join(server->thread, NULL);
    close(server->listenFd);
}

static int firstRecvResult;

/* Connects and reads the greeting with Transport_Recv alone (no poll of its own); true only if both work. */
static bool ConnectAndReadGreeting(TestServer_t *server, const char *host, const char *trustedCa, bool withClientCert,
                                   const char *alpn, TransportStatus_t *status)
{
    const char *roots[] = {trustedCa};
    TransportConfig_t config = {
        .host = host,
        .port = server->port,
        .rootCaPaths = roots,
        .rootCaCount = 1,
        .clientCertPath = withClientCert ? PkiPath("device-upper.pem") : NULL,
        .clientKeyPath = withClientCert ? PkiPath("device-upper.key") : NULL,
        .alpn = alpn,
        .timeoutMs = 30000,
        .recvWaitMs = 30000,
    };
    NetworkContext_t context;
    char greeting[sizeof(GREETING)] = {0};
    size_t received = 0;

    Transport_Init(&context);
    *status = Transport_Connect(&context, &config);
    firstRecvResult = -2;
    if (*status == TRANSPORT_SUCCESS) {
        for (int calls = 0; received < strlen(GREETING) && calls < 16; calls++) {
            int32_t n = Transport_Recv(&context, greeting + received, strlen(GREETING) - received);
            if (calls == 0) {
                firstRecvResult = (int)n;
            }
            if (n <= 0) {
                break;
            }
            received += (size_t)n;
        }
    }
    Transport_Disconnect(&context);
    CHECK(context.socketFd == -1 && context.ssl == NULL && context.ctx == NULL);
    return *status == TRANSPORT_SUCCESS && received == strlen(GREETING) && strcmp(greeting, GREETING) == 0;
}

static char expectedDeviceId[200];

static void ReadExpectedDeviceId(void)
{
    FILE *f = fopen(PkiPath("device-id.txt"), "r");
    if (f != NULL) {
        if (fgets(expectedDeviceId, sizeof(expectedDeviceId), f) == NULL) {
            expectedDeviceId[0] = '\0';
        }
        fclose(f);
    }
    expectedDeviceId[strcspn(expectedDeviceId, "\n")] = '\0';
}

int main(int argc, char *argv[])
{
    TransportStatus_t status;
    if (argc != 2) {
        fprintf(stderr, "usage: %s PKI_DIR\n", argv[0]);
        return 2;
    }
    (void)snprintf(pkiDir, sizeof(pkiDir), "%s", argv[1]);
    ReadExpectedDeviceId();
    wolfSSL_Init();

    /* 1. Mutual TLS: server verified by its CA and host name, device certificate accepted by the server. */
    {
        TestServer_t server = {.certPath = PkiPath("server.pem"), .keyPath = PkiPath("server.key"),
                               .clientCaPath = PkiPath("device-ca.pem")};
        CHECK(StartServer(&server));
        CHECK(ConnectAndReadGreeting(&server, "localhost", PkiPath("server-ca.pem"), true, NULL, &status));
        CHECK(status == TRANSPORT_SUCCESS);
        StopServer(&server);
        CHECK(server.handshakeOk);
        /* The server saw the device certificate (its CN as Azure Sphere writes it, upper case). */
        char upper[200];
        (void)snprintf(upper, sizeof(upper), "%s", expectedDeviceId);
        for (char *c = upper; *c != '\0'; c++) {
            if (*c >= 'a' && *c <= 'f') {
                *c = (char)(*c - 'a' + 'A');
            }
        }
        CHECK(strcmp(server.peerCommonName, upper) == 0);
    }

    /* 2. Server certificate from a CA the device does not trust: refused in the handshake. */
    {
        TestServer_t server = {.certPath = PkiPath("server.pem"), .keyPath = PkiPath("server.key")};
        CHECK(StartServer(&server));
        CHECK(!ConnectAndReadGreeting(&server, "localhost", PkiPath("other-ca.pem"), true, NULL, &status));
        CHECK(status == TRANSPORT_TLS_FAILURE);
        StopServer(&server);
        CHECK(!server.handshakeOk);
    }

    /* 3. Trusted CA but the certificate names another host: refused by the host name check. */
    {
        TestServer_t server = {.certPath = PkiPath("wrong-host.pem"), .keyPath = PkiPath("wrong-host.key")};
        CHECK(StartServer(&server));
        CHECK(!ConnectAndReadGreeting(&server, "localhost", PkiPath("server-ca.pem"), true, NULL, &status));
        CHECK(status == TRANSPORT_TLS_FAILURE);
        StopServer(&server);
        CHECK(!server.handshakeOk);
    }

    /* 4. Server requires a client certificate and gets none: no session (TLS 1.2 fails the handshake,
     *    TLS 1.3 fails the first read). */
    {
        TestServer_t server = {.certPath = PkiPath("server.pem"), .keyPath = PkiPath("server.key"),
                               .clientCaPath = PkiPath("device-ca.pem")};
        CHECK(StartServer(&server));
        CHECK(!ConnectAndReadGreeting(&server, "localhost", PkiPath("server-ca.pem"), false, NULL, &status));
        StopServer(&server);
        CHECK(!server.handshakeOk);
    }

    /* 5. ALPN for MQTT over 443: offered by the device, negotiated by the server. */
    {
        TestServer_t server = {.certPath = PkiPath("server.pem"), .keyPath = PkiPath("server.key"),
                               .clientCaPath = PkiPath("device-ca.pem"), .alpn = TRANSPORT_ALPN_AWS_MQTT};
        CHECK(StartServer(&server));
        CHECK(ConnectAndReadGreeting(&server, "localhost", PkiPath("server-ca.pem"), true, TRANSPORT_ALPN_AWS_MQTT,
                                     &status));
        StopServer(&server);
        CHECK(strcmp(server.negotiatedAlpn, TRANSPORT_ALPN_AWS_MQTT) == 0);
    }

    /* 5b. The greeting comes well after the handshake: the first Transport_Recv waits for it (a receive that
     *     returns at once would give 0 and make coreMQTT and coreHTTP spin while they wait). */
    {
        TestServer_t server = {.certPath = PkiPath("server.pem"), .keyPath = PkiPath("server.key"),
                               .clientCaPath = PkiPath("device-ca.pem"), .greetingDelayMs = 300};
        CHECK(StartServer(&server));
        CHECK(ConnectAndReadGreeting(&server, "localhost", PkiPath("server-ca.pem"), true, NULL, &status));
        CHECK(firstRecvResult == (int)strlen(GREETING));
        StopServer(&server);
    }

    /* 6. Nothing to verify the server against: refused before the handshake, never "trust anything". */
    {
        TestServer_t server = {.certPath = PkiPath("server.pem"), .keyPath = PkiPath("server.key")};
        const char *noRoots[] = {NULL};
        TransportConfig_t config = {.host = "localhost", .rootCaPaths = noRoots, .rootCaCount = 1, .timeoutMs = 30000};
        NetworkContext_t context;
        CHECK(StartServer(&server));
        config.port = server.port;
        Transport_Init(&context);
        CHECK(Transport_Connect(&context, &config) == TRANSPORT_CREDENTIALS_FAILURE);
        CHECK(context.socketFd == -1 && context.ssl == NULL);
        StopServer(&server);
        CHECK(!server.handshakeOk);
    }

    /* 7. Stages are told apart: nothing listening (TCP), a name that cannot resolve (DNS), bad arguments. */
    {
        const char *roots[] = {PkiPath("server-ca.pem")};
        TransportConfig_t config = {.host = "127.0.0.1", .port = 1, .rootCaPaths = roots, .rootCaCount = 1,
                                    .timeoutMs = 30000};
        NetworkContext_t context;
        Transport_Init(&context);
        CHECK(Transport_Connect(&context, &config) == TRANSPORT_TCP_FAILURE);
        CHECK(context.socketFd == -1);
        config.host = "host.invalid";
        CHECK(Transport_Connect(&context, &config) == TRANSPORT_DNS_FAILURE);
        config.host = NULL;
        CHECK(Transport_Connect(&context, &config) == TRANSPORT_BAD_PARAMETER);
        CHECK(Transport_Recv(&context, expectedDeviceId, 1) < 0);
        CHECK(Transport_Send(&context, "x", 1) < 0);
    }

    wolfSSL_Cleanup();
    return CHECK_DONE();
}
