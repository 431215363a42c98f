/* Device topic tree: see topics.h. */
#include "topics.h"

#include <stdio.h>
#include <string.h>

static int IsTopicLevel(const char *part)
{
    return (part != NULL) && (part[0] != '\0') && (strpbrk(part, "/+#") == NULL);
}

TopicsStatus_t Topics_Build(char *buffer, size_t bufferSize, const char *root, const char *thingName,
                            const char *leaf, uint16_t *length)
{
    if (buffer == NULL || bufferSize == 0U || !IsTopicLevel(root) || !IsTopicLevel(thingName) ||
        !IsTopicLevel(leaf)) {
        return TOPICS_BAD_PARAMETER;
    }
    int written = snprintf(buffer, bufferSize, "%s/%s/%s", root, thingName, leaf);
    if (written < 0 || (size_t)written >= bufferSize || written > (int)UINT16_MAX) {
        buffer[0] = '\0';
        return TOPICS_BUFFER_TOO_SMALL;
    }
    if (length != NULL) {
        *length = (uint16_t)written;
    }
    return TOPICS_SUCCESS;
}
