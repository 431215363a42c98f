/* Topic tree for the thing name, and presigned URL splitting. */
#include <string.h>

#include "check.h"
#include "topics.h"
#include "https_url.h"

int main(void)
{
    char topic[64];
    uint16_t length = 0;

    CHECK(Topics_Build(topic, sizeof(topic), "devices", "abc123", TOPIC_LEAF_TELEMETRY, &length) == TOPICS_SUCCESS);
    CHECK(strcmp(topic, "devices/abc123/telemetry") == 0);
    CHECK(length == strlen("devices/abc123/telemetry"));
    CHECK(Topics_Build(topic, sizeof(topic), "devices", "abc123", TOPIC_LEAF_COMMANDS, NULL) == TOPICS_SUCCESS);
    CHECK(strcmp(topic, "devices/abc123/commands") == 0);
    /* Wildcards or separators in a level would widen the topic beyond the policy. */
    CHECK(Topics_Build(topic, sizeof(topic), "devices", "+", TOPIC_LEAF_COMMANDS, NULL) == TOPICS_BAD_PARAMETER);
    CHECK(Topics_Build(topic, sizeof(topic), "devices", "a/b", TOPIC_LEAF_COMMANDS, NULL) == TOPICS_BAD_PARAMETER);
    CHECK(Topics_Build(topic, sizeof(topic), "devices", "#", TOPIC_LEAF_COMMANDS, NULL) == TOPICS_BAD_PARAMETER);
    CHECK(Topics_Build(topic, sizeof(topic), "", "abc", TOPIC_LEAF_COMMANDS, NULL) == TOPICS_BAD_PARAMETER);
    CHECK(Topics_Build(topic, 10, "devices", "abc123", TOPIC_LEAF_TELEMETRY, NULL) == TOPICS_BUFFER_TOO_SMALL);
    CHECK(topic[0] == '\0');

    char host[64];
    HttpsUrlParts_t parts;
    const char *url = "https://bucket.s3.eu-west-1.amazonaws.com/dir/key.txt?X-Amz-Signature=abc#frag";
    CHECK(HttpsUrl_Parse(url, host, sizeof(host), &parts) == URL_SUCCESS);
    CHECK(strcmp(host, "bucket.s3.eu-west-1.amazonaws.com") == 0);
    CHECK(parts.port == 443U);
    CHECK(parts.pathLength == strlen("/dir/key.txt?X-Amz-Signature=abc"));
    CHECK(strncmp(parts.path, "/dir/key.txt?X-Amz-Signature=abc", parts.pathLength) == 0);

    CHECK(HttpsUrl_Parse("https://localhost:8443/b/k", host, sizeof(host), &parts) == URL_SUCCESS);
    CHECK(strcmp(host, "localhost") == 0);
    CHECK(parts.port == 8443U);
    CHECK(HttpsUrl_Parse("https://localhost", host, sizeof(host), &parts) == URL_SUCCESS);
    CHECK(parts.pathLength == 1U && parts.path[0] == '/');

    CHECK(HttpsUrl_Parse("http://bucket/key", host, sizeof(host), &parts) == URL_NOT_HTTPS);
    CHECK(HttpsUrl_Parse("https:///key", host, sizeof(host), &parts) == URL_MALFORMED);
    CHECK(HttpsUrl_Parse("https://h:0/k", host, sizeof(host), &parts) == URL_MALFORMED);
    CHECK(HttpsUrl_Parse("https://h:70000/k", host, sizeof(host), &parts) == URL_MALFORMED);
    CHECK(HttpsUrl_Parse("https://user@h/k", host, sizeof(host), &parts) == URL_MALFORMED);
    CHECK(HttpsUrl_Parse(url, host, 8, &parts) == URL_HOST_TOO_LONG);
    CHECK(HttpsUrl_Parse(NULL, host, sizeof(host), &parts) == URL_BAD_PARAMETER);

    return CHECK_DONE();
}
