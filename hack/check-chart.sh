#!/usr/bin/env bash
# Checks the Helm chart (charts/portcullis), the plain manifests rendered from it
# (manifests/) and the kind recipe's values (hack/kind/), ending on a real API server:
#
#   1. the chart agrees with the binary (appVersion, --controller-name, ports, and
#      every flag it passes exists in controller/src/cli.rs) and with the Dockerfile
#      (user, crates, Rust version), and takes its RBAC rules from files/rbac/ only;
#   2. `helm lint --strict` with the defaults and each variant;
#   3. each variant renders what it promises (defaults, DaemonSet with hostPort,
#      watchNamespaces [a, b], NodePort, autoscaling, ServiceMonitor on and off,
#      most other options at once, the kind values);
#   4. wrong values are refused with a message naming the value (schema and template);
#   5. manifests/ equals a fresh render; the chart's README documents every value;
#   6. a real etcd + kube-apiserver on 127.0.0.1 (hack/apiserver.sh) accepts every
#      variant, the manifests and the kind demo with `kubectl apply --dry-run=server`,
#      without a Pod Security "restricted" warning (except hostPort where expected);
#      then the manifests and the watchNamespaces variant are applied for real and
#      `kubectl auth can-i` shows what the ServiceAccounts may and may not do; and
#      `helm install`, `helm upgrade` (to a DaemonSet) and `helm uninstall` work.
#
# Usage: hack/check-chart.sh        (KEEP_TMP=1 keeps the renders and API server logs)
#
# Needs helm, kubectl, kube-apiserver and etcd from hack/k8s-tools.sh (it fails, naming
# the missing tool, rather than skip), and openssl and curl. Traffic: 127.0.0.1 only.
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
CHART="$ROOT/charts/portcullis"
CLI_RS="$ROOT/controller/src/cli.rs"
BIN=$("$ROOT/hack/k8s-tools.sh" --print-bin-dir)
HELM="$BIN/helm"
KUBECTL="$BIN/kubectl"
RELEASE=portcullis
NAMESPACE=portcullis-system
START=$SECONDS

# --- Tools: fail loudly, never skip ---------------------------------------------------
missing=()
for tool in helm kubectl kube-apiserver etcd; do
  [[ -x "$BIN/$tool" ]] || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "error: missing ${missing[*]} in $BIN" >&2
  echo "       build them with: hack/k8s-tools.sh   (the first build takes 15-30 minutes)" >&2
  exit 1
fi
for tool in openssl curl awk diff; do
  command -v "$tool" >/dev/null || { echo "error: $tool not found in PATH; install it (apt-get install $tool)" >&2; exit 1; }
done

TMP=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-check-chart.XXXXXX")
# helm keeps its caches and settings here, not in $HOME.
export HELM_CACHE_HOME="$TMP/helm/cache" HELM_CONFIG_HOME="$TMP/helm/config" HELM_DATA_HOME="$TMP/helm/data"
APISERVER_DIR="$TMP/apiserver"
failures=0
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [[ -d "$APISERVER_DIR" ]] && "$ROOT/hack/apiserver.sh" stop "$APISERVER_DIR"
  if [[ -n "${KEEP_TMP:-}" ]]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
  if [[ $rc -ne 0 ]]; then echo "CHART CHECKS FAILED (exit $rc)" >&2; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

section() { printf '\n== %s\n' "$*"; }
pass() { echo "  ok    $*"; }
fail() { echo "  FAIL  $*" >&2; failures=$((failures + 1)); }
# check DESCRIPTION COMMAND...: one assertion; failures are counted, not fatal.
check() {
  local desc=$1; shift
  if "$@"; then pass "$desc"; else fail "$desc"; fi
}
has() { # has TEXT REGEX...: every regex matches a line of TEXT
  local text=$1 re; shift
  for re in "$@"; do grep -qE -e "$re" <<<"$text" || return 1; done
}
lacks() { # lacks TEXT REGEX...: no regex matches a line of TEXT
  local text=$1 re; shift
  for re in "$@"; do ! grep -qE -e "$re" <<<"$text" || return 1; done
}
contains() { [[ "$1" == *"$2"* ]]; } # contains TEXT FIXED-STRING

# The documents a template rendered: docs FILE TEMPLATE (e.g. controller.yaml).
docs() {
  awk -v want="# Source: portcullis/templates/$2" '
    /^---/ { on = 0; next }
    $0 == want { on = 1 }
    on { print }' "$1"
}

# --- 1. The chart agrees with the binary ----------------------------------------------
section "the chart agrees with the binary, the Dockerfile and files/rbac"

cargo_version=$(awk -F'"' '/^\[workspace.package\]/ {p = 1} p && $1 ~ /^version *= */ {print $2; exit}' "$ROOT/Cargo.toml")
app_version=$(awk '$1 == "appVersion:" {gsub(/"/, "", $2); print $2}' "$CHART/Chart.yaml")
check "Chart.yaml appVersion ($app_version) is the workspace version ($cargo_version)" \
  [ "$app_version" == "$cargo_version" ]

# cli_default ENV_VAR: the default_value of the flag read from that variable.
cli_default() {
  grep -A4 -F "env = \"$1\"" "$CLI_RS" | grep -o 'default_value = "[^"]*"' | head -n1 | cut -d'"' -f2
}
values_default() { # values_default KEY (a top-level or two-level key in values.yaml)
  "$HELM" show values "$CHART" | awk -v k="$1" '
    BEGIN { n = split(k, part, ".") }
    n == 1 && $1 == part[1] ":" { print $2; exit }
    n == 2 && /^[^ #]/ { top = $1 }
    n == 2 && top == part[1] ":" && $1 == part[2] ":" { print $2; exit }'
}
controller_name=$(cli_default PORTCULLIS_CONTROLLER_NAME)
check "ingressClass.controllerValue is the binary's --controller-name default ($controller_name)" \
  [ "$(values_default ingressClass.controllerValue)" == "$controller_name" ]
for port in http:PORTCULLIS_HTTP_ADDR https:PORTCULLIS_HTTPS_ADDR admin:PORTCULLIS_ADMIN_ADDR; do
  addr=$(cli_default "${port#*:}")
  check "containerPorts.${port%%:*} is the port of the binary's default ${port#*:} ($addr)" \
    [ "0.0.0.0:$(values_default "containerPorts.${port%%:*}")" == "$addr" ]
done

# The image runs as the chart's user, and builds every crate of the workspace.
docker_user=$(awk '$1 == "USER" {print $2}' "$ROOT/Dockerfile")
check "the Dockerfile's USER ($docker_user) is the chart's runAsUser:runAsGroup" \
  [ "$docker_user" == "$(values_default securityContext.runAsUser):$(values_default securityContext.runAsGroup)" ]
members=$(awk '/^members *=/' "$ROOT/Cargo.toml" | grep -oE '"[^"]+"' | tr -d '"')
missing_members=""
for m in $members; do
  grep -qE "^COPY $m " "$ROOT/Dockerfile" && grep -qxF "!$m/" "$ROOT/.dockerignore" || missing_members+=" $m"
done
check "the Dockerfile copies, and .dockerignore lets through, every workspace member${missing_members:+ (missing:$missing_members)}" \
  [ -n "$members" -a -z "$missing_members" ]
rust_version=$(awk -F'"' '$1 ~ /^rust-version *= */ {print $2; exit}' "$ROOT/Cargo.toml")
docker_rust=$(awk -F= '$1 == "ARG RUST_VERSION" {print $2}' "$ROOT/Dockerfile")
check "the Dockerfile's Rust ($docker_rust) is at least the workspace's rust-version ($rust_version)" \
  [ "$(printf '%s\n%s\n' "$rust_version" "$docker_rust" | sort -V | head -n1)" == "$rust_version" ]
check "the Dockerfile builds the binary with --release --locked" \
  grep -q 'cargo build --release --locked --bin portcullis' "$ROOT/Dockerfile"
check "... and labels the image with ARG VERSION" \
  has "$(<"$ROOT/Dockerfile")" '^ARG VERSION' 'org.opencontainers.image.version="\$\{VERSION\}"'

rules_in_templates=$(grep -rnE '^[[:space:]]*-?[[:space:]]*(apiGroups|verbs):' "$CHART/templates" || true)
check "no RBAC rule is written in templates/ (they come from files/rbac/*.yaml)" [ -z "$rules_in_templates" ]
[[ -z "$rules_in_templates" ]] || echo "$rules_in_templates" >&2

# --- 2. Lint and render every variant ---------------------------------------------------
section "helm lint --strict and helm template, for every variant"

declare -A VALUES=(
  [default]=""
  [daemonset-hostport]="$CHART/ci/daemonset-hostport-values.yaml"
  [watch-namespaces]="$CHART/ci/watch-namespaces-values.yaml"
  [nodeport]="$CHART/ci/nodeport-values.yaml"
  [autoscaling]="$CHART/ci/autoscaling-values.yaml"
  [servicemonitor]="$CHART/ci/servicemonitor-values.yaml"
  [options]="$CHART/ci/options-values.yaml"
  [kind]="$ROOT/hack/kind/values.yaml"
)
VARIANTS=(default daemonset-hostport watch-namespaces nodeport autoscaling servicemonitor options kind)
for f in "$CHART"/ci/*-values.yaml; do
  name=$(basename "$f" -values.yaml)
  [[ -n "${VALUES[$name]+set}" ]] || fail "$f is not checked: add it to VALUES and VARIANTS"
done

mkdir -p "$TMP/render"
for v in "${VARIANTS[@]}"; do
  args=()
  [[ -n "${VALUES[$v]}" ]] && args=(--values "${VALUES[$v]}")
  if out=$("$HELM" lint --strict "$CHART" "${args[@]}" 2>&1); then
    pass "helm lint --strict ($v)"
  else
    fail "helm lint --strict ($v)"; echo "$out" >&2
  fi
  if ! "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" "${args[@]}" \
    >"$TMP/render/$v.yaml" 2>"$TMP/render/$v.err"; then
    cat "$TMP/render/$v.err" >&2
    echo "error: helm template failed for variant $v; nothing else can be checked" >&2
    exit 1
  fi
done

# --- 3. What each variant renders -------------------------------------------------------
section "what each variant renders"

flags_seen=""
for v in "${VARIANTS[@]}"; do
  r="$TMP/render/$v.yaml"
  workload=$(docs "$r" controller.yaml)
  pod_args=$(awk '/^ +args:/ {on = 1; next} on && /^ +- / {print $2; next} on {exit}' <<<"$workload" | tr -d '"')
  flags_seen+=$'\n'"$pod_args"

  # The hardened pod, in every variant.
  pod_ok=1
  for want in 'runAsNonRoot: true' 'runAsUser: 65532' 'runAsGroup: 65532' 'readOnlyRootFilesystem: true' \
    'allowPrivilegeEscalation: false' '- ALL' '- NET_BIND_SERVICE' 'type: RuntimeDefault' \
    'name: net.ipv4.ip_unprivileged_port_start' 'name: POD_NAME' 'name: POD_NAMESPACE' \
    'fieldPath: metadata.name' 'fieldPath: metadata.namespace' 'path: /healthz' 'path: /readyz' \
    'port: admin' 'cpu: ' 'memory: '; do
    contains "$workload" "$want" || { pod_ok=0; echo "    $v: missing '$want'" >&2; }
  done
  check "$v: hardened pod, downward-API env, probes on the admin port, requests" [ $pod_ok -eq 1 ]

  delay=$(grep -oE -- '--shutdown-delay=[0-9]+s' <<<"$pod_args" | tr -dc 0-9)
  drain=$(grep -oE -- '--drain-timeout=[0-9]+s' <<<"$pod_args" | tr -dc 0-9)
  grace=$(grep -oE 'terminationGracePeriodSeconds: [0-9]+' <<<"$workload" | tr -dc 0-9)
  check "$v: terminationGracePeriodSeconds ($grace) > shutdown delay + drain timeout ($delay + $drain)" \
    [ "${grace:-0}" -gt "$((${delay:-999} + ${drain:-999}))" ]

  controller_flag=$(grep -oE -- '--controller-name=.*' <<<"$pod_args" | cut -d= -f2)
  class_controller=$(docs "$r" ingressclass.yaml | awk '$1 == "controller:" {print $2}')
  check "$v: IngressClass spec.controller ($class_controller) is the --controller-name passed" \
    [ -n "$class_controller" -a "$class_controller" == "$controller_flag" ]
  check "$v: the ClusterRole carries files/rbac/cluster-rules.yaml verbatim" \
    contains "$(docs "$r" clusterrole.yaml)" "$(sed 's/^/  /' "$CHART/files/rbac/cluster-rules.yaml")"
  check "$v: the own-namespace Role carries files/rbac/own-namespace-rules.yaml verbatim" \
    contains "$(docs "$r" role.yaml)" "$(sed 's/^/  /' "$CHART/files/rbac/own-namespace-rules.yaml")"
done

# Every flag the chart passes is one the binary has (a clap long name or field).
unknown_flags=""
while read -r flag; do
  name=${flag#--}
  grep -qE "pub ${name//-/_}:|long = \"$name\"" "$CLI_RS" || unknown_flags+=" $flag"
done < <(grep -oE -- '^--[a-z0-9-]+' <<<"$flags_seen" | sort -u)
check "every flag the chart passes exists in controller/src/cli.rs${unknown_flags:+ (not found:$unknown_flags)}" \
  [ -z "$unknown_flags" ]

R="$TMP/render"
d=$(docs "$R/default.yaml" controller.yaml)
check "default: a Deployment of 2 replicas" has "$d" '^kind: Deployment$' '^  replicas: 2$'
check "default: preferred pod anti-affinity by hostname" \
  has "$d" 'preferredDuringSchedulingIgnoredDuringExecution' 'topologyKey: kubernetes.io/hostname'
check "default: no hostPort" lacks "$d" 'hostPort:'
check "default: args wire the class, election id, publish service, log format" \
  has "$d" '- --ingress-class=portcullis$' '- --election-id=portcullis-leader$' \
  "- --publish-service=$NAMESPACE/portcullis$" '- --log-format=text$'
check "default: container ports 80/443/10254" \
  has "$d" 'containerPort: 80$' 'containerPort: 443$' 'containerPort: 10254$'
check "default: no --http-addr/--https-addr/--admin-addr (the binary's defaults)" \
  lacks "$d" '--(http|https|admin)-addr'
s=$(docs "$R/default.yaml" service.yaml)
check "default: a LoadBalancer Service, 80 -> http and 443 -> https" \
  has "$s" 'type: LoadBalancer' 'port: 80$' 'targetPort: http$' 'port: 443$' 'targetPort: https$'
check "default: the traffic Service does not expose the admin port" lacks "$s" 'admin'
check "default: the admin port has a ClusterIP Service of its own" \
  has "$(docs "$R/default.yaml" service-admin.yaml)" 'name: portcullis-admin$' 'type: ClusterIP' 'targetPort: admin'
check "default: the ClusterRole also carries files/rbac/namespaced-rules.yaml" \
  contains "$(docs "$R/default.yaml" clusterrole.yaml)" "$(sed 's/^/  /' "$CHART/files/rbac/namespaced-rules.yaml")"
check "default: a PodDisruptionBudget with minAvailable 1" \
  has "$(docs "$R/default.yaml" poddisruptionbudget.yaml)" 'minAvailable: 1'
check "default: no HorizontalPodAutoscaler" lacks "$(<"$R/default.yaml")" 'kind: HorizontalPodAutoscaler'
check "default: no ServiceMonitor (serviceMonitor.enabled=false)" lacks "$(<"$R/default.yaml")" 'kind: ServiceMonitor'
check "default: IngressClass portcullis" has "$(docs "$R/default.yaml" ingressclass.yaml)" '^  name: portcullis$'
check "default: ... which is not the default class" \
  lacks "$(docs "$R/default.yaml" ingressclass.yaml)" 'is-default-class'

d=$(docs "$R/daemonset-hostport.yaml" controller.yaml)
check "daemonset-hostport: a DaemonSet with an updateStrategy" has "$d" '^kind: DaemonSet$' '^  updateStrategy:$'
check "daemonset-hostport: no replicas, no anti-affinity" lacks "$d" 'replicas:' 'podAntiAffinity'
check "daemonset-hostport: hostPort 80 and 443" has "$d" 'hostPort: 80$' 'hostPort: 443$'

check "watch-namespaces: --watch-namespace=a and =b" \
  has "$(<"$R/watch-namespaces.yaml")" '- --watch-namespace=a$' '- --watch-namespace=b$'
cr=$(docs "$R/watch-namespaces.yaml" clusterrole.yaml)
check "watch-namespaces: the ClusterRole has the cluster rules only" lacks "$cr" 'ingresses\]' 'secrets'
roles=$(docs "$R/watch-namespaces.yaml" role.yaml)
check "watch-namespaces: three Roles and RoleBindings (own namespace, a and b)" \
  [ "$(grep -c '^kind: Role$' <<<"$roles")" -eq 3 -a "$(grep -c '^kind: RoleBinding$' <<<"$roles")" -eq 3 ]
check "watch-namespaces: ... portcullis-watched in namespaces a and b" \
  has "$roles" '^  name: portcullis-watched$' '^  namespace: a$' '^  namespace: b$'
check "watch-namespaces: ... with files/rbac/namespaced-rules.yaml" \
  contains "$roles" "$(sed 's/^/  /' "$CHART/files/rbac/namespaced-rules.yaml")"

check "nodeport: a NodePort Service with externalTrafficPolicy Local and fixed node ports" \
  has "$(docs "$R/nodeport.yaml" service.yaml)" 'type: NodePort' 'externalTrafficPolicy: Local' \
  'nodePort: 30080' 'nodePort: 30443'

check "autoscaling: an autoscaling/v2 HPA 3..6 on CPU and memory for the Deployment" \
  has "$(docs "$R/autoscaling.yaml" horizontalpodautoscaler.yaml)" 'apiVersion: autoscaling/v2' \
  'minReplicas: 3' 'maxReplicas: 6' 'name: cpu' 'name: memory' 'kind: Deployment'
check "autoscaling: the Deployment leaves replicas to the HPA" \
  lacks "$(docs "$R/autoscaling.yaml" controller.yaml)" 'replicas:'

check "servicemonitor: a monitoring.coreos.com/v1 ServiceMonitor on port admin, path /metrics" \
  has "$(docs "$R/servicemonitor.yaml" servicemonitor.yaml)" 'apiVersion: monitoring.coreos.com/v1' \
  'port: admin' 'path: /metrics' 'release: prometheus'

d=$(docs "$R/options.yaml" controller.yaml)
check "options: publish-status-address" has "$d" '--publish-status-address=203.0.113.10,edge.example.com'
check "options: ... instead of publish-service" lacks "$d" '--publish-service'
check "options: default certificate, strict SNI, trusted proxies, json logs, extra args" \
  has "$d" '--default-certificate=edge/default-tls' '--strict-sni' '--trusted-proxies=10.0.0.0/8,fd00::/8' \
  '--log-format=json' '--max-connections=20000' '--watch-ingress-without-class'
check "options: other container ports become --http-addr/--https-addr/--admin-addr" \
  has "$d" '--http-addr=0.0.0.0:8080' '--https-addr=0.0.0.0:8443' '--admin-addr=0.0.0.0:9090'
check "options: image by tag and digest" has "$d" 'image: "registry.example.com/portcullis:0.1.0-rc.1@sha256:0123'
check "options: IngressClass edge is the default class" \
  has "$(docs "$R/options.yaml" ingressclass.yaml)" 'ingressclass.kubernetes.io/is-default-class: "true"'

check "kind: a DaemonSet with hostPorts, the locally loaded image, never pulled" \
  has "$(docs "$R/kind.yaml" controller.yaml)" '^kind: DaemonSet$' 'hostPort: 443$' 'image: "portcullis:dev"' \
  'imagePullPolicy: Never'

# --- 4. Wrong values are refused -------------------------------------------------------
section "wrong values are refused with a clear message"

# refused DESCRIPTION MESSAGE-REGEX HELM-ARGS...: helm template fails, saying MESSAGE.
refused() {
  local desc=$1 want=$2 out; shift 2
  if out=$("$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" "$@" 2>&1); then
    fail "$desc: helm template accepted it"
  elif grep -qE -- "$want" <<<"$out"; then
    pass "$desc: $(grep -m1 -oE -- "$want" <<<"$out")"
  else
    fail "$desc: refused, but the message does not match /$want/:"; echo "$out" >&2
  fi
}
refused "kind: Foo" "/kind.*(Deployment|DaemonSet)" --set kind=Foo
refused "service.type: External" "/service/type.*LoadBalancer" --set service.type=External
refused "logFormat: xml" "/logFormat.*text" --set logFormat=xml
refused "defaultCertificate without a namespace" "/defaultCertificate.*(pattern|match)" --set defaultCertificate=default-tls
refused "defaultCertificate with upper case" "/defaultCertificate.*(pattern|match)" --set defaultCertificate=Default/tls
refused "watchNamespaces with an invalid name" "/watchNamespaces/0.*(pattern|match)" --set 'watchNamespaces={Bad_NS}'
refused "replicaCount as a string" "/replicaCount.*(integer|string)" --set-string replicaCount=two
refused "a misspelt key (replicas)" "additional propert.*replicas" --set replicas=3
refused "externalTrafficPolicy: Sometimes" "/service/externalTrafficPolicy" --set service.externalTrafficPolicy=Sometimes
refused "DaemonSet with autoscaling" "autoscaling.enabled needs kind: Deployment" \
  --set kind=DaemonSet --set autoscaling.enabled=true
refused "publishStatusAddress with publishService" "publishStatusAddress needs publishService.enabled=false" \
  --set 'publishStatusAddress={203.0.113.1}'
refused "terminationGracePeriodSeconds too short to drain" "must be longer than shutdownDelaySeconds \\+ drainTimeoutSeconds" \
  --set terminationGracePeriodSeconds=30
refused "externalTrafficPolicy on a ClusterIP Service" "externalTrafficPolicy applies only" \
  --set service.type=ClusterIP --set service.externalTrafficPolicy=Local
refused "ServiceMonitor without the admin Service" "serviceMonitor.enabled needs adminService.enabled" \
  --set serviceMonitor.enabled=true --set adminService.enabled=false
refused "both minAvailable and maxUnavailable" "set minAvailable or maxUnavailable, not both" \
  --set podDisruptionBudget.maxUnavailable=1

# --- 5. Generated files and documentation ----------------------------------------------
section "manifests/ and the chart's README"

if out=$("$ROOT/hack/render-manifests.sh" --check 2>&1); then pass "$out"; else fail "manifests/ is stale"; echo "$out" >&2; fi
check "kubectl kustomize manifests/ builds" "$KUBECTL" kustomize "$ROOT/manifests" -o "$TMP/kustomized.yaml"

# Every key of values.yaml is documented in README.md (itself or an ancestor), and every
# key the README's tables name exists.
values_keys=$(awk '
  /^[[:space:]]*(#|$)/ { next }
  { match($0, /^ */); ind = RLENGTH; line = substr($0, ind + 1) }
  skip >= 0 && ind >= skip { next }
  { skip = -1 }
  line ~ /^- / { skip = ind; next }
  line ~ /^[A-Za-z0-9_.-]+:/ {
    key = substr(line, 1, index(line, ":") - 1)
    while (depth > 0 && indent[depth] >= ind) depth--
    path = ""; for (i = 1; i <= depth; i++) path = path stack[i] "."
    # "parent:" alone opens a map whose keys follow; "key: value" is a leaf
    print path key, (line ~ /:[[:space:]]*$/ ? "map" : "leaf")
    depth++; stack[depth] = key; indent[depth] = ind
  }' skip=-1 "$CHART/values.yaml")
values_leaves=$(awk '$2 == "leaf" {print $1}' <<<"$values_keys")
values_keys=$(awk '{print $1}' <<<"$values_keys")
# shellcheck disable=SC2016 # the backquotes are Markdown, not a command
readme_keys=$(grep -oE '^\| `[A-Za-z0-9_.]+`' "$CHART/README.md" | tr -d '|` ')
undocumented=""
for key in $values_leaves; do
  k=$key found=0
  while :; do
    grep -qxF "$k" <<<"$readme_keys" && { found=1; break; }
    [[ "$k" == *.* ]] || break
    k=${k%.*}
  done
  [[ $found -eq 1 ]] || undocumented+=" $key"
done
check "README.md documents every value${undocumented:+ (missing:$undocumented)}" [ -z "$undocumented" ]
stale=""
for key in $readme_keys; do grep -qxF "$key" <<<"$values_keys" || stale+=" $key"; done
check "README.md documents no value that values.yaml lacks${stale:+ (stale:$stale)}" [ -z "$stale" ]

# --- 6. A real API server ---------------------------------------------------------------
section "kubectl apply --dry-run=server against a real kube-apiserver on 127.0.0.1"

t0=$SECONDS
KUBECONFIG_FILE=$("$ROOT/hack/apiserver.sh" start "$APISERVER_DIR")
echo "  kube-apiserver ready in $((SECONDS - t0))s"
kc() { "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" --cache-dir "$TMP/kube-cache" --request-timeout=30s "$@"; }

# Namespaces first (a dry run cannot create the namespace its objects go into). The
# release namespace enforces and warns at the "restricted" Pod Security level, like the
# Namespace in manifests/.
kc create namespace "$NAMESPACE" --save-config >/dev/null
kc label namespace "$NAMESPACE" pod-security.kubernetes.io/enforce=restricted \
  pod-security.kubernetes.io/warn=restricted >/dev/null
for ns in a b portcullis-demo scoped-system; do
  kc create namespace "$ns" --save-config >/dev/null
  kc label namespace "$ns" pod-security.kubernetes.io/warn=restricted >/dev/null
done
kc apply -f "$ROOT/hack/check-chart/servicemonitor-crd.yaml" >/dev/null
kc wait --for condition=established --timeout=60s crd/servicemonitors.monitoring.coreos.com >/dev/null

# dry_run NAME EXPECTED-WARNING-REGEX KUBECTL-APPLY-ARGS...: the server accepts the
# objects; every warning it gives must match the regex (empty: no warning at all).
dry_run() {
  local name=$1 allowed=$2 out warnings; shift 2
  if ! out=$(kc apply --dry-run=server --validate=strict "$@" 2>&1); then
    fail "$name: refused by the API server"; echo "$out" >&2; return
  fi
  warnings=$(grep -i 'warning' <<<"$out" || true)
  if [[ -n "$allowed" ]]; then warnings=$(grep -vE -- "$allowed" <<<"$warnings" || true); fi
  if [[ -n "$warnings" ]]; then
    fail "$name: accepted with warnings"; echo "$warnings" >&2; return
  fi
  pass "$name: $(grep -c ' (server dry run)$' <<<"$out") objects accepted${allowed:+ (hostPort warning expected)}"
}
# hostPort is outside the baseline and restricted levels; it must be the only complaint.
HOSTPORT_ONLY='^Warning: would violate PodSecurity "restricted:latest": hostPort \(container "controller" uses hostPorts (80, 443|443, 80)\)$'
for v in "${VARIANTS[@]}"; do
  allowed=""
  [[ $v == daemonset-hostport || $v == kind ]] && allowed=$HOSTPORT_ONLY
  dry_run "$v" "$allowed" -f "$R/$v.yaml"
done
dry_run "manifests/portcullis.yaml" "" -f "$ROOT/manifests/portcullis.yaml"
dry_run "manifests/ as a kustomization" "" -k "$ROOT/manifests"
dry_run "hack/kind/demo.yaml" "" -f "$ROOT/hack/kind/demo.yaml"

section "RBAC, applied for real: what the ServiceAccounts may and may not do"

# can SUBJECT yes|no VERB RESOURCE [ARGS...]: kubectl auth can-i answers as expected.
can() {
  local subject=$1 want=$2 got; shift 2
  got=$(kc auth can-i --as="$subject" "$@" 2>/dev/null || true)
  check "${subject##*:} $(if [[ $want == yes ]]; then echo may; else echo "may not"; fi): $*" [ "$got" == "$want" ]
}
# apply NAME FILE: create the objects for real; errors and warnings fail the check.
apply() {
  local out warnings
  if ! out=$(kc apply -f "$2" 2>&1); then fail "$1: refused by the API server"; echo "$out" >&2; return; fi
  warnings=$(grep -i 'warning' <<<"$out" || true)
  if [[ -n "$warnings" ]]; then fail "$1: applied with warnings"; echo "$warnings" >&2; return; fi
  pass "$1: applied"
}
apply "manifests/portcullis.yaml" "$ROOT/manifests/portcullis.yaml"
sa="system:serviceaccount:$NAMESPACE:portcullis"
can "$sa" yes list ingresses.networking.k8s.io --all-namespaces
can "$sa" yes watch secrets --all-namespaces
can "$sa" yes list endpointslices.discovery.k8s.io --all-namespaces
can "$sa" yes update ingresses.networking.k8s.io --subresource=status -n default
can "$sa" yes create events.events.k8s.io -n default
can "$sa" yes watch ingressclasses.networking.k8s.io
can "$sa" yes update leases.coordination.k8s.io -n "$NAMESPACE"
can "$sa" yes get services -n "$NAMESPACE"
can "$sa" no create leases.coordination.k8s.io -n default
can "$sa" no update ingresses.networking.k8s.io -n default
can "$sa" no create secrets -n default
can "$sa" no list pods --all-namespaces

"$HELM" template scoped "$CHART" --namespace scoped-system --values "$CHART/ci/watch-namespaces-values.yaml" \
  --set ingressClass.name=scoped >"$TMP/scoped.yaml"
apply "watch-namespaces as release scoped in scoped-system" "$TMP/scoped.yaml"
sa="system:serviceaccount:scoped-system:scoped-portcullis"
can "$sa" yes list ingresses.networking.k8s.io -n a
can "$sa" yes watch secrets -n b
can "$sa" yes patch ingresses.networking.k8s.io --subresource=status -n b
can "$sa" yes list ingressclasses.networking.k8s.io
can "$sa" yes create leases.coordination.k8s.io -n scoped-system
can "$sa" no list ingresses.networking.k8s.io --all-namespaces
can "$sa" no list secrets -n default
can "$sa" no list ingresses.networking.k8s.io -n portcullis-demo

section "helm install, upgrade and uninstall against the API server"

# Release "edge" in its own namespace, with its own IngressClass, beside the objects above.
hk() { "$HELM" --kubeconfig "$KUBECONFIG_FILE" "$@"; }
exists() { kc get "$@" -o name >/dev/null; }
if out=$(hk install edge "$CHART" --namespace edge-system --create-namespace \
  --set ingressClass.name=edge 2>&1); then
  check "helm install: deployed, with NOTES" has "$out" '^STATUS: deployed$' '^NOTES:$' \
    'kubectl -n edge-system get service edge-portcullis --watch'
  check "helm install: the Deployment, Services and ClusterRole exist" \
    exists deployment/edge-portcullis service/edge-portcullis service/edge-portcullis-admin \
    clusterrole/edge-portcullis ingressclass/edge -n edge-system
else
  fail "helm install"; echo "$out" >&2
fi
if out=$(hk upgrade edge "$CHART" --namespace edge-system --reuse-values \
  --set kind=DaemonSet --set hostPort.enabled=true 2>&1); then
  check "helm upgrade to a DaemonSet: the DaemonSet replaces the Deployment" \
    [ "$(kc get daemonset,deployment -n edge-system -o name | tr '\n' ' ')" == "daemonset.apps/edge-portcullis " ]
else
  fail "helm upgrade"; echo "$out" >&2
fi
if out=$(hk uninstall edge --namespace edge-system 2>&1); then
  check "helm uninstall: the cluster-scoped objects are gone" \
    [ -z "$(kc get clusterrole/edge-portcullis ingressclass/edge --ignore-not-found -o name)" ]
else
  fail "helm uninstall"; echo "$out" >&2
fi

# --- Result -------------------------------------------------------------------------------
echo
if ((failures > 0)); then
  echo "$failures check(s) FAILED ($((SECONDS - START))s)" >&2
  exit 1
fi
echo "all chart checks passed ($((SECONDS - START))s)"
