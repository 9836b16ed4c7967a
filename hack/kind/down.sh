#!/usr/bin/env bash
# Delete the kind cluster that hack/kind/up.sh made (KIND_CLUSTER_NAME, default
# portcullis), and the demo certificate it left under target/kind/.
set -euo pipefail
ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
CLUSTER=${KIND_CLUSTER_NAME:-portcullis}
command -v kind >/dev/null 2>&1 || { echo "error: kind not found in PATH" >&2; exit 1; }
kind delete cluster --name "$CLUSTER"
rm -rf "$ROOT/target/kind"
