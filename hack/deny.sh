#!/usr/bin/env bash
# Supply-chain check: advisories (offline, from the RustSec snapshot beside the
# repository in ../shared/advisory-db), licenses, sources and duplicate versions.
set -euo pipefail
cd "$(dirname "$0")/.."

snapshot=../shared/advisory-db
if [[ ! -d $snapshot ]]; then
  echo "deny: the advisory snapshot $snapshot is missing" >&2
  exit 1
fi
command -v cargo-deny >/dev/null || { echo "deny: cargo-deny is missing; run hack/install-deps.sh" >&2; exit 1; }

# cargo-deny reads the database from db-path (deny.toml) under the name it derives from
# the default advisory-db URL, and takes the date of its HEAD commit.
db=target/advisory-dbs/advisory-db-3157b0e258782691
if [[ ! -f $db/.snapshot-copied ]] || ! diff -q "$snapshot/SNAPSHOT.txt" "$db/SNAPSHOT.txt" >/dev/null 2>&1; then
  rm -rf "$db"
  mkdir -p "$db"
  cp -R "$snapshot"/. "$db"/
  (
    cd "$db"
    git init -q
    git add -A
    git -c user.name=portcullis -c user.email=ci@portcullis.invalid commit -qm snapshot
  )
  touch "$db/.snapshot-copied"
fi
cargo deny --offline check
