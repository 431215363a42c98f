/*
 * The root CAs shipped as image-package resources are the genuine ones, copied from Debian's ca-certificates:
 * checked by SHA-256 fingerprint of the DER certificate (Amazon_Root_CA_1.crt, Amazon_Root_CA_3.crt and
 * Starfield_Services_Root_Certificate_Authority_-_G2.crt; Amazon Root CA 1 as given in DESIGN.md).
 *
 * Usage: test_root_cas CERTS_DIR
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

static const struct {
    const char *file;
    const char *sha256;
} roots[] = {
    {"AmazonRootCA1.pem",
     "8E:CD:E6:88:4F:3D:87:B1:12:5B:A3:1A:C3:FC:B1:3D:70:16:DE:7F:57:CC:90:4F:E1:CB:97:C6:AE:98:19:6E"},
    {"AmazonRootCA3.pem",
     "18:CE:6C:FE:7B:F1:4E:60:B2:E3:47:B8:DF:E8:68:CB:31:D0:2E:BB:3A:DA:27:15:69:F5:03:43:B4:6D:B3:A4"},
    {"StarfieldServicesRootCA-G2.pem",
     "56:8D:69:05:A2:C8:87:08:A4:B3:02:51:90:ED:CF:ED:B1:97:4A:60:6A:13:C6:E5:29:0F:CB:2A:E6:3E:DA:B5"},
};

int main(int argc, char *argv[])
{
    char hex[3 * WC_SHA256_DIGEST_SIZE + 1];
    char path[600];
    if (argc != 2) {
        fprintf(stderr, "usage: %s CERTS_DIR\n", argv[0]);
        return 2;
    }
    for (size_t i = 0; i < sizeof(roots) / sizeof(roots[0]); i++) {
        (void)snprintf(path, sizeof(path), "%s/%s", argv[1], roots[i].file);
        CHECK(Fingerprint(path, hex, sizeof(hex)) == 0);
        CHECK(strcmp(hex, roots[i].sha256) == 0);
        fprintf(stderr, "%s: %s\n", roots[i].file, hex);
    }
    return CHECK_DONE();
}
