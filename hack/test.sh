#!/usr/bin/env bash
# The test command: what CI runs, and what to run before sending a change.
#   formatting, lints, unit and integration tests (a real portcullis binary, real TLS,
#   a real kube-apiserver), the Helm chart checks, and the supply-chain check.
set -euo pipefail
cd "$(dirname "$0")/.."

hack/install-deps.sh

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

step "cargo test"
cargo test --locked --workspace

if [[ -x hack/check-chart.sh ]]; then
  step "Helm chart and manifests"
  hack/check-chart.sh
fi

step "cargo deny"
hack/deny.sh
