#!/usr/bin/env bash
# Offline checks of the Helm chart (charts/recipe-mesh) and its Linkerd policy (docs/mesh.md):
#
#   scripts/check-chart.sh               # check everything
#   scripts/check-chart.sh --write-mesh  # also rewrite mesh/rendered.yaml from the chart
#
# 1. installs helm-render (../shared/tools/helm-render, the real Helm v4 engine) into .venv-helm
#    once (needs PyPI);
# 2. renders the chart for the default, demo, staging and production values with --lint --validate
#    against two Kubernetes versions;
# 3. checks that values.schema.json rejects each file in charts/recipe-mesh/ci/invalid/;
# 4. runs scripts/lib/chart_checks.py on the rendered manifests (CRD schemas of the Linkerd and
#    Gateway API objects, security posture, policy) and its own negative tests;
# 5. checks that mesh/rendered.yaml is what the chart renders, and docs/iam/*.json parse.
# Exits non-zero on the first failing step, saying which.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SHARED="$ROOT/../shared"
CHART="$ROOT/charts/recipe-mesh"
VENV="$ROOT/.venv-helm"
RENDER="$SHARED/tools/helm-render/helm-render"
RELEASE=recipe-mesh
NAMESPACE=recipe-mesh
KUBE_VERSIONS=(1.33.0 1.36.0)
WRITE_MESH=0
[[ "${1:-}" == "--write-mesh" ]] && WRITE_MESH=1

start=$(date +%s)
fail() { echo "check-chart: FAILED: $*" >&2; exit 1; }
step() { echo "== $*"; }

[[ -x "$RENDER" ]] || fail "helm-render not found at $RENDER (the shared tools must be at ../shared)"
if ! "$VENV/bin/python" -c 'import helm_sdkpy, helm_python, kubernetes_validate, yaml, jsonschema' 2>/dev/null; then
    step "installing helm-render into .venv-helm (PyPI)"
    "$SHARED/tools/helm-render/install.sh" --venv "$VENV" >"$ROOT/.venv-helm.install.log" 2>&1 \
        || { cat "$ROOT/.venv-helm.install.log" >&2; fail "helm-render install"; }
    rm -f "$ROOT/.venv-helm.install.log"
fi
export HELM_RENDER_PYTHON="$VENV/bin/python"

# Custom resource kinds the chart may render; passed so that helm-render knows them up front.
API_ARGS=(
    -a policy.linkerd.io/v1beta3/Server
    -a policy.linkerd.io/v1alpha1/AuthorizationPolicy
    -a policy.linkerd.io/v1alpha1/MeshTLSAuthentication
    -a policy.linkerd.io/v1alpha1/NetworkAuthentication
    -a gateway.networking.k8s.io/v1/GRPCRoute
    -a keda.sh/v1alpha1/ScaledObject
)
OUT="$(mktemp -d)"
trap 'rm -rf "$OUT"' EXIT

render() { # name, kube version, extra args...
    local name="$1" kv="$2" rc=0; shift 2
    "$RENDER" "$RELEASE" "$CHART" -n "$NAMESPACE" "${API_ARGS[@]}" \
        --kube-version "v$kv" --lint --strict --validate --strict-validate --validate-version "$kv" "$@" \
        >"$OUT/$name.yaml" 2>"$OUT/$name.err" || rc=$?
    if [[ $rc -ne 0 ]]; then
        cat "$OUT/$name.err" >&2
        fail "rendering $name for Kubernetes $kv: exit $rc (1 template or values schema, 2 Kubernetes schema, 3 lint)"
    fi
}

declare -A VALUES=([default]="" [demo]="$CHART/ci/demo-values.yaml"
    [staging]="$CHART/ci/staging-values.yaml" [production]="$CHART/ci/production-values.yaml")
rendered=()
for name in default demo staging production; do
    for kv in "${KUBE_VERSIONS[@]}"; do
        args=()
        [[ -n "${VALUES[$name]}" ]] && args=(-f "${VALUES[$name]}")
        render "$name-$kv" "$kv" "${args[@]}"
    done
    step "rendered $name values: lint --strict and Kubernetes schemas ${KUBE_VERSIONS[*]} passed ($(grep -c '^kind:' "$OUT/$name-${KUBE_VERSIONS[0]}.yaml") objects)"
    rendered+=("$name=$OUT/$name-${KUBE_VERSIONS[-1]}.yaml")
done

for bad in "$CHART"/ci/invalid/*.yaml; do
    set +e
    "$RENDER" "$RELEASE" "$CHART" -n "$NAMESPACE" "${API_ARGS[@]}" -f "$bad" >/dev/null 2>"$OUT/bad.err"
    rc=$?
    set -e
    [[ $rc -eq 1 ]] && grep -qi schema "$OUT/bad.err" \
        || { cat "$OUT/bad.err" >&2; fail "values.schema.json accepted ci/invalid/$(basename "$bad") (exit $rc)"; }
    step "schema rejects ci/invalid/$(basename "$bad"): $(grep -m1 -o "at '[^']*'.*" "$OUT/bad.err" | head -c 120)"
done

step "policy and posture checks (scripts/lib/chart_checks.py)"
"$VENV/bin/python" "$ROOT/scripts/lib/chart_checks.py" --schemas "$SHARED/schemas/linkerd" "${rendered[@]}" \
    || fail "chart_checks.py"

# mesh/rendered.yaml: the Linkerd and Gateway API objects of the default values, for use
# without Helm (kubectl apply -f mesh/rendered.yaml next to manifests of your own).
"$VENV/bin/python" "$ROOT/scripts/lib/chart_checks.py" --extract-mesh "$OUT/default-${KUBE_VERSIONS[-1]}.yaml" >"$OUT/mesh.yaml"
if [[ $WRITE_MESH -eq 1 ]]; then
    cp "$OUT/mesh.yaml" "$ROOT/mesh/rendered.yaml"
    step "wrote mesh/rendered.yaml"
elif ! diff -u "$ROOT/mesh/rendered.yaml" "$OUT/mesh.yaml" >"$OUT/mesh.diff"; then
    head -40 "$OUT/mesh.diff" >&2
    fail "mesh/rendered.yaml is stale: run scripts/check-chart.sh --write-mesh"
fi
step "mesh/rendered.yaml matches the chart"

for f in "$ROOT"/docs/iam/*.json; do
    python3 -m json.tool "$f" >/dev/null || fail "docs/iam/$(basename "$f") is not valid JSON"
done
"$VENV/bin/python" "$ROOT/scripts/lib/chart_checks.py" --check-iam "$ROOT"/docs/iam/*.json || fail "docs/iam"
step "docs/iam: $(ls "$ROOT"/docs/iam/*.json | wc -l) IAM policy documents parse and are scoped"

echo "check-chart: all passed in $(( $(date +%s) - start ))s"
