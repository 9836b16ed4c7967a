#!/usr/bin/env bash
# Installs what the tests need and a fresh machine may lack; safe to run again.
#   - Debian packages: curl (HTTP/2 client in tests), openssl (quick-start certificates),
#     iproute2 (network namespaces for backends of the API-server tests)
#   - kube-apiserver, etcd, kubectl and helm, built from the Go module proxy and cached
#     outside the checkout (hack/k8s-tools.sh)
#   - cargo-deny, for the supply-chain check (hack/deny.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
command -v ip >/dev/null || missing+=(iproute2)
if ((${#missing[@]})); then
  echo "installing Debian packages: ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

hack/k8s-tools.sh

deny_version=0.20.2
if ! cargo deny --version 2>/dev/null | grep -q "$deny_version"; then
  echo "installing cargo-deny $deny_version from crates.io (a few minutes on 2 cores)..."
  cargo install --locked --quiet "cargo-deny@$deny_version"
fi
