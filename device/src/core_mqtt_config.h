/* coreMQTT configuration: logging through the platform, buffer limits from buffer_config.h. */
#ifndef CORE_MQTT_CONFIG_H
#define CORE_MQTT_CONFIG_H

#ifndef LIBRARY_LOG_NAME
#define LIBRARY_LOG_NAME "MQTT"
#endif
#include "sdk_log.h"

/** @brief Wait this long for CONNACK, SUBACK... when the library itself waits. */
#define MQTT_PINGRESP_TIMEOUT_MS 5000U
#define MQTT_RECV_POLLING_TIMEOUT_MS 100U
#define MQTT_SEND_TIMEOUT_MS 5000U

#endif /* CORE_MQTT_CONFIG_H */
