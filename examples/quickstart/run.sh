#!/usr/bin/env bash
# The quick start: builds portcullis, starts three echo backends and portcullis on
# 127.0.0.1 (HTTPS 8443, HTTP 8080, admin 10254) serving this folder, and prints curl
# commands to try. Ctrl-C stops everything. Edit the YAML files while it runs: changes
# are picked up without a restart.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/examples/quickstart"
cd "$root"

echo "building portcullis (release; the first build takes a few minutes)..."
cargo build --release --quiet --bin portcullis
bin="$root/target/release/portcullis"

pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

"$bin" echo --listen 127.0.0.1:9101 --name web & pids+=($!)
"$bin" echo --listen 127.0.0.1:9102 --name api & pids+=($!)
"$bin" echo --listen 127.0.0.1:9103 --name fallback & pids+=($!)
"$bin" serve --manifests "$here" \
  --https-addr 127.0.0.1:8443 --http-addr 127.0.0.1:8080 --admin-addr 127.0.0.1:10254 \
  --redirect-https-port 8443 --shutdown-delay 0s & pids+=($!)

for _ in $(seq 1 100); do
  curl -fsS http://127.0.0.1:10254/readyz >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fsS http://127.0.0.1:10254/readyz >/dev/null

ca="examples/quickstart/test-only-ca.crt"
cat <<MSG

Portcullis is serving examples/quickstart. Try, from $root:

  # web, with the shop certificate (ECDSA P-256) over HTTP/2
  curl --cacert $ca --resolve shop.portcullis.test:8443:127.0.0.1 https://shop.portcullis.test:8443/
  # /api goes to another Service
  curl --cacert $ca --resolve shop.portcullis.test:8443:127.0.0.1 https://shop.portcullis.test:8443/api/orders
  # an RSA certificate, and a wildcard one
  curl --cacert $ca --resolve blog.portcullis.test:8443:127.0.0.1 https://blog.portcullis.test:8443/
  curl --cacert $ca --resolve x.apps.portcullis.test:8443:127.0.0.1 https://x.apps.portcullis.test:8443/
  # plain HTTP to a TLS host: 308 to https
  curl -i --resolve shop.portcullis.test:8080:127.0.0.1 http://shop.portcullis.test:8080/cart
  # a host with no rule: the default backend, on the placeholder certificate
  curl -k --resolve other.portcullis.test:8443:127.0.0.1 https://other.portcullis.test:8443/
  # readiness
  curl http://127.0.0.1:10254/readyz

Press Ctrl-C to stop.
MSG
wait "${pids[3]}"
