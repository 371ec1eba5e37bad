#!/bin/sh
# Regenerates the TEST-ONLY AMD-like certificates, CRLs and SNP report in this folder with the
# openssl CLI (and python3 to place the report's signature). test-ark.key, test-ask.key and
# test-vcek.key are throwaway keys generated for Veil's tests: they are not AMD's and protect
# nothing. Run from this folder: sh make.sh (the certificates are valid for 100 years from the
# day it runs; the unit tests verify at 2030-01-01).
set -eu
PSS="-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:48 -sigopt rsa_mgf1_md:sha384"
[ -f test-ark.key ] || openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out test-ark.key
[ -f test-ask.key ] || openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out test-ask.key
[ -f test-vcek.key ] || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:secp384r1 -out test-vcek.key
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

# A test chain under the test ARK: ASK-Test (serial 0f:00:01, the one the CRL above revokes)
# and a VCEK (ECDSA P-384) carrying the TCB and hwID of ../trustee/snp-test-report.bin, which
# is re-signed with the test VCEK into test-report.bin (same contents, test signature).
report=../trustee/snp-test-report.bin
# A TCB byte of the report as a DER INTEGER (02:01:xx, or 02:02:00:xx from 0x80 up).
tcb_ext() { python3 -c "b = open('$report','rb').read()[0x180 + $1]; print(('02:02:00:%02x' if b >= 0x80 else '02:01:%02x') % b)"; }
chip=$(python3 -c "print(':'.join('%02x' % b for b in open('$report','rb').read()[0x1a0:0x1e0]))")
cat > "$work/ask.ext" <<EXT
basicConstraints = critical,CA:true
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EXT
openssl req -new -key test-ask.key -subj "/OU=Engineering/C=US/L=Santa Clara/ST=CA/O=Veil test (not AMD)/CN=SEV-Test" \
  -out "$work/ask.csr"
openssl x509 -req -in "$work/ask.csr" -CA "$work/ark.pem" -CAkey test-ark.key -set_serial 0x0f0001 \
  -days 36500 -sha384 $PSS -extfile "$work/ask.ext" -outform DER -out test-ask.der
openssl x509 -inform DER -in test-ask.der -out "$work/ask.pem"
cat > "$work/vcek.ext" <<EXT
1.3.6.1.4.1.3704.1.3.1 = DER:$(tcb_ext 0)
1.3.6.1.4.1.3704.1.3.2 = DER:$(tcb_ext 1)
1.3.6.1.4.1.3704.1.3.3 = DER:$(tcb_ext 6)
1.3.6.1.4.1.3704.1.3.8 = DER:$(tcb_ext 7)
1.3.6.1.4.1.3704.1.4 = DER:04:40:$chip
EXT
openssl req -new -key test-vcek.key -subj "/OU=Engineering/C=US/L=Santa Clara/ST=CA/O=Veil test (not AMD)/CN=SEV-VCEK" \
  -out "$work/vcek.csr"
openssl x509 -req -in "$work/vcek.csr" -CA "$work/ask.pem" -CAkey test-ask.key -set_serial 0 \
  -days 36500 -sha384 $PSS -extfile "$work/vcek.ext" -outform DER -out test-vcek.der
head -c 672 "$report" > "$work/signed.bin"
openssl dgst -sha384 -sign test-vcek.key -out "$work/sig.der" "$work/signed.bin"
python3 - "$report" "$work/sig.der" test-report.bin <<'PY'
import sys
report, sig, out = sys.argv[1:]
r = bytearray(open(report, "rb").read())
d = open(sig, "rb").read()
# ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER }, short lengths for P-384.
assert d[0] == 0x30
i = 2
ints = []
for _ in range(2):
    assert d[i] == 0x02
    n = d[i + 1]
    ints.append(int.from_bytes(d[i + 2:i + 2 + n], "big"))
    i += 2 + n
r[0x2a0:0x2a0 + 512] = bytes(512)
r[0x2a0:0x2a0 + 72] = ints[0].to_bytes(72, "little")
r[0x2a0 + 72:0x2a0 + 144] = ints[1].to_bytes(72, "little")
open(out, "wb").write(bytes(r))
PY
