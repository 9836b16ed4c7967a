#!/usr/bin/env bash
# Supply-chain check: licenses, sources and duplicate versions always; advisories offline,
# from a RustSec advisory-db snapshot: $PORTCULLIS_ADVISORY_DB, or ../shared/advisory-db
# beside the repository. Without a snapshot (the database lives on GitHub, which a
# build machine may not reach) the advisory check is reported as not run.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo-deny >/dev/null || { echo "deny: cargo-deny is missing; run hack/install-deps.sh" >&2; exit 1; }

# cargo-deny reads the whole dependency graph, every platform's crates included (a Linux
# build never downloads the Windows ones): fetch them from crates.io first.
cargo fetch --locked --quiet

snapshot=${PORTCULLIS_ADVISORY_DB:-../shared/advisory-db}
if [[ ! -d $snapshot ]]; then
  echo "deny: NOT CHECKED: advisories (no advisory-db snapshot at $snapshot; set PORTCULLIS_ADVISORY_DB)" >&2
  exec cargo deny --offline check bans licenses sources
fi

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
