#!/usr/bin/env bash
# Measures the service images against their own binaries, in one run (docs/benchmarks.md):
#   - size: each image against the binary it carries;
#   - start: from `docker run` to /readyz answering 200, against the same binary started as a
#     process, both on the embedded store (the comparison service; its readiness waits for
#     the store) and on the same machine, RUNS times each, alternating.
#
#   scripts/build-images.sh --local-base && scripts/measure-images.sh [REPOSITORY:TAG] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."

images="${1:-recipe-mesh:dev}"
runs="${2:-10}"
repository="${images%:*}"
tag="${images##*:}"
context="target/images/context"

echo "| service | image bytes | binary bytes | image / binary |"
echo "| --- | --- | --- | --- |"
for service in comparison sender watcher; do
    image_bytes="$(docker image inspect --format '{{.Size}}' "$repository/$service:$tag")"
    binary_bytes="$(stat -c %s "$context/$service/usr/local/bin/$service")"
    awk -v s="$service" -v i="$image_bytes" -v b="$binary_bytes" \
        'BEGIN { printf "| %s | %d | %d | %.3f |\n", s, i, b, i / b }'
done

# Milliseconds from now until http://127.0.0.1:PORT/readyz answers 200.
ready_after() {
    local port="$1" start="$2"
    until curl -fs -o /dev/null "http://127.0.0.1:$port/readyz"; do
        sleep 0.005
    done
    echo $((($(date +%s%N) - start) / 1000000))
}

port=19391
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"; docker rm -f recipe-mesh-measure >/dev/null 2>&1 || true' EXIT
container_ms=()
process_ms=()
for i in $(seq 1 "$runs"); do
    start=$(date +%s%N)
    docker run -d --name recipe-mesh-measure --read-only --cap-drop ALL \
        --security-opt no-new-privileges --tmpfs /home/nonroot:uid=65532,gid=65532 \
        -p "127.0.0.1:$port:9091" "$repository/comparison:$tag" >/dev/null
    container_ms+=("$(ready_after "$port" "$start")")
    docker rm -f recipe-mesh-measure >/dev/null

    rm -rf "$scratch/run" && mkdir -p "$scratch/run"
    start=$(date +%s%N)
    (cd "$scratch/run" && COMPARISON_LISTEN=127.0.0.1:0 COMPARISON_ADMIN_LISTEN="127.0.0.1:$port" \
        exec "$OLDPWD/$context/comparison/usr/local/bin/comparison" serve 2>/dev/null) &
    pid=$!
    process_ms+=("$(ready_after "$port" "$start")")
    kill -TERM "$pid" && wait "$pid" || true
done

median() { printf '%s\n' "$@" | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
c="$(median "${container_ms[@]}")"
p="$(median "${process_ms[@]}")"
echo
echo "start to ready, median of $runs: container ${c} ms, process ${p} ms, ratio $(awk -v c="$c" -v p="$p" 'BEGIN { printf "%.1f", c / (p > 0 ? p : 1) }')"
echo "container runs (ms): ${container_ms[*]}"
echo "process runs (ms):   ${process_ms[*]}"
