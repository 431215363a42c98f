/*
 * Test configuration for the guard tests: complete by default; -DOMIT_<MACRO> removes one value,
 * -DTEST_AWS_IOT_PORT=<n>, -DTEST_EMPTY_ENDPOINT and -DTEST_BAKED_PUT_URL give wrong values. Every variant but the complete one
 * must fail to compile with a message naming the value.
 */
#ifndef DEVICE_CONFIG_H
#define DEVICE_CONFIG_H

#ifndef OMIT_AWS_IOT_ENDPOINT
#ifdef TEST_EMPTY_ENDPOINT
#define AWS_IOT_ENDPOINT ""
#else
#define AWS_IOT_ENDPOINT "example-ats.iot.eu-west-1.amazonaws.com"
#endif
#endif

#ifndef OMIT_AWS_IOT_PORT
#ifdef TEST_AWS_IOT_PORT
#define AWS_IOT_PORT TEST_AWS_IOT_PORT
#else
#define AWS_IOT_PORT 8883
#endif
#endif

#ifndef OMIT_DEVICE_TOPIC_ROOT
#define DEVICE_TOPIC_ROOT "devices"
#endif

#ifndef OMIT_S3_FLEET_GET_URL
#define S3_FLEET_GET_URL "https://bucket.s3.eu-west-1.amazonaws.com/fleet/notice.txt?X-Amz-Signature=get"
#endif

/* An old generated header: a baked write URL must stop the build. */
#ifdef TEST_BAKED_PUT_URL
#define S3_PRESIGNED_PUT_URL "https://bucket.s3.eu-west-1.amazonaws.com/key?X-Amz-Signature=put"
#endif

#endif /* DEVICE_CONFIG_H */
