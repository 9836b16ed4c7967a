#!/usr/bin/env bash
# Smoke test: run a real etcd + kube-apiserver on loopback and talk to it with
# kubectl. No kubelet, no controller-manager, no scheduler, no containers.
#
# This script is also the reference for the Rust integration-test harness: the
# certificates, etcd flags, kube-apiserver flags and kubeconfig below are
# exactly what the harness has to reproduce.
#
# Prerequisite: hack/k8s-tools.sh (builds the binaries; this script calls it,
# which is a no-op once they exist). Needs openssl and curl.
#
# Usage: hack/apiserver-smoke.sh      (KEEP_TMP=1 keeps the temp dir + logs)
#
# Things that do NOT happen without kube-controller-manager (tests must cope):
#   - no default ServiceAccount per namespace (hence ServiceAccount admission
#     is disabled), no token Secrets
#   - no EndpointSlices for Services (tests create them by hand)
#   - deleted namespaces stay Terminating forever; no garbage collection
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)

"$SCRIPT_DIR/k8s-tools.sh" >&2
BIN=$("$SCRIPT_DIR/k8s-tools.sh" --print-bin-dir)

# Everything is on loopback; never send it through a proxy.
export NO_PROXY=127.0.0.1,localhost,::1 no_proxy=127.0.0.1,localhost,::1

TMP=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-apiserver.XXXXXX")
ETCD_PID="" APISERVER_PID=""

stop() { # stop PID NAME: SIGTERM, then SIGKILL after 10s
  local pid=$1 name=$2
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "$name (pid $pid) did not stop, killing" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop "$APISERVER_PID" kube-apiserver
  stop "$ETCD_PID" etcd
  if [[ $rc -ne 0 ]]; then
    for f in "$TMP"/etcd.log "$TMP"/kube-apiserver.log; do
      [[ -f "$f" ]] && { echo "--- last lines of $f:" >&2; tail -n 30 "$f" >&2; }
    done
    echo "SMOKE TEST FAILED (exit $rc)" >&2
  fi
  if [[ -n "${KEEP_TMP:-}" ]]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A loopback TCP port nothing is listening on (the Rust harness binds :0
# instead). Small race between probing and use; fine for a smoke test.
USED_PORTS=" "
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    [[ "$USED_PORTS" == *" $p "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      USED_PORTS+="$p "; echo "$p"; return
    fi
  done
}

# wait_for PID URL SECONDS CURL_ARGS...: poll until curl gets a 2xx; fail
# early if process PID exits.
wait_for() {
  local pid=$1 url=$2 secs=$3; shift 3
  local deadline=$((SECONDS + secs))
  until curl --noproxy '*' -fsS -o /dev/null --max-time 2 "$@" "$url" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then echo "process $pid exited while waiting for $url" >&2; return 1; fi
    if ((SECONDS >= deadline)); then echo "timed out waiting for $url" >&2; return 1; fi
    sleep 0.1
  done
}

now_ms() { date +%s%3N; }

# ---------------------------------------------------------------------------
# 1. Certificates (EC P-256 keys, valid for 1 day)
#    ca.crt/ca.key          cluster CA: signs the serving and client certs,
#                           used as --client-ca-file
#    apiserver.crt/.key     serving cert, SANs IP:127.0.0.1, DNS:localhost
#    sa.key/sa.pub          service-account token signing key pair
#    admin.crt/.key         client cert CN=portcullis-admin, O=system:masters
# ---------------------------------------------------------------------------
echo "generating certificates in $TMP"
cat > "$TMP/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[serving]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
authorityKeyIdentifier = keyid
[client]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
EOF

genkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$TMP/$1" 2>/dev/null; }

# sign NAME SUBJECT EXTENSIONS SERIAL: key + CSR + cert signed by the CA.
sign() {
  local name=$1 subj=$2 ext=$3 serial=$4
  genkey "$name.key"
  openssl req -new -config "$TMP/openssl.cnf" -key "$TMP/$name.key" \
    -subj "$subj" -out "$TMP/$name.csr"
  openssl x509 -req -in "$TMP/$name.csr" -CA "$TMP/ca.crt" -CAkey "$TMP/ca.key" \
    -set_serial "$serial" -days 1 -extfile "$TMP/openssl.cnf" -extensions "$ext" \
    -out "$TMP/$name.crt" 2>/dev/null
}

genkey ca.key
openssl req -x509 -new -config "$TMP/openssl.cnf" -extensions ca -key "$TMP/ca.key" \
  -subj "/CN=portcullis-test-ca" -days 1 -out "$TMP/ca.crt"
sign apiserver "/CN=kube-apiserver" serving 2
sign admin "/O=system:masters/CN=portcullis-admin" client 3
genkey sa.key
openssl pkey -in "$TMP/sa.key" -pubout -out "$TMP/sa.pub"

# ---------------------------------------------------------------------------
# 2. etcd: single member, plain HTTP on loopback, data in the temp dir.
#    --unsafe-no-fsync: test data is throwaway; makes writes much cheaper.
# ---------------------------------------------------------------------------
ETCD_CLIENT_PORT=$(free_port)
ETCD_PEER_PORT=$(free_port)
ETCD_URL="http://127.0.0.1:$ETCD_CLIENT_PORT"
ETCD_PEER_URL="http://127.0.0.1:$ETCD_PEER_PORT"

echo "starting etcd on $ETCD_URL"
t0=$(now_ms)
"$BIN/etcd" \
  --name=portcullis-test \
  --data-dir="$TMP/etcd-data" \
  --listen-client-urls="$ETCD_URL" \
  --advertise-client-urls="$ETCD_URL" \
  --listen-peer-urls="$ETCD_PEER_URL" \
  --initial-advertise-peer-urls="$ETCD_PEER_URL" \
  --initial-cluster="portcullis-test=$ETCD_PEER_URL" \
  --unsafe-no-fsync \
  --log-level=warn \
  >"$TMP/etcd.log" 2>&1 &
ETCD_PID=$!
wait_for "$ETCD_PID" "$ETCD_URL/health" 30
echo "etcd ready in $(($(now_ms) - t0)) ms (pid $ETCD_PID)"

# ---------------------------------------------------------------------------
# 3. kube-apiserver on 127.0.0.1 with RBAC; no controller-manager needed.
#    --endpoint-reconciler-type=none: the default (lease) reconciler refuses
#      a loopback --advertise-address ("may not be in the loopback range");
#      "none" just means default/kubernetes gets no Endpoints.
#    --disable-admission-plugins=ServiceAccount: nothing creates the
#      "default" ServiceAccount, so pods would otherwise be rejected.
# ---------------------------------------------------------------------------
APISERVER_PORT=$(free_port)
APISERVER_URL="https://127.0.0.1:$APISERVER_PORT"

echo "starting kube-apiserver on $APISERVER_URL"
t0=$(now_ms)
"$BIN/kube-apiserver" \
  --advertise-address=127.0.0.1 \
  --bind-address=127.0.0.1 \
  --secure-port="$APISERVER_PORT" \
  --etcd-servers="$ETCD_URL" \
  --client-ca-file="$TMP/ca.crt" \
  --tls-cert-file="$TMP/apiserver.crt" \
  --tls-private-key-file="$TMP/apiserver.key" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$TMP/sa.pub" \
  --service-account-signing-key-file="$TMP/sa.key" \
  --service-cluster-ip-range=10.96.0.0/16 \
  --authorization-mode=RBAC \
  --disable-admission-plugins=ServiceAccount \
  --endpoint-reconciler-type=none \
  >"$TMP/kube-apiserver.log" 2>&1 &
APISERVER_PID=$!
wait_for "$APISERVER_PID" "$APISERVER_URL/readyz" 120 \
  --cacert "$TMP/ca.crt" --cert "$TMP/admin.crt" --key "$TMP/admin.key"
echo "kube-apiserver ready in $(($(now_ms) - t0)) ms (pid $APISERVER_PID)"

# ---------------------------------------------------------------------------
# 4. Admin kubeconfig (client cert in group system:masters).
# ---------------------------------------------------------------------------
KUBECONFIG_FILE="$TMP/admin.kubeconfig"
cat > "$KUBECONFIG_FILE" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: portcullis-test
  cluster:
    server: $APISERVER_URL
    certificate-authority: $TMP/ca.crt
users:
- name: admin
  user:
    client-certificate: $TMP/admin.crt
    client-key: $TMP/admin.key
contexts:
- name: portcullis-test
  context:
    cluster: portcullis-test
    user: admin
current-context: portcullis-test
EOF

kc() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" --cache-dir "$TMP/kube-cache" "$@"; }

# expect WANT CMD...: run CMD, fail unless its output is exactly WANT.
expect() {
  local want=$1 got; shift
  got=$("$@" 2>&1) || true
  [[ "$got" == "$want" ]] || { echo "expected '$want', got '$got' from: $*" >&2; return 1; }
  echo "  -> $got"
}

# ---------------------------------------------------------------------------
# 5. Checks.
# ---------------------------------------------------------------------------
echo "+ kubectl version"; kc version
echo "+ kubectl get ns"; kc get ns
echo "+ kubectl create ns smoke"; kc create ns smoke
expect Active kc get ns smoke -o 'jsonpath={.status.phase}'

echo "+ kubectl auth can-i '*' '*' --all-namespaces (admin, expect yes)"
expect yes kc auth can-i '*' '*' --all-namespaces

# RBAC is really enforced: a service account with no bindings may not list
# secrets. (can-i prints "no" and exits 1.)
echo "+ kubectl auth can-i list secrets as an unbound service account (expect no)"
expect no kc auth can-i list secrets -n smoke --as=system:serviceaccount:smoke:portcullis

# Service-account tokens are signed and accepted (TokenRequest needs no
# controller-manager): a fresh token authenticates as the service account.
echo "+ kubectl create serviceaccount + token; kubectl auth whoami with that token"
kc create serviceaccount portcullis -n smoke
TOKEN=$(kc create token portcullis -n smoke --duration=10m)
expect system:serviceaccount:smoke:portcullis \
  "$BIN/kubectl" --kubeconfig=/dev/null --cache-dir "$TMP/kube-cache" \
  --server="$APISERVER_URL" --certificate-authority="$TMP/ca.crt" --token="$TOKEN" \
  auth whoami -o 'jsonpath={.status.userInfo.username}'

echo "apiserver smoke test PASSED"
