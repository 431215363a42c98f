/* Compiled by the config guard tests against tests/config/complete with one value removed or wrong. */
#include "app_config.h"

int main(void)
{
    return (AWS_IOT_PORT == 8883 || AWS_IOT_PORT == 443) && sizeof(appConfigEndpoint) > 1U &&
                   sizeof(appConfigTopicRoot) > 1U && sizeof(appConfigFleetGetUrl) > 1U
               ? 0
               : 1;
}
