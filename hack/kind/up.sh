#!/usr/bin/env bash
# Try Portcullis in a local kind cluster:
#   1. create the kind cluster of hack/kind/cluster.yaml (ports 80 and 443 on the
#      host's 127.0.0.1), unless it exists;
#   2. build the image from the Dockerfile and load it into the cluster;
#   3. install the chart with hack/kind/values.yaml (a DaemonSet binding the ports);
#   4. deploy hack/kind/demo.yaml (an echo backend, its Service and an Ingress) and a
#      self-signed certificate for echo.portcullis.test as the Secret echo-tls;
#   5. curl https://echo.portcullis.test and http://echo.portcullis.test through
#      127.0.0.1 (--resolve; no DNS or /etc/hosts changes).
# Run it again after changing the code or the chart: it rebuilds and upgrades.
# hack/kind/down.sh deletes the cluster.
#
# Needs docker, kind (v0.20+), kubectl, helm (v3 or v4), openssl and curl. kubectl and
# helm are taken from PATH, else from hack/k8s-tools.sh's bin dir.
#
# Environment:
#   KIND_CLUSTER_NAME  cluster name (default: portcullis)
#   HTTP_PORT          host port for HTTP  (default: 80)
#   HTTPS_PORT         host port for HTTPS (default: 443); for example HTTP_PORT=8080
#                      HTTPS_PORT=8443 where ports below 1024 are not available.
#                      Ports take effect when the cluster is created.
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
HERE="$ROOT/hack/kind"
CLUSTER=${KIND_CLUSTER_NAME:-portcullis}
CONTEXT="kind-$CLUSTER"
HTTP_PORT=${HTTP_PORT:-80}
HTTPS_PORT=${HTTPS_PORT:-443}
IMAGE=portcullis:dev
NAMESPACE=portcullis-system
DEMO_NS=portcullis-demo
HOST=echo.portcullis.test
# The demo certificate, for curl --cacert; under target/, which git ignores.
CERT_DIR="$ROOT/target/kind"
CERT="$CERT_DIR/echo-tls.crt"

say() { printf '\n==> %s\n' "$*"; }
die() { echo "error: $*" >&2; exit 1; }

# Tools: fail with what to install, never skip a step.
TOOLS_BIN=$("$ROOT/hack/k8s-tools.sh" --print-bin-dir)
find_tool() { # find_tool NAME: PATH first, then hack/k8s-tools.sh's bin dir
  if command -v "$1" >/dev/null 2>&1; then command -v "$1"
  elif [[ -x "$TOOLS_BIN/$1" ]]; then echo "$TOOLS_BIN/$1"
  else return 1; fi
}
for tool in docker kind openssl curl; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found in PATH; install it first"
done
KUBECTL=$(find_tool kubectl) || die "kubectl not found; install it, or build it with hack/k8s-tools.sh"
HELM=$(find_tool helm) || die "helm not found; install it, or build it with hack/k8s-tools.sh"
docker info >/dev/null 2>&1 || die "docker is installed but its daemon does not answer (docker info)"
[[ "$HTTP_PORT" =~ ^[0-9]+$ && "$HTTPS_PORT" =~ ^[0-9]+$ ]] || die "HTTP_PORT and HTTPS_PORT must be numbers"

kc() { "$KUBECTL" --context "$CONTEXT" "$@"; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# 1. The cluster.
clusters=$(kind get clusters 2>/dev/null || true)
if grep -qx "$CLUSTER" <<<"$clusters"; then
  say "kind cluster $CLUSTER exists; reusing it"
else
  say "creating kind cluster $CLUSTER (127.0.0.1:$HTTP_PORT and :$HTTPS_PORT to the node's 80 and 443)"
  sed -e "s/hostPort: 80$/hostPort: $HTTP_PORT/" -e "s/hostPort: 443$/hostPort: $HTTPS_PORT/" \
    "$HERE/cluster.yaml" > "$WORK/cluster.yaml"
  kind create cluster --name "$CLUSTER" --config "$WORK/cluster.yaml" --wait 120s
fi

# 2. The image, labelled with the workspace version.
version=$(awk -F'"' '/^\[workspace.package\]/ {p = 1} p && $1 ~ /^version *= */ {print $2; exit}' "$ROOT/Cargo.toml")
say "building $IMAGE (portcullis $version; the first build takes several minutes)"
docker build --build-arg "VERSION=$version" --tag "$IMAGE" "$ROOT"
kind load docker-image "$IMAGE" --name "$CLUSTER"

# 3. The chart. HTTPS redirects name the host port when it is not 443. On a re-run the
# pods are restarted, so that they run the image just rebuilt under the same tag.
say "installing the chart into $NAMESPACE"
upgrade=0
"$HELM" --kube-context "$CONTEXT" --namespace "$NAMESPACE" status portcullis >/dev/null 2>&1 && upgrade=1
helm_args=(--kube-context "$CONTEXT" --namespace "$NAMESPACE" --create-namespace
  --values "$HERE/values.yaml" --wait --timeout 5m)
if [[ "$HTTPS_PORT" != 443 ]]; then
  helm_args+=(--set-json "extraArgs=[\"--redirect-https-port=$HTTPS_PORT\"]")
fi
"$HELM" upgrade --install portcullis "$ROOT/charts/portcullis" "${helm_args[@]}"
if [[ $upgrade -eq 1 ]]; then kc -n "$NAMESPACE" rollout restart daemonset/portcullis; fi
kc -n "$NAMESPACE" rollout status daemonset/portcullis --timeout=180s

# 4. The demo: backend, Service, Ingress, and a self-signed certificate (valid 30 days).
say "deploying the echo backend and the Ingress for $HOST"
demo_existed=0
kc -n "$DEMO_NS" get deployment echo >/dev/null 2>&1 && demo_existed=1
kc apply -f "$HERE/demo.yaml"
mkdir -p "$CERT_DIR"
openssl req -x509 -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -days 30 \
  -subj "/O=Portcullis kind demo/CN=$HOST" \
  -addext "subjectAltName=DNS:$HOST" -addext "extendedKeyUsage=serverAuth" \
  -keyout "$WORK/tls.key" -out "$CERT" 2>/dev/null
kc -n "$DEMO_NS" create secret tls echo-tls --cert "$CERT" --key "$WORK/tls.key" \
  --dry-run=client -o yaml | kc apply -f -
if [[ $demo_existed -eq 1 ]]; then kc -n "$DEMO_NS" rollout restart deployment/echo; fi
kc -n "$DEMO_NS" rollout status deployment/echo --timeout=180s

# 5. Through Portcullis, with bounded retries while it picks up the new endpoints.
say "curl https://$HOST:$HTTPS_PORT/ through 127.0.0.1"
https_url="https://$HOST:$HTTPS_PORT/"
[[ "$HTTPS_PORT" == 443 ]] && https_url="https://$HOST/"
http_url="http://$HOST:$HTTP_PORT/"
[[ "$HTTP_PORT" == 80 ]] && http_url="http://$HOST/"
curl_demo() { # curl_demo ARGS...: curl pinned to 127.0.0.1, bounded in time
  curl --noproxy '*' --silent --show-error --max-time 5 \
    --resolve "$HOST:$HTTPS_PORT:127.0.0.1" --resolve "$HOST:$HTTP_PORT:127.0.0.1" "$@"
}
answer=""
for attempt in $(seq 30); do
  if answer=$(curl_demo --fail --cacert "$CERT" "$https_url" 2>"$WORK/curl.err") \
    && grep -q '^echo: kind-echo' <<<"$answer"; then
    break
  fi
  answer=""
  echo "  not yet (attempt $attempt/30): $(tail -n 1 "$WORK/curl.err")"
  sleep 2
done
if [[ -z "$answer" ]]; then
  kc -n "$NAMESPACE" logs daemonset/portcullis --tail=50 >&2 || true
  kc -n "$DEMO_NS" describe ingress echo >&2 || true
  die "no answer from the echo backend through Portcullis after 30 attempts"
fi
echo "$answer"

say "curl $http_url (plain HTTP to a TLS host: expect 308 to https)"
redirect=$(curl_demo --output /dev/null --write-out '%{http_code} %{redirect_url}' "$http_url")
echo "  $redirect"
[[ "$redirect" == 308\ https://$HOST* ]] || die "expected a 308 redirect to https://$HOST, got: $redirect"

cat <<MSG

Portcullis is serving $HOST in kind cluster $CLUSTER. Try, from $ROOT:

  curl --cacert ${CERT#"$ROOT"/} --resolve $HOST:$HTTPS_PORT:127.0.0.1 $https_url
  curl -i --resolve $HOST:$HTTP_PORT:127.0.0.1 $http_url
  # no SNI: Portcullis's placeholder certificate, and 404 (no rule for that host)
  curl -k https://127.0.0.1:$HTTPS_PORT/
  kubectl --context $CONTEXT -n $DEMO_NS get ingress echo
  kubectl --context $CONTEXT -n $NAMESPACE logs daemonset/portcullis

Delete the cluster with hack/kind/down.sh.
MSG
