#!/usr/bin/env bash
# The project's test command: installs what the tests need, starts a moto server as the AWS
# endpoint, then runs formatting, lint and every test in the workspace.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -p comparison   # extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/env.sh

# A full run gains little from incremental caches, which take gigabytes of disk; set
# CARGO_INCREMENTAL=1 to keep them.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

ensure_python_tools
start_moto

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test --no-run (every test and the service binaries the end-to-end tests start)"
cargo test --workspace --locked --no-run
echo "== cargo test"
cargo test --workspace --locked --no-fail-fast "$@"
