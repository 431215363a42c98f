/*
 * The host app end to end against a small MQTT broker behind mutual TLS started by this test, behaving like
 * AWS IoT Core during JITR: the first connection of the device certificate is closed after CONNECT (the
 * certificate is being registered), the next one gets CONNACK. The app must retry, connect with client id =
 * lower-case device ID, subscribe to its command and shadow topics, ask for its shadow (get) and apply the
 * desired state the broker answers with (interval 5 s, set "while the device was offline"), report it back,
 * publish telemetry on its own topic tree, take a command, move an object through a stand-in for S3 with
 * presigned URLs it asks for over MQTT while its session stays up (the broker plays the presign function: the
 * first PUT request is rejected, the app asks again after a backoff; the URLs come JSON-escaped as Go writes
 * them), read the fleet-wide file whose baked URL has expired (S3 answers 403) with a runtime URL it asks for
 * over MQTT ("scope":"fleet"), and exit 0 after its second telemetry message (--publish-count 2; the second is due 5 s after the
 * desired state applied) once the S3 step is over.
 *
 * Usage: test_app_broker PKI_DIR APP
 */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/ecc.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "fake_s3.h"

#define MAX_TOPICS 16
#define TOPIC_SIZE 256

typedef struct Broker {
    int listenFd;
    uint16_t port;
    const char *certPath;
    const char *keyPath;
    const char *clientCaPath;
    pthread_t thread;
    int connections;              /* TLS sessions accepted */
    bool firstClosedAfterConnect; /* JITR-like rejection happened */
    char clientId[200];
    char subscribed[MAX_TOPICS][TOPIC_SIZE];
    int subscribedCount;
    char published[MAX_TOPICS][TOPIC_SIZE];
    char publishedPayloads[MAX_TOPICS][TOPIC_SIZE];
    int publishedCount;
    bool sentCommand;
    bool answeredGet;             /* shadow/get answered with get/accepted */
    bool disconnected;            /* DISCONNECT received */
    uint16_t s3Port;              /* the S3 stand-in the URLs point at */
    int putUrlRequests;           /* PUT URL requests on devices/<id>/s3/url */
    int getUrlRequests;           /* GET URL requests of its own object */
    int fleetUrlRequests;         /* GET URL requests of the fleet file ("scope":"fleet") */
    char fleetName[64];           /* the name the fleet request asked for */
    bool s3SubscribedFirst;       /* the reply topics were subscribed before the first request */
} Broker_t;

static bool ReadExact(WOLFSSL *ssl, uint8_t *buffer, size_t length)
{
    size_t done = 0;
    while (done < length) {
        int n = wolfSSL_read(ssl, buffer + done, (int)(length - done));
        if (n <= 0) {
            return false;
        }
        done += (size_t)n;
    }
    return true;
}

/* Reads one MQTT packet: type byte, body (remaining length ≤ bodySize). */
static bool ReadPacket(WOLFSSL *ssl, uint8_t *type, uint8_t *body, size_t bodySize, size_t *bodyLength)
{
    uint8_t byte;
    size_t length = 0;
    unsigned shift = 0;
    if (!ReadExact(ssl, type, 1)) {
        return false;
    }
    do {
        if (!ReadExact(ssl, &byte, 1) || shift > 21U) {
            return false;
        }
        length |= (size_t)(byte & 0x7FU) << shift;
        shift += 7U;
    } while ((byte & 0x80U) != 0U);
    if (length > bodySize) {
        return false;
    }
    *bodyLength = length;
    return ReadExact(ssl, body, length);
}

static void CopyString(char *out, size_t outSize, const uint8_t *in, size_t inLength)
{
    size_t n = inLength < outSize - 1U ? inLength : outSize - 1U;
    memcpy(out, in, n);
    out[n] = '\0';
}

/* Sends a QoS 0 PUBLISH. */
static void SendPublish(WOLFSSL *ssl, const char *topic, const char *payload)
{
    uint8_t packet[1024];
    size_t topicLength = strlen(topic);
    size_t payloadLength = strlen(payload);
    size_t remaining = 2U + topicLength + payloadLength;
    size_t offset = 0;
    packet[offset++] = 0x30;
    do {
        uint8_t byte = (uint8_t)(remaining % 128U);
        remaining /= 128U;
        packet[offset++] = (uint8_t)(byte | ((remaining > 0U) ? 0x80U : 0U));
    } while (remaining > 0U);
    packet[offset++] = (uint8_t)(topicLength >> 8);
    packet[offset++] = (uint8_t)topicLength;
    memcpy(packet + offset, topic, topicLength);
    offset += topicLength;
    memcpy(packet + offset, payload, payloadLength);
    offset += payloadLength;
    (void)wolfSSL_write(ssl, packet, (int)offset);
}

static bool Contains(char list[][TOPIC_SIZE], int count, const char *topic)
{
    for (int i = 0; i < count; i++) {
        if (strcmp(list[i], topic) == 0) {
            return true;
        }
    }
    return false;
}

/* Copies the string member "name" of a flat JSON document (no escapes in our requests). */
static void JsonString(const char *document, size_t length, const char *name, char *out, size_t outSize)
{
    char pattern[64];
    (void)snprintf(pattern, sizeof(pattern), "\"%s\":\"", name);
    out[0] = '\0';
    const char *start = memmem(document, length, pattern, strlen(pattern));
    if (start == NULL) {
        return;
    }
    start += strlen(pattern);
    const char *end = memchr(start, '"', length - (size_t)(start - document));
    if (end != NULL && (size_t)(end - start) < outSize) {
        memcpy(out, start, (size_t)(end - start));
        out[end - start] = '\0';
    }
}

/* Plays the presign function: rejects the first PUT request, then answers with URLs of the S3 stand-in. */
static void AnswerUrlRequest(Broker_t *broker, WOLFSSL *ssl, const char *payload, size_t length)
{
    char operation[8];
    char token[64];
    char name[64];
    char topic[TOPIC_SIZE];
    static char reply[900];
    JsonString(payload, length, "operation", operation, sizeof(operation));
    JsonString(payload, length, "clientToken", token, sizeof(token));
    JsonString(payload, length, "name", name, sizeof(name));
    char scope[16];
    JsonString(payload, length, "scope", scope, sizeof(scope));
    bool put = strcmp(operation, "PUT") == 0;
    bool fleet = strcmp(scope, "fleet") == 0;
    (void)snprintf(topic, sizeof(topic), "devices/%s/s3/url/accepted", broker->clientId);
    broker->s3SubscribedFirst = broker->s3SubscribedFirst ||
                                ((broker->putUrlRequests + broker->getUrlRequests) == 0 &&
                                 Contains(broker->subscribed, broker->subscribedCount, topic));
    if (put && broker->putUrlRequests++ == 0) {
        (void)snprintf(topic, sizeof(topic), "devices/%s/s3/url/rejected", broker->clientId);
        (void)snprintf(reply, sizeof(reply), "{\"clientToken\":\"%s\",\"reason\":\"the test refuses the first request\"}",
                       token);
        SendPublish(ssl, topic, reply);
        return;
    }
    if (fleet) {
        /* A fresh URL of the fleet file (the presign function signs fleet/<name> for a GET with this scope). */
        broker->fleetUrlRequests++;
        (void)snprintf(broker->fleetName, sizeof(broker->fleetName), "%s", name);
        (void)snprintf(reply, sizeof(reply),
                       "{\"clientToken\":\"%s\",\"url\":\"https://localhost:%u/demo-bucket/fleet/%s?X-Amz-Date=2\\u0026"
                       "X-Amz-Signature=fresh\",\"method\":\"GET\",\"key\":\"fleet/%s\",\"expiresAt\":1800000900}",
                       token, (unsigned)broker->s3Port, name, name);
        SendPublish(ssl, topic, reply);
        return;
    }
    if (!put) {
        broker->getUrlRequests++;
    }
    const char *lengthText = memmem(payload, length, "\"contentLength\":", strlen("\"contentLength\":"));
    unsigned long contentLength = (lengthText != NULL) ? strtoul(lengthText + strlen("\"contentLength\":"), NULL, 10) : 0UL;
    (void)snprintf(reply, sizeof(reply),
                   "{\"clientToken\":\"%s\",\"url\":\"https://localhost:%u/demo-bucket/devices/%s/%s?X-Amz-Date=1\\u0026"
                   "X-Amz-Signature=%s\",\"method\":\"%s\",\"key\":\"devices/%s/%s\",\"contentLength\":%lu,\"expiresAt\":1800000900}",
                   token, (unsigned)broker->s3Port, broker->clientId, name, put ? "put" : "get", operation,
                   broker->clientId, name, contentLength);
    SendPublish(ssl, topic, reply);
}

/* Serves one MQTT session until DISCONNECT or the socket closes. */
static void ServeSession(Broker_t *broker, WOLFSSL *ssl)
{
    static uint8_t body[8192];
    uint8_t type;
    size_t length;
    while (ReadPacket(ssl, &type, body, sizeof(body), &length)) {
        switch (type & 0xF0U) {
        case 0x10: { /* CONNECT: protocol name, level, flags, keep-alive, client id */
            size_t nameLength = ((size_t)body[0] << 8) | body[1];
            size_t offset = 2U + nameLength + 4U;
            size_t idLength = ((size_t)body[offset] << 8) | body[offset + 1U];
            CopyString(broker->clientId, sizeof(broker->clientId), body + offset + 2U, idLength);
            const uint8_t connack[] = {0x20, 0x02, 0x00, 0x00};
            (void)wolfSSL_write(ssl, connack, sizeof(connack));
            break;
        }
        case 0x80: { /* SUBSCRIBE: packet id, then (topic, qos)* → SUBACK granting QoS 1 */
            uint8_t suback[64] = {0x90, 0x02, body[0], body[1]};
            size_t offset = 2U;
            size_t count = 0;
            while (offset + 2U <= length && count < 32U) {
                size_t topicLength = ((size_t)body[offset] << 8) | body[offset + 1U];
                if (broker->subscribedCount < MAX_TOPICS) {
                    CopyString(broker->subscribed[broker->subscribedCount++], TOPIC_SIZE, body + offset + 2U,
                               topicLength);
                }
                offset += 2U + topicLength + 1U;
                suback[4U + count++] = 0x01;
            }
            suback[1] = (uint8_t)(2U + count);
            (void)wolfSSL_write(ssl, suback, (int)(4U + count));
            if (!broker->sentCommand && broker->subscribedCount >= 6) {
                /* Once subscribed like the thing should be (commands + 5 shadow topics): send a command. */
                char topic[TOPIC_SIZE];
                (void)snprintf(topic, sizeof(topic), "devices/%s/commands", broker->clientId);
                SendPublish(ssl, topic, "{\"blink\":1}");
                broker->sentCommand = true;
            }
            break;
        }
        case 0x30: { /* PUBLISH: topic, packet id when QoS > 0 → PUBACK */
            size_t topicLength = ((size_t)body[0] << 8) | body[1];
            size_t payloadOffset = 2U + topicLength + ((((type >> 1) & 0x03U) != 0U) ? 2U : 0U);
            if (broker->publishedCount < MAX_TOPICS) {
                CopyString(broker->published[broker->publishedCount], TOPIC_SIZE, body + 2U, topicLength);
                CopyString(broker->publishedPayloads[broker->publishedCount], TOPIC_SIZE, body + payloadOffset,
                           length - payloadOffset);
                broker->publishedCount++;
            }
            if (((type >> 1) & 0x03U) != 0U) {
                const uint8_t puback[] = {0x40, 0x02, body[2U + topicLength], body[3U + topicLength]};
                (void)wolfSSL_write(ssl, puback, sizeof(puback));
            }
            char urlTopic[TOPIC_SIZE];
            (void)snprintf(urlTopic, sizeof(urlTopic), "devices/%s/s3/url", broker->clientId);
            if (topicLength == strlen(urlTopic) && memcmp(body + 2U, urlTopic, topicLength) == 0) {
                AnswerUrlRequest(broker, ssl, (const char *)body + payloadOffset, length - payloadOffset);
            }
            char getTopic[TOPIC_SIZE];
            (void)snprintf(getTopic, sizeof(getTopic), "$aws/things/%s/shadow/get", broker->clientId);
            if (broker->publishedCount > 0 && strcmp(broker->published[broker->publishedCount - 1], getTopic) == 0) {
                /* The desired state was set while the device was offline: it comes with the get. */
                char topic[TOPIC_SIZE];
                (void)snprintf(topic, sizeof(topic), "$aws/things/%s/shadow/get/accepted", broker->clientId);
                SendPublish(ssl, topic,
                            "{\"state\":{\"desired\":{\"telemetryIntervalSec\":5},\"reported\":{\"telemetryIntervalSec\":30},"
                            "\"delta\":{\"telemetryIntervalSec\":5}},\"metadata\":{},\"version\":3,\"timestamp\":1}");
                broker->answeredGet = true;
            }
            break;
        }
        case 0xC0: { /* PINGREQ */
            const uint8_t pingresp[] = {0xD0, 0x00};
            (void)wolfSSL_write(ssl, pingresp, sizeof(pingresp));
            break;
        }
        case 0xE0: /* DISCONNECT */
            broker->disconnected = true;
            return;
        default:
            break;
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

static void *BrokerThread(void *arg)
{
    Broker_t *broker = arg;
    WOLFSSL_CTX *ctx = wolfSSL_CTX_new(wolfSSLv23_server_method());
    if (ctx == NULL || wolfSSL_CTX_use_certificate_file(ctx, broker->certPath, WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS ||
        wolfSSL_CTX_use_PrivateKey_file(ctx, broker->keyPath, WOLFSSL_FILETYPE_PEM) != WOLFSSL_SUCCESS ||
        wolfSSL_CTX_load_verify_locations(ctx, broker->clientCaPath, NULL) != WOLFSSL_SUCCESS) {
        wolfSSL_CTX_free(ctx);
        return NULL;
    }
    wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_PEER | WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    /* Two sessions: the JITR rejection, then the real one. */
    for (int round = 0; round < 2; round++) {
        int fd = accept(broker->listenFd, NULL, NULL);
        if (fd < 0) {
            break;
        }
        struct timeval tv = {.tv_sec = 60};
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        WOLFSSL *ssl = wolfSSL_new(ctx);
        (void)wolfSSL_set_fd(ssl, fd);
        if (wolfSSL_accept(ssl) == WOLFSSL_SUCCESS) {
            broker->connections++;
            if (round == 0) {
                /* Like AWS IoT with an unknown certificate from a registered CA: read CONNECT, then close. */
                static uint8_t body[1024];
                uint8_t type = 0;
                size_t length = 0;
                broker->firstClosedAfterConnect =
                    ReadPacket(ssl, &type, body, sizeof(body), &length) && (type & 0xF0U) == 0x10U;
            } else {
                ServeSession(broker, ssl);
            }
        } else {
            round--; /* a failed handshake does not count as a round */
        }
        wolfSSL_free(ssl);
        close(fd);
    }
    wolfSSL_CTX_free(ctx);
    FreeThreadEccCache();
    return NULL;
}

int main(int argc, char *argv[])
{
    static char paths[6][600];
    static Broker_t broker;
    static FakeS3_t s3;
    char deviceId[200] = {0};
    char topic[TOPIC_SIZE];
    char port[8];

    if (argc != 3) {
        fprintf(stderr, "usage: %s PKI_DIR APP\n", argv[0]);
        return 2;
    }
    const char *names[] = {"server.pem", "server.key", "device-ca.pem", "device-upper.pem", "device-upper.key",
                           "server-ca.pem"};
    for (int i = 0; i < 6; i++) {
        (void)snprintf(paths[i], sizeof(paths[i]), "%s/%s", argv[1], names[i]);
    }
    (void)snprintf(topic, sizeof(topic), "%s/device-id.txt", argv[1]);
    FILE *idFile = fopen(topic, "r");
    if (idFile != NULL) {
        if (fgets(deviceId, sizeof(deviceId), idFile) == NULL) {
            deviceId[0] = '\0';
        }
        fclose(idFile);
    }
    deviceId[strcspn(deviceId, "\n")] = '\0';

    signal(SIGPIPE, SIG_IGN); /* the app hangs up after DISCONNECT; late writes must not kill the broker */
    wolfSSL_Init();
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t addressLength = sizeof(address);
    broker.listenFd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(bind(broker.listenFd, (struct sockaddr *)&address, sizeof(address)) == 0);
    CHECK(listen(broker.listenFd, 4) == 0);
    CHECK(getsockname(broker.listenFd, (struct sockaddr *)&address, &addressLength) == 0);
    broker.port = ntohs(address.sin_port);
    broker.certPath = paths[0];
    broker.keyPath = paths[1];
    broker.clientCaPath = paths[2];
    CHECK(pthread_create(&broker.thread, NULL, BrokerThread, &broker) == 0);
    /* S3 stand-in: one connection for the PUT, one for the ranged GETs, one for the fleet file's expired baked URL
     * (403), one for its runtime URL. */
    s3.certPath = paths[0];
    s3.keyPath = paths[1];
    s3.connectionsToServe = 4;
    s3.forbidPathContaining = "X-Amz-Expires=expired";
    s3.presetPathContaining = "/demo-bucket/fleet/notice.txt?";
    s3.presetObject = "fleet notice from the test";
    CHECK(FakeS3_Start(&s3));
    broker.s3Port = s3.port;

    (void)snprintf(port, sizeof(port), "%u", (unsigned)broker.port);
    char fleetUrl[300];
    (void)snprintf(fleetUrl, sizeof(fleetUrl),
                   "https://localhost:%u/demo-bucket/fleet/notice.txt?X-Amz-Date=1&X-Amz-Expires=expired", (unsigned)s3.port);
    char logPath[700];
    (void)snprintf(logPath, sizeof(logPath), "%s/app_broker.log", argv[1]);
    pid_t child = fork();
    if (child == 0) {
        /* Two telemetry messages: the second is due only after the shadow delta shortened the interval. */
        if (freopen(logPath, "w", stderr) == NULL) {
            _exit(126);
        }
        execl(argv[2], argv[2], "--cert", paths[3], "--key", paths[4], "--ca", paths[5], "--endpoint", "localhost",
              "--port", port, "--publish-count", "2", "--s3-fleet-url", fleetUrl, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    CHECK(child > 0 && waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
        /* Unblock the broker if the app died before its second session. */
        shutdown(broker.listenFd, SHUT_RDWR);
    }
    /* The app is gone: an S3 connection it did not make fails the checks below instead of blocking the join. */
    shutdown(s3.listenFd, SHUT_RDWR);
    (void)pthread_join(broker.thread, NULL);
    close(broker.listenFd);
    FakeS3_Stop(&s3);
    CHECK(s3.putCount == 1 && s3.rangedGetCount >= 2 && s3.connections == 4);
    CHECK(s3.objectSize > 0U && strstr((const char *)s3.object, deviceId) != NULL);
    /* Runtime URLs: rejected once, asked again, then one GET URL; for its own prefix; subscribed before asking. */
    CHECK(broker.putUrlRequests == 2 && broker.getUrlRequests == 1 && broker.s3SubscribedFirst);
    char expectedPath[400];
    (void)snprintf(expectedPath, sizeof(expectedPath), "/demo-bucket/devices/%s/hello.txt?X-Amz-Date=1&X-Amz-Signature=",
                   deviceId);
    CHECK(strncmp(s3.putPath, expectedPath, strlen(expectedPath)) == 0);
    CHECK(broker.answeredGet);
    /* The baked fleet URL was refused once; the runtime URL asked for fleet/notice.txt and read it. */
    CHECK(s3.forbiddenCount == 1);
    CHECK(broker.fleetUrlRequests == 1 && strcmp(broker.fleetName, "notice.txt") == 0);
    CHECK(strcmp(s3.lastPath, "/demo-bucket/fleet/notice.txt?X-Amz-Date=2&X-Amz-Signature=fresh") == 0);

    CHECK(broker.firstClosedAfterConnect);
    CHECK(broker.connections == 2);
    CHECK(strlen(deviceId) == 128U && strcmp(broker.clientId, deviceId) == 0);
    (void)snprintf(topic, sizeof(topic), "devices/%s/commands", deviceId);
    CHECK(Contains(broker.subscribed, broker.subscribedCount, topic));
    (void)snprintf(topic, sizeof(topic), "$aws/things/%s/shadow/update/delta", deviceId);
    CHECK(Contains(broker.subscribed, broker.subscribedCount, topic));
    (void)snprintf(topic, sizeof(topic), "$aws/things/%s/shadow/get/accepted", deviceId);
    CHECK(Contains(broker.subscribed, broker.subscribedCount, topic));
    (void)snprintf(topic, sizeof(topic), "$aws/things/%s/shadow/update", deviceId);
    CHECK(Contains(broker.published, broker.publishedCount, topic));
    (void)snprintf(topic, sizeof(topic), "devices/%s/telemetry", deviceId);
    CHECK(Contains(broker.published, broker.publishedCount, topic));
    CHECK(broker.disconnected);
    /* The desired state from the get (version 3, interval 5 s) was applied and reported back. */
    (void)snprintf(topic, sizeof(topic), "$aws/things/%s/shadow/update", deviceId);
    bool reportedNewInterval = false;
    int telemetryCount = 0;
    for (int i = 0; i < broker.publishedCount; i++) {
        if (strcmp(broker.published[i], topic) == 0 &&
            strstr(broker.publishedPayloads[i], "\"reported\":{\"telemetryIntervalSec\":5}") != NULL) {
            reportedNewInterval = true;
        }
        if (strstr(broker.published[i], "/telemetry") != NULL) {
            telemetryCount++;
        }
    }
    CHECK(reportedNewInterval);
    CHECK(telemetryCount == 2);
    /* The command reached the event loop. */
    FILE *log = fopen(logPath, "r");
    bool commandLogged = false;
    bool fleetFileRead = false;
    char line[1024];
    while (log != NULL && fgets(line, sizeof(line), log) != NULL) {
        fputs(line, stderr);
        commandLogged = commandLogged || strstr(line, "command received: {\"blink\":1}") != NULL;
        fleetFileRead = fleetFileRead || strstr(line, "fleet file (runtime URL): fleet notice from the test") != NULL;
    }
    if (log != NULL) {
        fclose(log);
    }
    CHECK(commandLogged);
    CHECK(fleetFileRead);
    for (int i = 0; i < broker.subscribedCount; i++) {
        fprintf(stderr, "subscribed: %s\n", broker.subscribed[i]);
    }
    for (int i = 0; i < broker.publishedCount; i++) {
        fprintf(stderr, "published: %s %s\n", broker.published[i], broker.publishedPayloads[i]);
    }
    wolfSSL_Cleanup();
    return CHECK_DONE();
}
