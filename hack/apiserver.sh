#!/usr/bin/env bash
# Start or stop a throwaway etcd + kube-apiserver on loopback, for scripts that need
# a real API server (hack/check-chart.sh, hack/apiserver-smoke.sh). RBAC is on. The Rust
# test harness (tests/kube_support/cluster.rs) reproduces these certificates and flags.
#
# There is no kubelet, scheduler or controller-manager, so (tests must cope):
#   - no default ServiceAccount per namespace (hence ServiceAccount admission is
#     disabled), no token Secrets;
#   - no EndpointSlices for Services (tests create them by hand);
#   - deleted namespaces stay Terminating; no garbage collection.
#
# Usage:
#   hack/apiserver.sh start DIR   start both in the background; state, logs and an admin
#                                 kubeconfig (DIR/admin.kubeconfig) go into DIR, which
#                                 must be empty or absent. Prints the kubeconfig path.
#   hack/apiserver.sh stop DIR    stop the two processes recorded in DIR (and only those)
#
# The binaries come from hack/k8s-tools.sh, which builds them; this script does not,
# and fails naming the missing binary instead.
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
BIN=$("$SCRIPT_DIR/k8s-tools.sh" --print-bin-dir)

# Everything is on loopback; never send it through a proxy.
export NO_PROXY=127.0.0.1,localhost,::1 no_proxy=127.0.0.1,localhost,::1

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
cmd=$1
DIR=$2

# stop_pid NAME: SIGTERM the process recorded in DIR/NAME.pid, SIGKILL after 10 s. The pid
# is only signalled while its command line still names our binary, so a recycled pid is
# never touched.
stop_pid() {
  local name=$1 pidfile="$DIR/$1.pid" pid
  [[ -f "$pidfile" ]] || return 0
  pid=$(<"$pidfile")
  if [[ "$pid" =~ ^[0-9]+$ ]] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$BIN/$name"; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "$name (pid $pid) did not stop in 10s, killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  rm -f "$pidfile"
}

if [[ "$cmd" == stop ]]; then
  stop_pid kube-apiserver
  stop_pid etcd
  exit 0
fi
[[ "$cmd" == start ]] || usage

for tool in etcd kube-apiserver; do
  if [[ ! -x "$BIN/$tool" ]]; then
    echo "error: $tool not found in $BIN; build it with hack/k8s-tools.sh" >&2
    exit 1
  fi
done
for tool in openssl curl; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found in PATH; install it (apt-get install $tool)" >&2; exit 1; }
done
mkdir -p "$DIR"
if [[ -n "$(ls -A "$DIR")" ]]; then echo "error: $DIR is not empty" >&2; exit 1; fi
DIR=$(cd "$DIR" && pwd)

# On a failed start, stop whatever did start and show the logs.
started=0
on_exit() {
  local rc=$?
  if [[ $started -eq 0 ]]; then
    stop_pid kube-apiserver
    stop_pid etcd
    for f in "$DIR"/etcd.log "$DIR"/kube-apiserver.log; do
      [[ -f "$f" ]] && { echo "--- last lines of $f:" >&2; tail -n 20 "$f" >&2; }
    done
    echo "error: the API server did not start (exit $rc)" >&2
  fi
}
trap on_exit EXIT

# A loopback TCP port nothing listens on, below the kernel's ephemeral range so that no
# outgoing connection holds it. Another process may still take it between the probe
# and our bind: the starts below retry with fresh ports.
read -r EPHEMERAL_LOW _ < /proc/sys/net/ipv4/ip_local_port_range
PORT_LOW=20000
((EPHEMERAL_LOW - PORT_LOW >= 2000)) || PORT_LOW=$((EPHEMERAL_LOW - 2000))
USED_PORTS=" "
free_port() {
  local p
  for _ in $(seq 200); do
    p=$((PORT_LOW + RANDOM % (EPHEMERAL_LOW - PORT_LOW)))
    [[ "$USED_PORTS" == *" $p "* ]] && continue
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      USED_PORTS+="$p "; echo "$p"; return 0
    fi
  done
  echo "error: no free loopback port found" >&2; return 1
}

# wait_for PID URL SECONDS CURL_ARGS...: poll until curl gets a 2xx, at most SECONDS;
# fail at once if PID exits.
wait_for() {
  local pid=$1 url=$2 secs=$3; shift 3
  local deadline=$((SECONDS + secs))
  until curl --noproxy '*' -fsS -o /dev/null --max-time 2 "$@" "$url" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { echo "error: process $pid exited while waiting for $url" >&2; return 1; }
    ((SECONDS < deadline)) || { echo "error: timed out after ${secs}s waiting for $url" >&2; return 1; }
    sleep 0.2
  done
}

# 1. Certificates, EC P-256, valid for a day:
#    ca.crt/.key          the cluster CA: signs the others; --client-ca-file
#    apiserver.crt/.key   serving, SANs IP:127.0.0.1 and DNS:localhost
#    admin.crt/.key       client, CN=portcullis-admin, O=system:masters
#    sa.key/sa.pub        the service-account token signing pair
cat > "$DIR/openssl.cnf" <<'EOF'
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
genkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$DIR/$1" 2>/dev/null; }
sign() { # sign NAME SUBJECT EXTENSIONS SERIAL
  genkey "$1.key"
  openssl req -new -config "$DIR/openssl.cnf" -key "$DIR/$1.key" -subj "$2" -out "$DIR/$1.csr"
  openssl x509 -req -in "$DIR/$1.csr" -CA "$DIR/ca.crt" -CAkey "$DIR/ca.key" -set_serial "$4" \
    -days 1 -extfile "$DIR/openssl.cnf" -extensions "$3" -out "$DIR/$1.crt" 2>/dev/null
}
genkey ca.key
openssl req -x509 -new -config "$DIR/openssl.cnf" -extensions ca -key "$DIR/ca.key" \
  -subj "/CN=portcullis-test-ca" -days 1 -out "$DIR/ca.crt"
sign apiserver "/CN=kube-apiserver" serving 2
sign admin "/O=system:masters/CN=portcullis-admin" client 3
genkey sa.key
openssl pkey -in "$DIR/sa.key" -pubout -out "$DIR/sa.pub"

# 2. etcd, plain HTTP on loopback, throwaway data (hence --unsafe-no-fsync, which makes
#    writes much cheaper). Up to 3 tries with fresh ports.
start_etcd() {
  etcd_url="http://127.0.0.1:$(free_port)"
  local peer_url
  peer_url="http://127.0.0.1:$(free_port)"
  rm -rf "$DIR/etcd-data"
  "$BIN/etcd" \
    --name=portcullis-test \
    --data-dir="$DIR/etcd-data" \
    --listen-client-urls="$etcd_url" \
    --advertise-client-urls="$etcd_url" \
    --listen-peer-urls="$peer_url" \
    --initial-advertise-peer-urls="$peer_url" \
    --initial-cluster="portcullis-test=$peer_url" \
    --unsafe-no-fsync \
    --log-level=warn \
    </dev/null >"$DIR/etcd.log" 2>&1 &
  echo $! > "$DIR/etcd.pid"
  wait_for "$(<"$DIR/etcd.pid")" "$etcd_url/health" 30
}

# 3. kube-apiserver with RBAC on 127.0.0.1. Up to 3 tries with fresh ports.
#    --endpoint-reconciler-type=none: the default (lease) reconciler refuses a loopback
#      --advertise-address; with none, default/kubernetes simply gets no endpoints.
#    --disable-admission-plugins=ServiceAccount: nothing creates the "default"
#      ServiceAccount, so pods would otherwise be refused.
start_kube_apiserver() {
  apiserver_url="https://127.0.0.1:$(free_port)"
  "$BIN/kube-apiserver" \
    --advertise-address=127.0.0.1 \
    --bind-address=127.0.0.1 \
    --secure-port="${apiserver_url##*:}" \
    --etcd-servers="$etcd_url" \
    --client-ca-file="$DIR/ca.crt" \
    --tls-cert-file="$DIR/apiserver.crt" \
    --tls-private-key-file="$DIR/apiserver.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$DIR/sa.pub" \
    --service-account-signing-key-file="$DIR/sa.key" \
    --service-cluster-ip-range=10.96.0.0/16 \
    --authorization-mode=RBAC \
    --disable-admission-plugins=ServiceAccount \
    --endpoint-reconciler-type=none \
    </dev/null >"$DIR/kube-apiserver.log" 2>&1 &
  echo $! > "$DIR/kube-apiserver.pid"
  wait_for "$(<"$DIR/kube-apiserver.pid")" "$apiserver_url/readyz" 120 \
    --cacert "$DIR/ca.crt" --cert "$DIR/admin.crt" --key "$DIR/admin.key"
}

# start_with_retries NAME: run start_NAME up to 3 times, stopping a failed attempt.
start_with_retries() {
  local name=$1 attempt
  for attempt in 1 2 3; do
    "start_${name//-/_}" && return 0
    stop_pid "$name"
    if grep -q 'address already in use' "$DIR/$name.log" && ((attempt < 3)); then
      echo "$name: port taken, retrying with other ports" >&2
    else
      return 1
    fi
  done
  return 1
}
start_with_retries etcd
start_with_retries kube-apiserver

# 4. The admin kubeconfig.
cat > "$DIR/admin.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: portcullis-test
  cluster:
    server: $apiserver_url
    certificate-authority: $DIR/ca.crt
users:
- name: admin
  user:
    client-certificate: $DIR/admin.crt
    client-key: $DIR/admin.key
contexts:
- name: portcullis-test
  context:
    cluster: portcullis-test
    user: admin
current-context: portcullis-test
EOF
started=1
echo "$DIR/admin.kubeconfig"
