/*
 * wolfSSL, included the same way on both platforms. Debian's libwolfssl-dev records its build options in
 * <wolfssl/options.h>, which must come first; the Azure Sphere SDK's wolfSSL carries its options in its own
 * headers. DEVICE_PLATFORM_AZSPHERE marks the SDK build, whose wolfSSL has SNI and ALPN.
 */
#ifndef WOLFSSL_INCLUDE_H
#define WOLFSSL_INCLUDE_H

#if defined(__has_include)
#if __has_include(<wolfssl/options.h>)
#include <wolfssl/options.h>
#endif
#endif
#include <wolfssl/ssl.h>

#if defined(HAVE_SNI) || defined(DEVICE_PLATFORM_AZSPHERE)
#define DEVICE_WOLFSSL_HAS_SNI 1
#endif
#if defined(HAVE_ALPN) || defined(DEVICE_PLATFORM_AZSPHERE)
#define DEVICE_WOLFSSL_HAS_ALPN 1
#endif

#endif /* WOLFSSL_INCLUDE_H */
