#!/usr/bin/env bash
# The project's test command: installs what the tests need, starts a moto server as the AWS
# endpoint, then runs formatting, lint, the CI and chart checks and every test in the workspace;
# where a Docker engine answers, it also builds the images for the container tests.
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
if docker_answers; then
    # The container tests' services reach moto through their network's gateway, so it listens
    # beyond loopback (on this test machine, for this run only).
    MOTO_BIND=0.0.0.0
fi
start_moto

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== .gitlab-ci.yml: GitLab's schema, then what only a pipeline run would find"
check-jsonschema --builtin-schema vendor.gitlab-ci .gitlab-ci.yml
"$VENV_DIR/bin/python" scripts/lib/gitlab_ci_check.py --self-test .gitlab-ci.yml
echo "== the Helm chart and its mesh policy (scripts/check-chart.sh)"
scripts/check-chart.sh

if docker_answers; then
    if command -v docker-compose >/dev/null; then
        echo "== docker-compose config (docker/compose.yaml)"
        docker-compose -f docker/compose.yaml config --quiet
    fi
    echo "== images (scripts/build-images.sh --local-base), for the container tests"
    # The base is made from this machine's Debian files: no registry can be reached here.
    REPOSITORY=recipe-mesh TAG=test scripts/build-images.sh --local-base
    export RECIPE_MESH_IMAGES="recipe-mesh:test"
else
    echo "== no Docker engine answers: the container tests will say SKIPPED"
fi

echo "== cargo test --no-run (every test and the service binaries the end-to-end tests start)"
cargo test --workspace --locked --no-run
echo "== cargo test"
cargo test --workspace --locked --no-fail-fast "$@"
