/* Declarations checked against Microsoft's applibs/eventloop.h as published (see device/README.md); not the
 * SDK header. Only what the app uses. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

typedef struct EventLoop EventLoop;
typedef struct EventRegistration EventRegistration;

EventLoop *EventLoop_Create(void);
void EventLoop_Close(EventLoop *el);

typedef int EventLoop_Run_Result;
enum {
    EventLoop_Run_Failed = -1,
    EventLoop_Run_FinishedEmpty = 0,
    EventLoop_Run_Finished = 1,
};

EventLoop_Run_Result EventLoop_Run(EventLoop *el, int duration_in_milliseconds, bool process_one_event);

typedef uint32_t EventLoop_IoEvents;
enum {
    EventLoop_None = 0x00,
    EventLoop_Input = 0x01,
    EventLoop_Output = 0x04,
    EventLoop_Error = 0x08,
};

typedef void EventLoopIoCallback(EventLoop *el, int fd, EventLoop_IoEvents events, void *context);

EventRegistration *EventLoop_RegisterIo(EventLoop *el, int fd, EventLoop_IoEvents eventBitmask,
                                        EventLoopIoCallback *callback, void *context);
int EventLoop_UnregisterIo(EventLoop *el, EventRegistration *reg);
