#!/usr/bin/env bash
# Makes the quick start's TEST-ONLY certificates: a throwaway CA and three leaf
# certificates signed by it, written as kubernetes.io/tls Secrets into
# secrets-test-only.yaml, and the CA certificate into test-only-ca.crt for curl.
#
# The keys are public (they are committed). Never use them for anything but this demo.
# Run it again to make fresh ones: ./examples/quickstart/make-test-certs.sh
set -euo pipefail
cd "$(dirname "$0")"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
days=3650

openssl req -x509 -new -nodes -days "$days" -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
  -subj "/O=Portcullis quick start/CN=Portcullis TEST-ONLY CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -keyout "$work/ca.key" -out test-only-ca.crt 2>/dev/null

# leaf NAME KEY-ALGORITHM-OPTIONS SAN...
leaf() {
  local name=$1 keyopts=$2; shift 2
  local san
  san=$(printf 'DNS:%s,' "$@"); san=${san%,}
  # shellcheck disable=SC2086
  openssl req -new -nodes $keyopts -subj "/O=Portcullis quick start TEST-ONLY/CN=$1" \
    -keyout "$work/$name.key" -out "$work/$name.csr" 2>/dev/null
  openssl x509 -req -in "$work/$name.csr" -CA test-only-ca.crt -CAkey "$work/ca.key" \
    -CAcreateserial -CAserial "$work/ca.srl" -days "$days" -out "$work/$name.crt" \
    -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' "$san") 2>/dev/null
  # The chain: leaf first, then the CA.
  cat "$work/$name.crt" test-only-ca.crt > "$work/$name.chain"
}

leaf shop-tls "-newkey ec -pkeyopt ec_paramgen_curve:P-256" shop.portcullis.test
leaf blog-tls "-newkey rsa:2048" blog.portcullis.test
leaf apps-wildcard-tls "-newkey ec -pkeyopt ec_paramgen_curve:P-384" "*.apps.portcullis.test"

{
  echo "# TEST-ONLY certificates and keys for the quick start; made by make-test-certs.sh."
  echo "# These private keys are public. Do not use them anywhere else."
  for name in shop-tls blog-tls apps-wildcard-tls; do
    cat <<YAML
---
apiVersion: v1
kind: Secret
metadata:
  name: $name
  namespace: demo
  labels:
    portcullis.dev/test-only: "true"
type: kubernetes.io/tls
data:
  tls.crt: $(base64 -w0 "$work/$name.chain")
  tls.key: $(base64 -w0 "$work/$name.key")
YAML
  done
} > secrets-test-only.yaml

echo "wrote secrets-test-only.yaml and test-only-ca.crt (valid $days days)"
