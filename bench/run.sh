#!/usr/bin/env bash
# Portcullis side by side with nginx and HAProxy on this machine: installs what is
# missing, builds, runs every scenario, prints a Markdown table and writes it to
# bench/results/latest.md. Not part of the tests (see bench/README.md).
#
#   bench/run.sh                       # the full run (about 40 minutes)
#   BENCH_QUICK=1 bench/run.sh         # a smoke run: 2 s runs, 2 rounds, small counts
#   BENCH_ONLY=keepalive,churn bench/run.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

bash bench/install.sh

echo "bench: building portcullis and bench-tools (release)"
cargo build --release --locked --quiet --bin portcullis
cargo build --release --locked --quiet --manifest-path bench/tools/Cargo.toml

# Idle-connection scenarios hold thousands of sockets on each side.
ulimit -n "$(ulimit -Hn)"
export PATH="$PATH:$HOME/.cargo/bin"

# bench.py stops everything it started. This trap catches what a crash of Python itself
# would leave: each process group it wrote down in this run's folder that still leads
# its own session (every server and load generator is started with setsid).
run_dir=$(mktemp -d /tmp/portcullis-bench-XXXXXX)
export BENCH_RUN_DIR=$run_dir
cleanup() {
  if [[ -f $run_dir/pgids ]]; then
    while read -r pgid; do
      if [[ $(ps -o sid= -p "$pgid" 2>/dev/null | tr -d ' ') == "$pgid" ]]; then
        kill -KILL -- "-$pgid" 2>/dev/null || true
      fi
    done < "$run_dir/pgids"
  fi
  [[ -n ${BENCH_KEEP_RUN_DIR:-} ]] || rm -rf "$run_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

python3 bench/bench.py
