#!/usr/bin/env bash
# Build (once) the real Kubernetes binaries that Portcullis' integration tests
# run on loopback: kube-apiserver, etcd, kubectl, and helm.
#
# Everything is compiled from source fetched through the Go module proxy; no
# release tarballs, no container images, no GitHub access needed.
#
#   kube-apiserver  k8s.io/kubernetes/cmd/kube-apiserver   (module tests/k8s)
#   kubectl         k8s.io/kubernetes/cmd/kubectl          (module tests/k8s)
#   etcd            go.etcd.io/etcd/server/v3 (main pkg)   (module tests/k8s)
#   helm            go install helm.sh/helm/v4/cmd/helm@HELM_VERSION
#
# Versions: kubernetes and etcd are pinned in tests/k8s/go.mod (etcd at the
# version kubernetes' own go.mod pins); helm is pinned below.
#
# Layout (outside the checkout; override the root with PORTCULLIS_TOOLS):
#   TOOLS=${PORTCULLIS_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/portcullis/tools}
#   $TOOLS/k8s-<K8S_VERSION>/bin/{kube-apiserver,etcd,kubectl}
#   $TOOLS/helm-<HELM_VERSION>/bin/helm
#   $TOOLS/k8s-<K8S_VERSION>/bin/helm -> ../../helm-<HELM_VERSION>/bin/helm
# so callers only need the one bin dir (see --print-bin-dir).
#
# The Go build and module caches stay at Go's defaults (also outside the
# checkout). A binary that already exists is not rebuilt; delete it (or the
# versioned dir) to force a rebuild. The first kube-apiserver build takes
# several minutes (15-30 on 2 cores).
#
# Usage:
#   hack/k8s-tools.sh                  build whatever is missing
#   hack/k8s-tools.sh --print-bin-dir  print the bin dir and exit
set -euo pipefail

K8S_VERSION=v1.37.2
HELM_VERSION=v4.3.2

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/.." && pwd)
MOD_DIR="$REPO_ROOT/tests/k8s"

TOOLS_ROOT=${PORTCULLIS_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/portcullis/tools}
BIN_DIR="$TOOLS_ROOT/k8s-$K8S_VERSION/bin"
HELM_BIN_DIR="$TOOLS_ROOT/helm-$HELM_VERSION/bin"

case "${1:-}" in
  --print-bin-dir) echo "$BIN_DIR"; exit 0 ;;
  "") ;;
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "usage: $0 [--print-bin-dir]" >&2; exit 2 ;;
esac

# Static binaries. A local Go older than tests/k8s/go.mod's fetches that version's
# toolchain from the module proxy (Go 1.21 and newer do this by themselves).
export CGO_ENABLED=0
export GOTOOLCHAIN=${GOTOOLCHAIN:-auto}

GO=${GO:-go}
if ! command -v "$GO" >/dev/null 2>&1; then
  if [[ -x /usr/local/go/bin/go ]]; then GO=/usr/local/go/bin/go; else
    echo "error: go not found in PATH (set GO=/path/to/go)" >&2; exit 1
  fi
fi

# Keep this script and tests/k8s/go.mod in step.
mod_k8s_version=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2}' "$MOD_DIR/go.mod")
if [[ "$mod_k8s_version" != "$K8S_VERSION" ]]; then
  echo "error: tests/k8s/go.mod pins k8s.io/kubernetes $mod_k8s_version, script expects $K8S_VERSION" >&2
  exit 1
fi
etcd_version=$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2}' "$MOD_DIR/go.mod")

# Same flags as upstream's hack/lib/golang.sh for release builds, plus the
# version stamp (so `kubectl version`, /version and helm's kubeVersion checks
# see v1.37.2 instead of v0.0.0-master).
k8s_major_minor=${K8S_VERSION#v}
k8s_major=${k8s_major_minor%%.*}
k8s_minor=${k8s_major_minor#*.}; k8s_minor=${k8s_minor%%.*}
k8s_ldflags="-s -w"
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$k8s_major"
  k8s_ldflags+=" -X $pkg.gitMinor=$k8s_minor -X $pkg.gitTreeState=archive"
done
build_flags=(-trimpath -tags=selinux,notest,grpcnotrace)

mkdir -p "$BIN_DIR" "$HELM_BIN_DIR"

# build NAME VERSION PACKAGE [LDFLAGS]: go build in the wrapper module, into a
# temp file first so an interrupted build never leaves a half-written binary.
build() {
  local name=$1 version=$2 pkg=$3 ldflags=${4:--s -w}
  local out="$BIN_DIR/$name"
  if [[ -x "$out" ]]; then
    echo "$name $version: already built ($out)"
    return
  fi
  echo "building $name $version (takes several minutes on 2 cores)..."
  local start=$SECONDS
  (cd "$MOD_DIR" && "$GO" build "${build_flags[@]}" -ldflags="$ldflags" -o "$out.tmp" "$pkg")
  mv -f "$out.tmp" "$out"
  echo "built $name $version in $((SECONDS - start))s"
}

build kube-apiserver "$K8S_VERSION" k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
build etcd "$etcd_version" go.etcd.io/etcd/server/v3
build kubectl "$K8S_VERSION" k8s.io/kubernetes/cmd/kubectl "$k8s_ldflags"

if [[ -x "$HELM_BIN_DIR/helm" ]]; then
  echo "helm $HELM_VERSION: already built ($HELM_BIN_DIR/helm)"
else
  echo "building helm $HELM_VERSION (takes a few minutes on 2 cores)..."
  start=$SECONDS
  # Run outside the wrapper module: `go install pkg@version` uses helm's own go.mod.
  (cd "$TOOLS_ROOT" && GOBIN="$HELM_BIN_DIR" \
    "$GO" install -trimpath \
      -ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION -X helm.sh/helm/v4/internal/version.gitTreeState=clean" \
      "helm.sh/helm/v4/cmd/helm@$HELM_VERSION")
  echo "built helm $HELM_VERSION in $((SECONDS - start))s"
fi
ln -sfn "../../helm-$HELM_VERSION/bin/helm" "$BIN_DIR/helm"

echo "tools ready in $BIN_DIR"
