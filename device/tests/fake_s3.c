/* A stand-in for S3 behind presigned URLs: see fake_s3.h. */
#include "fake_s3.h"

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/ecc.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>


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
        bool preset = s3->presetPathContaining != NULL && strstr(s3->lastPath, s3->presetPathContaining) != NULL;
        const uint8_t *object = preset ? (const uint8_t *)s3->presetObject : s3->object;
        size_t objectSize = preset ? strlen(s3->presetObject) : s3->objectSize;
        if (s3->forbid || (s3->forbidPathContaining != NULL && strstr(s3->lastPath, s3->forbidPathContaining) != NULL)) {
            s3->forbiddenCount++;
            Respond(ssl, "403 Forbidden", "", (const uint8_t *)"<Error>AccessDenied</Error>", 27);
        } else if (strcmp(method, "PUT") == 0) {
            (void)snprintf(s3->putPath, sizeof(s3->putPath), "%s", s3->lastPath);
            memcpy(s3->object, body, bodyLength);
            s3->objectSize = bodyLength;
            s3->putCount++;
            Respond(ssl, "200 OK", "ETag: \"x\"\r\n", NULL, 0);
        } else if (strcmp(method, "GET") == 0) {
            unsigned long start = 0;
            unsigned long end = 0;
            const char *range = strcasestr(head, "\r\nRange: bytes=");
            if (range == NULL || sscanf(range + 15, "%lu-%lu", &start, &end) != 2 || start >= objectSize) {
                Respond(ssl, "416 Range Not Satisfiable", "", NULL, 0);
                continue;
            }
            if (end >= objectSize) {
                end = objectSize - 1U;
            }
            char contentRange[128];
            (void)snprintf(contentRange, sizeof(contentRange), "Content-Range: bytes %lu-%lu/%zu\r\n", start, end,
                           objectSize);
            s3->rangedGetCount++;
            Respond(ssl, "206 Partial Content", contentRange, object + start, end - start + 1U);
        }
    }
}

/* Debian's wolfSSL keeps an ECC fixed-point cache per thread (FP_ECC): a server thread frees its own. */
static void FreeThreadEccCache(void)
{
#if defined(FP_ECC)
    wc_ecc_fp_free();
#endif
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
    FreeThreadEccCache();
    return NULL;
}

bool FakeS3_Start(FakeS3_t *s3)
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

void FakeS3_Stop(FakeS3_t *s3)
{
    (void)pthread_join(s3->thread, NULL);
    close(s3->listenFd);
}

