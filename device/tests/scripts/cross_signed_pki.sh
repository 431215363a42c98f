#!/bin/sh
# A PKI shaped like the one AWS IoT Core and S3 present, for tests/test_trust_chains.c (no key is committed):
#   root-a.pem      self-signed root (stands for Amazon Root CA 1)
#   root-s.pem      self-signed root (stands for Starfield Services Root Certificate Authority - G2)
#   root-a-cross    root-a's subject and key, issued by root-s (the cross-signed Amazon Root CA 1)
#   intermediate    issued by root-a;  server (CN/SAN localhost) issued by the intermediate
#   chain-plain.pem server + intermediate                 (a chain that ends below the root)
#   chain-cross.pem server + intermediate + root-a-cross  (a chain that ends in the cross-signed root)
# Usage: cross_signed_pki.sh OPENSSL OUT_DIR
set -eu
openssl=$1 out=$2
rm -rf "$out" && mkdir -p "$out" && cd "$out"
cat > ext.cnf <<'CNF'
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[intermediate]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
CNF
key() { "$openssl" genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1" 2>/dev/null; }
selfsigned() { # name subject
    key "$1.key"
    "$openssl" req -new -key "$1.key" -subj "$2" -out "$1.csr"
    "$openssl" x509 -req -in "$1.csr" -signkey "$1.key" -days 3650 -extfile ext.cnf -extensions ca -out "$1.pem" 2>/dev/null
}
issue() { # name subject issuer extensions [key]
    keyfile=${5:-$1.key}
    [ -f "$keyfile" ] || key "$keyfile"
    "$openssl" req -new -key "$keyfile" -subj "$2" -out "$1.csr"
    "$openssl" x509 -req -in "$1.csr" -CA "$3.pem" -CAkey "$3.key" -set_serial "0x$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')" \
        -days 3650 -extfile ext.cnf -extensions "$4" -out "$1.pem" 2>/dev/null
}
selfsigned root-a "/C=US/O=Test Amazon/CN=Test Amazon Root CA 1"
selfsigned root-s "/C=US/O=Test Starfield/CN=Test Starfield Services Root Certificate Authority - G2"
issue root-a-cross "/C=US/O=Test Amazon/CN=Test Amazon Root CA 1" root-s ca root-a.key
issue intermediate "/C=US/O=Test Amazon/CN=Test Amazon RSA 2048 M01" root-a intermediate
issue server "/CN=localhost" intermediate server
cat server.pem intermediate.pem > chain-plain.pem
cat server.pem intermediate.pem root-a-cross.pem > chain-cross.pem
"$openssl" verify -CAfile root-a.pem -untrusted intermediate.pem server.pem
"$openssl" verify -CAfile root-s.pem -untrusted root-a-cross.pem -untrusted intermediate.pem server.pem
echo "cross-signed PKI written"
