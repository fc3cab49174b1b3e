#!/usr/bin/env bash
# Builds the three service images from docker/Dockerfile, the same way here and in GitLab CI:
#
#   1. one release compile of comparison, sender and watcher, statically linked (the images
#      carry no libc), into target/images/context/<service>/usr/local/bin/;
#   2. `docker build --target <service>` for each, labelled with version, commit and commit
#      time, the binaries' timestamps pinned to the commit time so equal binaries give equal
#      layers.
#
#   scripts/build-images.sh                # base: gcr.io/distroless/static-debian12:nonroot
#   scripts/build-images.sh --local-base   # base: built here from Debian's files, no registry
#   scripts/build-images.sh --binaries-only
#
# Settings: REPOSITORY (default recipe-mesh), TAG (default dev, as docker/compose.yaml), BASE_IMAGE,
# VERSION (default: the services' Cargo version), SOURCE_URL_LABEL. Prints the images it
# built, one per line, on stdout; everything else goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVICES=(comparison sender watcher)
LOCAL_BASE_IMAGE="recipe-mesh/base-static:local"
local_base=false
binaries_only=false
for arg in "$@"; do
    case "$arg" in
    --local-base) local_base=true ;;
    --binaries-only) binaries_only=true ;;
    *)
        echo "unknown argument: $arg" >&2
        exit 2
        ;;
    esac
done

revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
commit_time="$(git log -1 --format=%ct 2>/dev/null || echo 0)"
REPOSITORY="${REPOSITORY:-recipe-mesh}"
TAG="${TAG:-dev}"
VERSION="${VERSION:-$(sed -n 's/^version = "\(.*\)"/\1/p' services/comparison/Cargo.toml | head -1)}"
context="target/images/context"

# 1. Static release binaries. `--target` keeps crt-static away from build scripts and proc
# macros (which must stay dynamic); the path remapping keeps this machine's folders out of the
# binaries, so they depend only on the sources and the toolchain.
host="$(rustc -vV | sed -n 's/^host: //p')"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
echo "== release build (static, $host)" >&2
packages=()
for service in "${SERVICES[@]}"; do packages+=(-p "$service"); done
RUSTFLAGS="-C target-feature=+crt-static --remap-path-prefix=$PWD=/src --remap-path-prefix=$cargo_home=/cargo" \
    cargo build --release --locked --target "$host" "${packages[@]}" >&2
# Each service's folder holds the whole path of its binary, every entry dated at the commit:
# COPY of a folder keeps those dates, while COPY of a lone file would give the folders it
# creates or changes the time of the build, and the layer would differ from build to build.
rm -rf "$context"
for service in "${SERVICES[@]}"; do
    binary="${CARGO_TARGET_DIR:-target}/$host/release/$service"
    if readelf -l "$binary" 2>/dev/null | grep -q 'Requesting program interpreter'; then
        echo "$binary is dynamically linked; the images have no libc for it" >&2
        exit 1
    fi
    install -D -m 0555 "$binary" "$context/$service/usr/local/bin/$service"
    chmod 0755 "$context/$service/usr" "$context/$service/usr/local" "$context/$service/usr/local/bin"
    find "$context/$service" -exec touch -h -d "@$commit_time" {} +
done
if $binaries_only; then
    exit 0
fi

# 2. The base: distroless' static image, or a compatible one made from this machine's Debian
# files when no registry can be reached.
if $local_base; then
    BASE_IMAGE="$LOCAL_BASE_IMAGE"
    echo "== base image $BASE_IMAGE (from this machine's Debian files)" >&2
    python3 scripts/lib/local_base_image.py | docker import - "$BASE_IMAGE" >&2
fi
BASE_IMAGE="${BASE_IMAGE:-gcr.io/distroless/static-debian12:nonroot}"

created="$(date -u -d "@$commit_time" +%Y-%m-%dT%H:%M:%SZ)"
for service in "${SERVICES[@]}"; do
    image="$REPOSITORY/$service:$TAG"
    echo "== docker build $image (base $BASE_IMAGE)" >&2
    docker build --quiet -f docker/Dockerfile --target "$service" \
        --build-arg BASE_IMAGE="$BASE_IMAGE" \
        --build-arg VERSION="$VERSION" \
        --build-arg REVISION="$revision" \
        --build-arg CREATED="$created" \
        --build-arg SOURCE="${SOURCE_URL_LABEL:-}" \
        -t "$image" "$context" >&2
    echo "$image"
done
