#!/bin/sh
# Regenerates the TEST-ONLY AMD-like certificate and CRLs in this folder with the openssl CLI.
# test-ark.key is a throwaway RSA key generated for Veil's tests: it is not AMD's and
# protects nothing. Run from this folder: sh make.sh
set -eu
PSS="-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:48 -sigopt rsa_mgf1_md:sha384"
[ -f test-ark.key ] || openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out test-ark.key
subj_test="/OU=Engineering/C=US/L=Santa Clara/ST=CA/O=Veil test (not AMD)/CN=ARK-Test"
subj_milan="/OU=Engineering/C=US/L=Santa Clara/ST=CA/O=Advanced Micro Devices/CN=ARK-Milan"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ca_conf() {
  cat > "$work/ca.conf" <<CONF
[ ca ]
default_ca = test
[ test ]
database = $work/index.txt
crlnumber = $work/crlnumber
default_md = sha384
crl_extensions = crl_ext
[ crl_ext ]
authorityKeyIdentifier = keyid:always
CONF
  : > "$work/index.txt"
  echo 01 > "$work/crlnumber"
}
# The test ARK: self-signed, RSA-PSS SHA-384 like AMD's.
openssl req -x509 -new -key test-ark.key -sha384 $PSS -subj "$subj_test" \
  -days 36500 -set_serial 0x0f0000 -outform DER -out test-ark.der \
  -addext "subjectKeyIdentifier=hash" -addext "basicConstraints=critical,CA:true"
openssl x509 -inform DER -in test-ark.der -out "$work/ark.pem"
# A CRL of the test ARK that revokes serial 0f:00:01 (the test ASK), valid 2025-01-01 .. 2035-01-01.
ca_conf
printf 'R\t350101000000Z\t250101000000Z\t0F0001\tunknown\t/CN=ASK-Test\n' > "$work/index.txt"
openssl ca -config "$work/ca.conf" -gencrl -keyfile test-ark.key -cert "$work/ark.pem" \
  -md sha384 $PSS -crl_lastupdate 20250101000000Z -crl_nextupdate 20350101000000Z \
  -out "$work/revoking.pem"
openssl crl -in "$work/revoking.pem" -outform DER -out test-ark-revokes-0f0001.crl
# A CRL naming AMD's ARK-Milan as issuer but signed by the test key: must be refused.
openssl req -x509 -new -key test-ark.key -sha384 $PSS -subj "$subj_milan" \
  -days 36500 -set_serial 0x010000 -out "$work/fake-milan.pem"
ca_conf
openssl ca -config "$work/ca.conf" -gencrl -keyfile test-ark.key -cert "$work/fake-milan.pem" \
  -md sha384 $PSS -crl_lastupdate 20250501000000Z -crl_nextupdate 20260601000000Z \
  -out "$work/impostor.pem"
openssl crl -in "$work/impostor.pem" -outform DER -out impostor-ark-milan.crl
