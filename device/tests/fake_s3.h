/*
 * A stand-in for S3 behind presigned URLs, for the tests: an HTTPS server (wolfSSL, 127.0.0.1, its own thread)
 * that stores the body of a PUT and answers ranged GETs with 206 and Content-Range, or 403 to everything (or to
 * the requests whose path holds forbidPathContaining: an expired URL). GETs whose path holds presetPathContaining
 * read presetObject instead of what was PUT (an object uploaded by someone else: the fleet file).
 */
#ifndef FAKE_S3_H
#define FAKE_S3_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct FakeS3 {
    int listenFd;
    uint16_t port;
    const char *certPath;
    const char *keyPath;
    int connectionsToServe;
    bool forbid;                 /* answer 403 to everything */
    const char *forbidPathContaining; /* answer 403 to these paths, when not NULL */
    const char *presetPathContaining; /* GETs of these paths read presetObject, when not NULL */
    const char *presetObject;
    int forbiddenCount;          /* requests answered 403 */
    pthread_t thread;
    uint8_t object[4096];
    size_t objectSize;
    char lastPath[512];
    char putPath[512];           /* path of the last PUT */
    int putCount;
    int rangedGetCount;
    int connections;
} FakeS3_t;

/** @brief Listen on a free port of 127.0.0.1 and serve connectionsToServe connections in a thread. */
bool FakeS3_Start(FakeS3_t *s3);

/** @brief Wait until the connections were served, then close the listening socket. */
void FakeS3_Stop(FakeS3_t *s3);

#endif /* FAKE_S3_H */
