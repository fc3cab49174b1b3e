#!/usr/bin/env bash
# Runs recipe-mesh on this machine with no AWS: the comparison service on its embedded SQLite
# store under ./data, listening on 127.0.0.1:50051. Ctrl-C stops it gracefully.
#
# Settings can be overridden through the environment (see `cargo run -p comparison -- --help`),
# e.g. COMPARISON_LISTEN=127.0.0.1:6000 scripts/run-local.sh
set -euo pipefail
cd "$(dirname "$0")/.."

export COMPARISON_LISTEN="${COMPARISON_LISTEN:-127.0.0.1:50051}"
export COMPARISON_STORE_URL="${COMPARISON_STORE_URL:-sqlite://data/recipe-mesh.db}"

cargo build --locked -p comparison
echo "comparison service on $COMPARISON_LISTEN, store $COMPARISON_STORE_URL"
echo "try: grpcurl -plaintext $COMPARISON_LISTEN list"
exec target/debug/comparison serve
