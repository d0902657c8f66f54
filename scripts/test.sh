#!/usr/bin/env bash
# Installs what the tests need and runs them all (as root: the tests make real containers).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh --peers
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -q -- -D warnings
# A failing test's panic message (with its file and line) is the last thing it prints, not
# hidden above a backtrace: CI shows only the end of a failure's output.
export RUST_BACKTRACE=0
# Every test cleans up after itself; a mount left behind outlives the run and slows every
# later mount namespace on the machine, so the suite fails on one.
points() { awk '{print $5}' /proc/self/mountinfo | sort -u; }
before=$(points)
status=0
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast || status=$?
else
  cargo test --workspace --no-fail-fast || status=$?
fi
leaked=$(comm -13 <(echo "$before") <(points) | grep -E '^/(tmp|var/tmp|run/berth)' || true)
if [ -n "$leaked" ]; then
  echo "mounts left behind by the tests:" >&2
  echo "$leaked" >&2
  status=1
fi
exit "$status"
