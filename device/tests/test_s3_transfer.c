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
#include "fake_s3.h"
#include "platform.h"
#include "s3_transfer.h"

#define OBJECT_SIZE 1300U

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
    CHECK(FakeS3_Start(&s3));
    (void)snprintf(url, sizeof(url), "https://localhost:%u/demo-bucket/dir/object.txt?X-Amz-Signature=abc&X-Amz-Expires=3600",
                   (unsigned)s3.port);
    CHECK(S3Transfer_Upload(url, object, sizeof(object)) == S3_SUCCESS);
    CHECK(S3Transfer_Download(url, downloaded, sizeof(downloaded), &size) == S3_SUCCESS);
    FakeS3_Stop(&s3);
    CHECK(s3.putCount == 1 && s3.objectSize == sizeof(object));
    CHECK(strcmp(s3.lastPath, "/demo-bucket/dir/object.txt?X-Amz-Signature=abc&X-Amz-Expires=3600") == 0);
    CHECK(size == sizeof(object) && memcmp(downloaded, object, sizeof(object)) == 0);
    CHECK(s3.rangedGetCount == 3);
    CHECK(s3.connections == 2);

    /* The caller's buffer is too small for the object: refused, not truncated silently. */
    s3.connectionsToServe = 1;
    s3.connections = 0;
    CHECK(FakeS3_Start(&s3));
    (void)snprintf(url, sizeof(url), "https://localhost:%u/demo-bucket/object.txt", (unsigned)s3.port);
    CHECK(S3Transfer_Download(url, downloaded, 600, &size) == S3_BUFFER_TOO_SMALL);
    FakeS3_Stop(&s3);

    /* Expired presigned URL: S3 answers 403. */
    forbidden.certPath = paths[3];
    forbidden.keyPath = paths[4];
    forbidden.forbid = true;
    forbidden.connectionsToServe = 2;
    CHECK(FakeS3_Start(&forbidden));
    (void)snprintf(url, sizeof(url), "https://localhost:%u/demo-bucket/object.txt", (unsigned)forbidden.port);
    CHECK(S3Transfer_Upload(url, object, 10) == S3_FORBIDDEN);
    CHECK(S3Transfer_Download(url, downloaded, sizeof(downloaded), &size) == S3_FORBIDDEN);
    FakeS3_Stop(&forbidden);

    /* A server whose certificate names another host: refused in the handshake, no request sent. */
    untrusted.certPath = paths[5];
    untrusted.keyPath = paths[6];
    untrusted.connectionsToServe = 1;
    CHECK(FakeS3_Start(&untrusted));
    (void)snprintf(url, sizeof(url), "https://localhost:%u/demo-bucket/object.txt", (unsigned)untrusted.port);
    CHECK(S3Transfer_Upload(url, object, 10) == S3_CONNECT_FAILURE);
    FakeS3_Stop(&untrusted);
    CHECK(untrusted.putCount == 0);

    CHECK(S3Transfer_Upload("http://localhost/bucket/key", object, 10) == S3_BAD_PARAMETER);
    Platform_Close();
    wolfSSL_Cleanup();
    return CHECK_DONE();
}
