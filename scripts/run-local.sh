#!/usr/bin/env bash
# Runs the whole recipe-mesh pipeline on this machine with no AWS: the comparison service, the
# sender and the watcher as three processes on the embedded backends under ./data:
#
#   data/inbox/recipes/*.json   original recipes  (the "bucket": drop files here)
#   data/inbox/makes/**/*.json  makes of them
#   data/queue.db               the job queue and its dead letters
#   data/watcher.db             the watcher's ledger of files already sent
#   data/recipe-mesh.db         recipes, makes and their differences
#   data/logs/*.log             one log per service
#
# On the first run the inbox is seeded with the files in examples/. Ctrl-C stops all three
# gracefully. Settings can be overridden through the environment (see `<service> --help`),
# e.g. COMPARISON_LISTEN=127.0.0.1:6000 scripts/run-local.sh
set -euo pipefail
cd "$(dirname "$0")/.."

export COMPARISON_LISTEN="${COMPARISON_LISTEN:-127.0.0.1:50051}"
export COMPARISON_STORE_URL="${COMPARISON_STORE_URL:-sqlite://data/recipe-mesh.db}"
export SENDER_COMPARISON_URL="${SENDER_COMPARISON_URL:-http://$COMPARISON_LISTEN}"
export SOURCE_URL="${SOURCE_URL:-dir://data/inbox}"
# Admin ports (metrics, probes) on loopback only: this is a developer's machine.
export COMPARISON_ADMIN_LISTEN="${COMPARISON_ADMIN_LISTEN:-127.0.0.1:9091}"
export SENDER_ADMIN_LISTEN="${SENDER_ADMIN_LISTEN:-127.0.0.1:9092}"
export WATCHER_ADMIN_LISTEN="${WATCHER_ADMIN_LISTEN:-127.0.0.1:9093}"

cargo build --locked -p comparison -p sender -p watcher
mkdir -p data/logs

if [[ ! -d data/inbox ]]; then
    mkdir -p data/inbox/recipes data/inbox/makes
    cp examples/recipes/*.json data/inbox/recipes/
    cp examples/makes/*.json data/inbox/makes/
    echo "seeded data/inbox with the examples"
fi
target/debug/watcher setup

pids=()
stop() {
    trap - INT TERM EXIT
    echo "stopping" >&2
    # Watcher first, comparison last, so nothing in flight finds its next hop gone.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${pids[i]}" 2>/dev/null || true
        wait "${pids[i]}" 2>/dev/null || true
    done
}
trap stop EXIT
trap 'stop; exit 0' INT TERM

target/debug/comparison serve 2>>data/logs/comparison.log &
pids+=($!)
# The sender retries while the comparison service comes up, so no need to wait for it.
target/debug/sender run 2>>data/logs/sender.log &
pids+=($!)
target/debug/watcher run 2>>data/logs/watcher.log &
pids+=($!)

cat <<EOF
recipe-mesh is running: comparison on $COMPARISON_LISTEN, logs in data/logs/.
  drop recipes into data/inbox/recipes/ and makes into data/inbox/makes/
  grpcurl -plaintext -d '{"recipeId": "101"}' $COMPARISON_LISTEN recipe.v1.ComparisonService/ListMakes
  grpcurl -plaintext -d '{"recipeId": "101"}' $COMPARISON_LISTEN recipe.v1.ComparisonService/GetRecipeStats
  target/debug/sender dead-letters     # files that could not be stored, with the reason
  curl -s $SENDER_ADMIN_LISTEN/metrics  # metrics (comparison $COMPARISON_ADMIN_LISTEN, watcher $WATCHER_ADMIN_LISTEN)
Ctrl-C stops.
EOF
wait -n "${pids[@]}"
echo "a service exited; see data/logs/" >&2
exit 1
