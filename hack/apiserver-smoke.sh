#!/usr/bin/env bash
# Smoke test of the throwaway API server (hack/apiserver.sh): start it, check that
# kubectl reaches it, that RBAC is enforced and that service-account tokens authenticate,
# and stop it. Useful when a new Kubernetes version is pinned in hack/k8s-tools.sh.
#
# Usage: hack/apiserver-smoke.sh      (KEEP_TMP=1 keeps the state folder and logs)
set -euo pipefail

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
"$SCRIPT_DIR/k8s-tools.sh" >&2
BIN=$("$SCRIPT_DIR/k8s-tools.sh" --print-bin-dir)
export NO_PROXY=127.0.0.1,localhost,::1 no_proxy=127.0.0.1,localhost,::1

TMP=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-apiserver.XXXXXX")
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  "$SCRIPT_DIR/apiserver.sh" stop "$TMP/server" || true
  if [[ $rc -ne 0 ]]; then
    for f in "$TMP"/server/etcd.log "$TMP"/server/kube-apiserver.log; do
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

KUBECONFIG_FILE=$("$SCRIPT_DIR/apiserver.sh" start "$TMP/server")
kc() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_FILE" --cache-dir "$TMP/kube-cache" "$@"; }

# expect WANT CMD...: run CMD, fail unless its output is exactly WANT.
expect() {
  local want=$1 got; shift
  got=$("$@" 2>&1) || true
  [[ "$got" == "$want" ]] || { echo "expected '$want', got '$got' from: $*" >&2; return 1; }
  echo "  -> $got"
}

echo "+ kubectl version"; kc version
echo "+ kubectl create ns smoke"; kc create ns smoke
expect Active kc get ns smoke -o 'jsonpath={.status.phase}'

echo "+ kubectl auth can-i '*' '*' --all-namespaces (admin, expect yes)"
expect yes kc auth can-i '*' '*' --all-namespaces

# RBAC is enforced: a service account with no bindings may not list Secrets.
echo "+ kubectl auth can-i list secrets as an unbound service account (expect no)"
expect no kc auth can-i list secrets -n smoke --as=system:serviceaccount:smoke:portcullis

# Service-account tokens are signed and accepted (TokenRequest needs no
# controller-manager): a fresh token authenticates as the service account.
echo "+ kubectl create serviceaccount + token; kubectl auth whoami with that token"
kc create serviceaccount portcullis -n smoke
TOKEN=$(kc create token portcullis -n smoke --duration=10m)
server=$(kc config view -o 'jsonpath={.clusters[0].cluster.server}')
expect system:serviceaccount:smoke:portcullis \
  "$BIN/kubectl" --kubeconfig=/dev/null --cache-dir "$TMP/kube-cache" \
  --server="$server" --certificate-authority="$TMP/server/ca.crt" --token="$TOKEN" \
  auth whoami -o 'jsonpath={.status.userInfo.username}'

echo "apiserver smoke test PASSED"
