/* Minimal assertions for the ctest executables: count failures, report file:line, exit non-zero. */
#ifndef CHECK_H
#define CHECK_H

#include <stdio.h>

static int checkFailures;
static int checkCount;

#define CHECK(condition)                                                                   \
    do {                                                                                   \
        checkCount++;                                                                      \
        if (!(condition)) {                                                                \
            checkFailures++;                                                               \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #condition);  \
        }                                                                                  \
    } while (0)

#define CHECK_DONE()                                                                       \
    (fprintf(stderr, "%d checks, %d failed\n", checkCount, checkFailures), (checkFailures == 0 && checkCount > 0) ? 0 : 1)

#endif /* CHECK_H */
