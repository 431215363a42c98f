/*
 * The Amazon root CAs shipped as image-package resources are the genuine ones: checked by SHA-256
 * fingerprint of the DER certificate (Amazon Root CA 1 as given in DESIGN.md; Amazon Root CA 3 as published
 * by Amazon Trust Services).
 */
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include <stdio.h>
#include <string.h>

#include "check.h"

static int Fingerprint(const char *path, char *hex, size_t hexSize)
{
    static unsigned char pem[8192];
    static unsigned char der[8192];
    unsigned char digest[WC_SHA256_DIGEST_SIZE];
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        return -1;
    }
    size_t pemLength = fread(pem, 1, sizeof(pem), f);
    fclose(f);
    int derLength = wolfSSL_CertPemToDer(pem, (int)pemLength, der, (int)sizeof(der), CERT_TYPE);
    if (derLength <= 0 || wc_Sha256Hash(der, (word32)derLength, digest) != 0) {
        return -1;
    }
    hex[0] = '\0';
    for (size_t i = 0; i < sizeof(digest) && (i * 3U + 3U) <= hexSize; i++) {
        (void)snprintf(hex + i * 3U, hexSize - i * 3U, (i + 1U < sizeof(digest)) ? "%02X:" : "%02X", digest[i]);
    }
    return 0;
}

int main(int argc, char *argv[])
{
    char hex[3 * WC_SHA256_DIGEST_SIZE + 1];
    if (argc != 3) {
        fprintf(stderr, "usage: %s AmazonRootCA1.pem AmazonRootCA3.pem\n", argv[0]);
        return 2;
    }
    CHECK(Fingerprint(argv[1], hex, sizeof(hex)) == 0);
    CHECK(strcmp(hex, "8E:CD:E6:88:4F:3D:87:B1:12:5B:A3:1A:C3:FC:B1:3D:70:16:DE:7F:57:CC:90:4F:E1:CB:97:C6:AE:98:19:6E") == 0);
    CHECK(Fingerprint(argv[2], hex, sizeof(hex)) == 0);
    CHECK(strcmp(hex, "18:CE:6C:FE:7B:F1:4E:60:B2:E3:47:B8:DF:E8:68:CB:31:D0:2E:BB:3A:DA:27:15:69:F5:03:43:B4:6D:B3:A4") == 0);
    return CHECK_DONE();
}
