/**
 * @file platform_linux.c
 * @brief The parts of the platform seam that are plain Linux on both targets (the Azure Sphere OS is Linux too):
 * randomness and the monotonic clock.
 */

#include "platform.h"

#include <sys/random.h>
#include <sys/types.h>
#include <time.h>

PlatformStatus_t Platform_GetRandom(void *buffer, size_t length)
{
    return (getrandom(buffer, length, 0) == (ssize_t)length) ? PLATFORM_SUCCESS : PLATFORM_FAILURE;
}

uint32_t Platform_GetTimeMs(void)
{
    struct timespec now;
    (void)clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint32_t)((uint64_t)now.tv_sec * 1000U + (uint64_t)now.tv_nsec / 1000000U);
}
