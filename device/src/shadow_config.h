/* Device Shadow library configuration: logging through the platform. */
#ifndef SHADOW_CONFIG_H
#define SHADOW_CONFIG_H

#ifndef LIBRARY_LOG_NAME
#define LIBRARY_LOG_NAME "Shadow"
#endif
#include "sdk_log.h"

#endif /* SHADOW_CONFIG_H */
