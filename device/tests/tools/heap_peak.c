/*
 * Peak heap of a process, for `make device-size`: an LD_PRELOAD library over glibc's allocator that counts the
 * usable size of every live block and keeps the highest total. At exit it appends one line to the file named
 * by SJ_HEAP_REPORT: "<process name> peak_heap_bytes=<n> live_at_exit_bytes=<n> allocations=<n>".
 * Host figures: glibc's and Debian wolfSSL's allocations, not the device's (see device/README.md).
 */
#include <malloc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *pointer, size_t size);
extern void __libc_free(void *pointer);
extern void *__libc_memalign(size_t alignment, size_t size);

static atomic_size_t liveBytes;
static atomic_size_t peakBytes;
static atomic_size_t allocations;

static void Added(void *pointer)
{
    if (pointer == NULL) {
        return;
    }
    size_t live = atomic_fetch_add(&liveBytes, malloc_usable_size(pointer)) + malloc_usable_size(pointer);
    size_t peak = atomic_load(&peakBytes);
    while (live > peak && !atomic_compare_exchange_weak(&peakBytes, &peak, live)) {
    }
    atomic_fetch_add(&allocations, 1U);
}

static void Removed(void *pointer)
{
    if (pointer != NULL) {
        atomic_fetch_sub(&liveBytes, malloc_usable_size(pointer));
    }
}

void *malloc(size_t size)
{
    void *pointer = __libc_malloc(size);
    Added(pointer);
    return pointer;
}

void *calloc(size_t count, size_t size)
{
    void *pointer = __libc_calloc(count, size);
    Added(pointer);
    return pointer;
}

void *realloc(void *pointer, size_t size)
{
    Removed(pointer);
    void *moved = __libc_realloc(pointer, size);
    Added((moved != NULL) ? moved : (size != 0U ? pointer : NULL));
    return moved;
}

void free(void *pointer)
{
    Removed(pointer);
    __libc_free(pointer);
}

void *memalign(size_t alignment, size_t size)
{
    void *pointer = __libc_memalign(alignment, size);
    Added(pointer);
    return pointer;
}

void *aligned_alloc(size_t alignment, size_t size)
{
    return memalign(alignment, size);
}

int posix_memalign(void **out, size_t alignment, size_t size)
{
    *out = memalign(alignment, size);
    return (*out != NULL) ? 0 : 12; /* ENOMEM */
}

__attribute__((destructor)) static void Report(void)
{
    const char *path = getenv("SJ_HEAP_REPORT");
    char name[64] = "?";
    FILE *comm = fopen("/proc/self/comm", "r");
    if (comm != NULL) {
        if (fgets(name, sizeof(name), comm) == NULL) {
            (void)strcpy(name, "?");
        }
        fclose(comm);
        name[strcspn(name, "\n")] = '\0';
    }
    FILE *out = (path != NULL) ? fopen(path, "a") : NULL;
    if (out != NULL) {
        fprintf(out, "%s peak_heap_bytes=%zu live_at_exit_bytes=%zu allocations=%zu\n", name,
                atomic_load(&peakBytes), atomic_load(&liveBytes), atomic_load(&allocations));
        fclose(out);
    }
}
