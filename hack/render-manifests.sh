#!/usr/bin/env bash
# Render the plain manifests in manifests/ from the Helm chart with its default values,
# for users who apply YAML or point Argo CD or Flux at this folder:
#
#   helm template portcullis charts/portcullis --namespace portcullis-system
#
# preceded by the portcullis-system Namespace. Never edit manifests/portcullis.yaml by
# hand: change the chart, then run this script.
#
# Usage:
#   hack/render-manifests.sh           write manifests/portcullis.yaml
#   hack/render-manifests.sh --check   fail if manifests/portcullis.yaml is not what the
#                                      chart renders now (hack/check-chart.sh runs this)
#
# helm comes from hack/k8s-tools.sh (pinned); this script fails if it is missing.
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$ROOT/manifests/portcullis.yaml"
RELEASE=portcullis
NAMESPACE=portcullis-system

HELM="$("$ROOT/hack/k8s-tools.sh" --print-bin-dir)/helm"
if [[ ! -x "$HELM" ]]; then
  echo "error: helm not found at $HELM; build it with hack/k8s-tools.sh" >&2
  exit 1
fi

render() {
  local chart_version app_version
  chart_version=$(awk '$1 == "version:" {print $2}' "$ROOT/charts/portcullis/Chart.yaml")
  app_version=$(awk '$1 == "appVersion:" {gsub(/"/, "", $2); print $2}' "$ROOT/charts/portcullis/Chart.yaml")
  cat <<YAML
# Portcullis $app_version: the Helm chart charts/portcullis $chart_version rendered with its
# default values into the namespace $NAMESPACE by hack/render-manifests.sh.
# GENERATED: do not edit; change the chart and run hack/render-manifests.sh.
#
#   kubectl apply -f manifests/portcullis.yaml
---
apiVersion: v1
kind: Namespace
metadata:
  name: $NAMESPACE
  labels:
    app.kubernetes.io/name: portcullis
    app.kubernetes.io/part-of: portcullis
    # The controller's pods meet the "restricted" Pod Security Standard.
    pod-security.kubernetes.io/enforce: restricted
    pod-security.kubernetes.io/warn: restricted
YAML
  "$HELM" template "$RELEASE" "$ROOT/charts/portcullis" --namespace "$NAMESPACE"
}

case "${1:-}" in
  "")
    render > "$OUT.tmp"
    mv -f "$OUT.tmp" "$OUT"
    echo "wrote ${OUT#"$ROOT"/}"
    ;;
  --check)
    fresh=$(mktemp)
    trap 'rm -f "$fresh"' EXIT
    render > "$fresh"
    if ! diff -u "$OUT" "$fresh" >&2; then
      echo "error: manifests/portcullis.yaml is out of date with charts/portcullis;" \
        "run hack/render-manifests.sh and commit the result" >&2
      exit 1
    fi
    echo "manifests/portcullis.yaml is up to date"
    ;;
  *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac
