/*
 * Trust anchors against the two chain shapes AWS IoT Core's ATS endpoints and S3 present (PKI from
 * scripts/cross_signed_pki.sh, shaped like Amazon's): a chain that ends below the root (server, intermediate)
 * and one that ends in the cross-signed root (server, intermediate, Amazon Root CA 1 issued by Starfield
 * Services Root G2). The device's anchors (both roots, as it bundles Amazon Root CA 1 and the Starfield root)
 * verify both. The Starfield-like root alone verifies the cross-signed chain (the only path a wolfSSL without
 * alternate chains can take) but not the other; the Amazon-like root alone verifies the cross-signed chain
 * only when wolfSSL has WOLFSSL_ALT_CERT_CHAINS.
 *
 * Usage: test_trust_chains CROSS_PKI_DIR
 */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/ecc.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "check.h"
#include "tls_transport.h"

static char pkiDir[512];

static const char *PkiPath(const char *name)
{
    static char paths[8][600];
    static int next;
    char *path = paths[next++ % 8];
    (void)snprintf(path, 600, "%s/%s", pkiDir, name);
    return path;
}

typedef struct ChainServer {
    const char *chainPath;
    int listenFd;
    uint16_t port;
    pthread_t thread;
    bool handshakeOk;
} ChainServer_t;

/* Debian's wolfSSL keeps an ECC fixed-point cache per thread (FP_ECC): a server thread frees its own. */
static void FreeThreadEccCache(void)
{
#if defined(FP_ECC)
    wc_ecc_fp_free();
#endif
}

static void *ServeOne(void *arg)
{
    ChainServer_t *server = arg;
    int fd = accept(server->listenFd, NULL, NULL);
    if (fd < 0) {
        return NULL;
    }
    struct timeval tv = {.tv_sec = 30};
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    WOLFSSL_CTX *ctx = wolfSSL_CTX_new(wolfSSLv23_server_method());
    /* The whole chain file is sent: that is what decides which anchors can verify it. */
    if (ctx != NULL && wolfSSL_CTX_use_certificate_chain_file(ctx, server->chainPath) == WOLFSSL_SUCCESS &&
        wolfSSL_CTX_use_PrivateKey_file(ctx, PkiPath("server.key"), WOLFSSL_FILETYPE_PEM) == WOLFSSL_SUCCESS) {
        wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, NULL);
        WOLFSSL *ssl = wolfSSL_new(ctx);
        if (ssl != NULL) {
            (void)wolfSSL_set_fd(ssl, fd);
            server->handshakeOk = (wolfSSL_accept(ssl) == WOLFSSL_SUCCESS);
            char sink[16];
            while (server->handshakeOk && wolfSSL_read(ssl, sink, sizeof(sink)) > 0) {
            }
            wolfSSL_free(ssl);
        }
    }
    wolfSSL_CTX_free(ctx);
    close(fd);
    FreeThreadEccCache();
    return NULL;
}

/* Serves chainFile once and connects with the given anchors; true when the transport verified the server. */
static bool Verifies(const char *chainFile, const char *const *anchors, size_t anchorCount)
{
    ChainServer_t server = {.chainPath = PkiPath(chainFile)};
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t length = sizeof(address);
    server.listenFd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(server.listenFd >= 0 && bind(server.listenFd, (struct sockaddr *)&address, sizeof(address)) == 0 &&
          listen(server.listenFd, 1) == 0 && getsockname(server.listenFd, (struct sockaddr *)&address, &length) == 0);
    server.port = ntohs(address.sin_port);
    CHECK(pthread_create(&server.thread, NULL, ServeOne, &server) == 0);

    TransportConfig_t config = {.host = "localhost", .port = server.port, .rootCaPaths = anchors,
                                .rootCaCount = anchorCount, .timeoutMs = 30000, .recvWaitMs = 100};
    NetworkContext_t context;
    Transport_Init(&context);
    TransportStatus_t status = Transport_Connect(&context, &config);
    Transport_Disconnect(&context);
    (void)pthread_join(server.thread, NULL);
    close(server.listenFd);
    fprintf(stderr, "%s with %zu anchor(s) [%s%s]: %s\n", chainFile, anchorCount, anchors[0],
            anchorCount > 1 ? ", ..." : "", Transport_StatusString(status));
    CHECK(status == TRANSPORT_SUCCESS || status == TRANSPORT_TLS_FAILURE);
    return status == TRANSPORT_SUCCESS;
}

int main(int argc, char *argv[])
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CROSS_PKI_DIR\n", argv[0]);
        return 2;
    }
    (void)snprintf(pkiDir, sizeof(pkiDir), "%s", argv[1]);
    wolfSSL_Init();
    static char rootA[600];
    static char rootS[600];
    (void)snprintf(rootA, sizeof(rootA), "%s", PkiPath("root-a.pem"));
    (void)snprintf(rootS, sizeof(rootS), "%s", PkiPath("root-s.pem"));
    const char *device[] = {rootA, rootS};
    const char *starfieldOnly[] = {rootS};
    const char *amazonOnly[] = {rootA};

    /* The device's anchors verify both shapes. */
    CHECK(Verifies("chain-plain.pem", device, 2));
    CHECK(Verifies("chain-cross.pem", device, 2));
    /* The cross-signing root verifies the cross-signed chain, and only that one. */
    CHECK(Verifies("chain-cross.pem", starfieldOnly, 1));
    CHECK(!Verifies("chain-plain.pem", starfieldOnly, 1));
    /* Amazon Root CA 1 alone: the plain chain always; the cross-signed one only with alternate chains. */
    CHECK(Verifies("chain-plain.pem", amazonOnly, 1));
#if defined(WOLFSSL_ALT_CERT_CHAINS)
    CHECK(Verifies("chain-cross.pem", amazonOnly, 1));
#else
    CHECK(!Verifies("chain-cross.pem", amazonOnly, 1));
#endif
    wolfSSL_Cleanup();
    return CHECK_DONE();
}
