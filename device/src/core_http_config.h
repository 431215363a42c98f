/* coreHTTP configuration: logging through the platform. */
#ifndef CORE_HTTP_CONFIG_H
#define CORE_HTTP_CONFIG_H

#ifndef LIBRARY_LOG_NAME
#define LIBRARY_LOG_NAME "HTTP"
#endif
#include "sdk_log.h"

#define HTTP_RECV_RETRY_TIMEOUT_MS 5000U
#define HTTP_SEND_RETRY_TIMEOUT_MS 5000U

#endif /* CORE_HTTP_CONFIG_H */
