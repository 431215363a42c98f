/*
 * S3 transfers against an HTTPS server started by the test (wolfSSL, 127.0.0.1), standing in for S3 with
 * presigned URLs: the PUT carries the object to the presigned path and query; the download is made of
 * ranged GETs on one kept-alive connection and reassembles the object; a 403 (expired URL) and a server the
 * device does not trust are refused.
 *
 * Usage: test_s3_transfer PKI_DIR
 */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "check.h"
#include "platform.h"
#include "s3_transfer.h"

#define OBJECT_SIZE 1300U

typedef struct FakeS3 {
    int listenFd;
    uint16_t port;
    const char *certPath;
    const char *keyPath;
    int connectionsToServe;
    bool forbid;                 /* answer 403 to everything */
    pthread_t thread;
    uint8_t object[4096];
    size_t objectSize;
    char lastPath[512];
    int putCount;
    int rangedGetCount;
    int connections;
} FakeS3_t;

static bool ReadRequest(WOLFSSL *ssl, char *head, size_t headSize, uint8_t *body, size_t bodySize, size_t *bodyLength)
{
    size_t used = 0;
    while (used + 1U < headSize) {
        if (wolfSSL_read(ssl, head + used, 1) != 1) {
            return false;
        }
        used++;
        head[used] = '\0';
        if (used >= 4U && strcmp(head + used - 4U, "\r\n\r\n") == 0) {
            break;
        }
    }
    const char *contentLength = strcasestr(head, "\r\nContent-Length:");
    size_t length = (contentLength != NULL) ? strtoul(contentLength + 17, NULL, 10) : 0U;
    if (length > bodySize) {
        return false;
    }
    for (size_t done = 0; done < length;) {
        int n = wolfSSL_read(ssl, body + done, (int)(length - done));
        if (n <= 0) {
            return false;
        }
        done += (size_t)n;
    }
    *bodyLength = length;
    return true;
}

static void Respond(WOLFSSL *ssl, const char *status, const char *extraHeaders, const uint8_t *body, size_t length)
{
    char head[512];
    int n = snprintf(head, sizeof(head), "HTTP/1.1 %s\r\nContent-Length: %zu\r\n%s\r\n", status, length, extraHeaders);
    (void)wolfSSL_write(ssl, head, n);
    if (length > 0U) {
        (void)wolfSSL_write(ssl, body, (int)length);
    }
}

static void ServeConnection(FakeS3_t *s3, WOLFSSL *ssl)
{
    static char head[2048];
    static uint8_t body[4096];
    size_t bodyLength = 0;
    while (ReadRequest(ssl, head, sizeof(head), body, sizeof(body), &bodyLength)) {
        char method[8] = {0};
        (void)sscanf(head, "%7s %511s", method, s3->lastPath);
        if (s3->forbid) {
            Respond(ssl, "403 Forbidden", "", (const uint8_t *)"<Error>AccessDenied</Error>", 27);
        } else if (strcmp(method, "PUT") == 0) {
            memcpy(s3->object, body, bodyLength);
            s3->objectSize = bodyLength;
            s3->putCount++;
            Respond(ssl, "200 OK", "ETag: \"x\"\r\n", NULL, 0);
        } else if (strcmp(method, "GET") == 0) {
            unsigned long start = 0;
            unsigned long end = 0;
            const char *range = strcasestr(head, "\r\nRange: bytes=");
            if (range == NULL || sscanf(range + 15, "%lu-%lu", &start, &end) != 2 || start >= s3->objectSize) {
                Respond(ssl, "416 Range Not Satisfiable", "", NULL, 0);
                continue;
            }
            if (end >= s3->objectSize) {
                end = s3->objectSize - 1U;
            }
            char contentRange[128];
            (void)snprintf(contentRange, sizeof(contentRange), "Content-Range: bytes %lu-%lu/%zu\r\n", start, end,
                           s3->objectSize);
            s3->rangedGetCount++;
            Respond(ssl, "206 Partial Content", contentRange, s3->object + start, end - start + 1U);
        }
    }
}

static void *ServeS3(void *arg)
{
    FakeS3_t *s3 = arg;
    WOLFSSL_CTX *ctx = wolfSSL_CTX_new(wolfSSLv23_server_method());
    if (ctx == NULL || wolfSSL_CTX_use_certificate_file(ctx, s3->certPath, WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS ||
        wolfSSL_CTX_use_PrivateKey_file(ctx, s3->keyPath, WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS) {
        wolfSSL_CTX_free(ctx);
        return NULL;
    }
    wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_NONE, NULL);
    for (int i = 0; i < s3->connectionsToServe; i++) {
        int fd = accept(s3->listenFd, NULL, NULL);
        if (fd < 0) {
            break;
        }
        struct timeval tv = {.tv_sec = 30};
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        WOLFSSL *ssl = wolfSSL_new(ctx);
        (void)wolfSSL_set_fd(ssl, fd);
        if (wolfSSL_accept(ssl) == WOLFSSL_SUCCESS) {
            s3->connections++;
            ServeConnection(s3, ssl);
        }
        wolfSSL_free(ssl);
        close(fd);
    }
    wolfSSL_CTX_free(ctx);
    return NULL;
}

static bool Start(FakeS3_t *s3)
{
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t length = sizeof(address);
    s3->listenFd = socket(AF_INET, SOCK_STREAM, 0);
    if (s3->listenFd < 0 || bind(s3->listenFd, (struct sockaddr *)&address, sizeof(address)) != 0 ||
        listen(s3->listenFd, 4) != 0 || getsockname(s3->listenFd, (struct sockaddr *)&address, &length) != 0) {
        return false;
    }
    s3->port = ntohs(address.sin_port);
    return pthread_create(&s3->thread, NULL, ServeS3, s3) == 0;
}

static void Stop(FakeS3_t *s3)
{
    (void)pthread_join(s3->thread, NULL);
    close(s3->listenFd);
}

int main(int argc, char *argv[])
{
    static char paths[7][600];
    static FakeS3_t s3;
    static FakeS3_t forbidden;
    static FakeS3_t untrusted;
    static uint8_t object[OBJECT_SIZE];
    static uint8_t downloaded[2048];
    char url[256];
    size_t size = 0;

    if (argc != 2) {
        fprintf(stderr, "usage: %s PKI_DIR\n", argv[0]);
        return 2;
    }
    const char *names[] = {"device-upper.pem", "device-upper.key", "server-ca.pem", "server.pem",
                           "server.key",       "wrong-host.pem",   "wrong-host.key"};
    for (int i = 0; i < 7; i++) {
        (void)snprintf(paths[i], sizeof(paths[i]), "%s/%s", argv[1], names[i]);
    }
    signal(SIGPIPE, SIG_IGN);
    /* The platform hands the S3 module its trusted roots: the test server's CA. */
    char *platformArgs[] = {argv[0], "--cert", paths[0], "--key", paths[1], "--ca", paths[2], NULL};
    CHECK(Platform_Init(7, platformArgs) == PLATFORM_SUCCESS);
    wolfSSL_Init();
    for (size_t i = 0; i < sizeof(object); i++) {
        object[i] = (uint8_t)('a' + (i * 7U) % 26U);
    }

    /* Upload then download in ranges (1300 bytes = 3 ranges of S3_RANGE_CHUNK_SIZE 512): two connections. */
    s3.certPath = paths[3];
    s3.keyPath = paths[4];
    s3.connectionsToServe = 2;
    CHECK(Start(&s3));
    (void)snprintf(url, sizeof(url), "https://localhost:%u/demo-bucket/dir/object.txt?X-Amz-Signature=abc&X-Amz-Expires=3600",
                   (unsigned)s3.port);
    CHECK(S3_Upload(url, object, sizeof(object)) == S3_SUCCESS);
    CHECK(S3_Download(url, downloaded, sizeof(downloaded), &size) == S3_SUCCESS);
    Stop(&s3);
    CHECK(s3.putCount == 1 && s3.objectSize == sizeof(object));
    CHECK(strcmp(s3.lastPath, "/demo-bucket/dir/object.txt?X-Amz-Signature=abc&X-Amz-Expires=3600") == 0);
    CHECK(size == sizeof(object) && memcmp(downloaded, object, sizeof(object)) == 0);
    CHECK(s3.rangedGetCount == 3);
    CHECK(s3.connections == 2);

    /* The caller's buffer is too small for the object: refused, not truncated silently. */
    s3.connectionsToServe = 1;
    s3.connections = 0;
    CHECK(Start(&s3));
    (void)snprintf(url, sizeof(url), "https://localhost:%u/demo-bucket/object.txt", (unsigned)s3.port);
    CHECK(S3_Download(url, downloaded, 600, &size) == S3_BUFFER_TOO_SMALL);
    Stop(&s3);

    /* Expired presigned URL: S3 answers 403. */
    forbidden.certPath = paths[3];
    forbidden.keyPath = paths[4];
    forbidden.forbid = true;
    forbidden.connectionsToServe = 2;
    CHECK(Start(&forbidden));
    (void)snprintf(url, sizeof(url), "https://localhost:%u/demo-bucket/object.txt", (unsigned)forbidden.port);
    CHECK(S3_Upload(url, object, 10) == S3_UNEXPECTED_STATUS);
    CHECK(S3_Download(url, downloaded, sizeof(downloaded), &size) == S3_UNEXPECTED_STATUS);
    Stop(&forbidden);

    /* A server whose certificate names another host: refused in the handshake, no request sent. */
    untrusted.certPath = paths[5];
    untrusted.keyPath = paths[6];
    untrusted.connectionsToServe = 1;
    CHECK(Start(&untrusted));
    (void)snprintf(url, sizeof(url), "https://localhost:%u/demo-bucket/object.txt", (unsigned)untrusted.port);
    CHECK(S3_Upload(url, object, 10) == S3_CONNECT_FAILURE);
    Stop(&untrusted);
    CHECK(untrusted.putCount == 0);

    CHECK(S3_Upload("http://localhost/bucket/key", object, 10) == S3_BAD_PARAMETER);
    Platform_Close();
    wolfSSL_Cleanup();
    return CHECK_DONE();
}
