#!/bin/sh
# The wolfSSL ABI check must refuse what Azure Sphere does not export: an object calling
# wolfSSLv23_client_method (and one calling wolfSSL_X509_NAME_get_text_by_NID) fails it, naming the function;
# an object calling only WOLFSSL_ABI functions passes; an object calling no wolfSSL function fails (nothing
# checked); an object calling wolfSSL_CTX_use_PrivateKey_file (WOLFSSL_ABI) fails when that function is forbidden. Usage: wolfssl_abi_check_selftest.sh PYTHON CHECK CC NM WOLFSSL_INCLUDE_DIR WORK_DIR
set -eu
python=$1 check=$2 cc=$3 nm=$4 include=$5 work=$6
rm -rf "$work" && mkdir -p "$work" && cd "$work"
cat > non_abi.c <<'C'
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
WOLFSSL_CTX *NewContext(void) { return wolfSSL_CTX_new(wolfSSLv23_client_method()); }
C
cat > non_abi_name.c <<'C'
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
int CommonName(WOLFSSL_X509_NAME *n, char *out, int size) { return wolfSSL_X509_NAME_get_text_by_NID(n, NID_commonName, out, size); }
C
cat > abi_only.c <<'C'
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
WOLFSSL_CTX *NewContext(void) { return wolfSSL_CTX_new(wolfTLSv1_2_client_method()); }
C
cat > no_wolfssl.c <<'C'
int Answer(void) { return 42; }
C
cat > key_file.c <<'C'
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
int UseKey(WOLFSSL_CTX *ctx, const char *path) { return wolfSSL_CTX_use_PrivateKey_file(ctx, path, WOLFSSL_FILETYPE_PEM); }
C
for f in non_abi non_abi_name abi_only no_wolfssl key_file; do "$cc" -I"$include" -c "$f.c" -o "$f.o"; done

expect() { # expect pass|fail PATTERN OBJECT...
    want=$1 pattern=$2; shift 2
    if "$python" "$check" --nm "$nm" --include "$include" "$@" > out.txt 2>&1; then got=pass; else got=fail; fi
    cat out.txt
    [ "$got" = "$want" ] || { echo "SELFTEST FAILED: expected $want for $*"; exit 1; }
    grep -q "$pattern" out.txt || { echo "SELFTEST FAILED: output lacks /$pattern/"; exit 1; }
}
expect fail "NOT ABI wolfSSLv23_client_method" non_abi.o
expect fail "NOT ABI wolfSSL_X509_NAME_get_text_by_NID" non_abi_name.o
expect fail "not WOLFSSL_ABI.*wolfSSLv23_client_method" abi_only.o non_abi.o
expect pass "ok      wolfTLSv1_2_client_method" abi_only.o
expect fail "nothing was checked" no_wolfssl.o
expect pass "ok      wolfSSL_CTX_use_PrivateKey_file" key_file.o
expect fail "forbidden in this build.*wolfSSL_CTX_use_PrivateKey_file" --forbid wolfSSL_CTX_use_PrivateKey_file key_file.o
echo "wolfSSL ABI check self-test: refuses non-ABI references and forbidden ones, passes ABI-only ones"
