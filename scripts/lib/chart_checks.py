#!/usr/bin/env python3
"""Checks of the rendered recipe-mesh chart: CRD schemas, security posture and mesh policy.

    chart_checks.py --schemas DIR NAME=rendered.yaml ...   # check renders, then the negative tests
    chart_checks.py --extract-mesh rendered.yaml            # print the Linkerd/Gateway API objects
    chart_checks.py --check-iam docs/iam/*.json              # IAM policy documents are scoped

Run by scripts/check-chart.sh with the helm-render venv's Python (PyYAML, jsonschema). Every
check is a function returning a list of problems; the negative tests feed it broken manifests
and assert it finds them, so no check can pass by accident. docs/mesh.md explains the rules.
"""

import argparse
import copy
import csv
import json
import os
import sys
import unittest

import jsonschema
import yaml

MESH_GROUPS = ("policy.linkerd.io", "gateway.networking.k8s.io", "linkerd.io")
COMPARISON_SERVICE = "recipe.v1.ComparisonService"
WRITE_METHODS = {"CreateRecipe", "UpdateRecipe", "RecordMake"}
READ_METHODS = {"GetRecipe", "ListRecipes", "GetMake", "ListMakes", "CompareRecipes", "GetRecipeStats"}
# Safe to send twice: reads, and RecordMake (its required idempotency key makes a replay return
# the first result). CreateRecipe (key optional) and UpdateRecipe are left to the caller.
IDEMPOTENT = {(COMPARISON_SERVICE, m) for m in READ_METHODS | {"RecordMake"}} | {
    ("grpc.health.v1.Health", "Check"),
}
GRPC_RETRY_CODES = {"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"}
MAX_RETRY_LIMIT = 3
SERVICE_COMPONENTS = ("comparison", "sender", "watcher")
POD_KINDS = {"Deployment": ("spec", "template"), "Job": ("spec", "template"), "Pod": ()}


# ---------------------------------------------------------------------------------------------
# Loading


def load_docs(path):
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def group_of(obj):
    api = obj.get("apiVersion", "")
    return api.split("/")[0] if "/" in api else ""


def name_of(obj):
    return obj.get("metadata", {}).get("name", "")


def of_kind(docs, kind, group=None):
    return [d for d in docs if d.get("kind") == kind and (group is None or group_of(d) == group)]


def pod_template(obj):
    """(metadata, spec) of the pod an object runs, or None."""
    path = POD_KINDS.get(obj.get("kind"))
    if path is None:
        return None
    node = obj
    for key in path:
        node = node.get(key, {})
    return node.get("metadata", {}), node.get("spec", {})


def containers(spec):
    return list(spec.get("initContainers", [])) + list(spec.get("containers", []))


# ---------------------------------------------------------------------------------------------
# CRD schemas


def load_schemas(directory):
    """{(group, version, kind): (schema, served)} from INDEX.tsv."""
    schemas = {}
    with open(os.path.join(directory, "INDEX.tsv"), encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            with open(os.path.join(directory, row["file"]), encoding="utf-8") as s:
                schemas[(row["group"], row["version"], row["kind"])] = (json.load(s), row["served"] == "True")
    return schemas


def _declared(schema):
    """Property schemas an object schema declares, including those of its allOf/anyOf/oneOf."""
    props = dict(schema.get("properties", {}))
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(key, []):
            props.update(sub.get("properties", {}))
    return props


def _open(schema):
    return (
        schema.get("x-kubernetes-preserve-unknown-fields")
        or "additionalProperties" in schema
        or not _declared(schema)
    )


def undeclared_fields(schema, value, path):
    """Keys the structural schema does not declare (Kubernetes would prune them silently)."""
    problems = []
    if isinstance(value, dict) and schema.get("type", "object") == "object":
        props = _declared(schema)
        if not _open(schema):
            problems += [f"{path}.{k}: field not declared by the CRD schema" for k in value if k not in props]
        for k, v in value.items():
            if k in props:
                problems += undeclared_fields(props[k], v, f"{path}.{k}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for k, v in value.items():
                problems += undeclared_fields(extra, v, f"{path}.{k}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            problems += undeclared_fields(schema["items"], item, f"{path}[{i}]")
    return problems


def check_crd_schemas(docs, schemas):
    problems = []
    for obj in docs:
        group = group_of(obj)
        if group not in MESH_GROUPS:
            continue
        version = obj["apiVersion"].split("/")[1]
        where = f"{obj['kind']}/{name_of(obj)} ({obj['apiVersion']})"
        entry = schemas.get((group, version, obj["kind"]))
        if entry is None:
            problems.append(f"{where}: no CRD schema for this kind and version")
            continue
        schema, served = entry
        if not served:
            problems.append(f"{where}: version not served")
        body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
        for err in jsonschema.Draft7Validator(schema).iter_errors(body):
            problems.append(f"{where}: {'.'.join(map(str, err.absolute_path)) or '(root)'}: {err.message}")
        problems += [f"{where}: {p}" for p in undeclared_fields(schema, body, "")]
        unknown_meta = set(obj.get("metadata", {})) - {"name", "namespace", "labels", "annotations"}
        problems += [f"{where}: metadata.{k} is not expected in a manifest" for k in sorted(unknown_meta)]
    return problems


# ---------------------------------------------------------------------------------------------
# Security posture


def check_posture(docs):
    problems = []
    for obj in docs:
        pod = pod_template(obj)
        if pod is None:
            continue
        meta, spec = pod
        where = f"{obj['kind']}/{name_of(obj)}"
        pod_sc = spec.get("securityContext", {})
        for c in containers(spec):
            sc = c.get("securityContext", {})
            cw = f"{where} container {c.get('name')}"
            if not (sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True):
                problems.append(f"{cw}: runAsNonRoot is not true")
            if sc.get("runAsUser", pod_sc.get("runAsUser")) in (0, None):
                problems.append(f"{cw}: runAsUser must be a non-zero uid")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{cw}: readOnlyRootFilesystem is not true")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{cw}: allowPrivilegeEscalation is not false")
            if sc.get("privileged"):
                problems.append(f"{cw}: privileged")
            caps = sc.get("capabilities", {})
            if "ALL" not in caps.get("drop", []) or caps.get("add"):
                problems.append(f"{cw}: capabilities must drop ALL and add none")
            seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
            if seccomp != "RuntimeDefault":
                problems.append(f"{cw}: seccompProfile is {seccomp!r}, not RuntimeDefault")
            res = c.get("resources", {})
            if not res.get("requests", {}).get("memory") or not res.get("limits", {}).get("memory"):
                problems.append(f"{cw}: memory request and limit are required")
        component = meta.get("labels", {}).get("app.kubernetes.io/component")
        if obj["kind"] == "Deployment" and component in SERVICE_COMPONENTS:
            ann = meta.get("annotations", {})
            if ann.get("linkerd.io/inject") != "enabled":
                problems.append(f"{where}: pod template lacks linkerd.io/inject: enabled")
            if ann.get("config.linkerd.io/default-inbound-policy") != "deny":
                problems.append(f"{where}: pod template's default inbound policy is not deny")
            # A plain sidecar proxy refuses new requests as soon as the pod is told to stop,
            # cutting the calls a draining service still makes; a native one stops last.
            if ann.get("config.beta.linkerd.io/proxy-enable-native-sidecar") != "true":
                problems.append(f"{where}: the proxy is not a native sidecar, so it would stop before the "
                                "service drains")
            grace = spec.get("terminationGracePeriodSeconds", 30)
            if grace < 30:
                problems.append(f"{where}: terminationGracePeriodSeconds {grace} < 30")
    return problems


def check_service_ports(docs):
    problems = []
    for svc in of_kind(docs, "Service"):
        for port in svc["spec"].get("ports", []):
            where = f"Service/{name_of(svc)} port {port.get('port')}"
            if not port.get("name"):
                problems.append(f"{where}: unnamed")
            elif port["name"].startswith("grpc") or port["name"] == "otlp-grpc":
                if port.get("appProtocol") != "kubernetes.io/h2c":
                    problems.append(f"{where}: gRPC port without appProtocol kubernetes.io/h2c")
            elif not port.get("appProtocol"):
                problems.append(f"{where}: no appProtocol")
    return problems


def check_no_service_profile(docs):
    return [f"ServiceProfile/{name_of(d)}: overrides the GRPCRoute retries and timeouts; remove it"
            for d in docs if d.get("kind") == "ServiceProfile"]


# ---------------------------------------------------------------------------------------------
# Mesh policy


def _labels_match(selector, labels):
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items()) and not selector.get(
        "matchExpressions")


def _ref_is(ref, kind, group):
    return ref.get("kind") == kind and ref.get("group", "") in ((group,) if group else ("", "core"))


def inbound_routes(docs, server_name):
    out = []
    for route in of_kind(docs, "GRPCRoute") + of_kind(docs, "HTTPRoute"):
        for parent in route["spec"].get("parentRefs", []):
            if _ref_is(parent, "Server", "policy.linkerd.io") and parent.get("name") == server_name:
                out.append(route)
    return out


def policies_for(docs, kind, name, group):
    """AuthorizationPolicies targeting the object, plus those targeting the whole namespace."""
    out = []
    for pol in of_kind(docs, "AuthorizationPolicy", "policy.linkerd.io"):
        t = pol["spec"]["targetRef"]
        if (t.get("kind") == kind and t.get("group", "") == group and t.get("name") == name) or t.get(
                "kind") == "Namespace":
            out.append(pol)
    return out


def _authn(docs, ref):
    for obj in of_kind(docs, ref.get("kind"), "policy.linkerd.io"):
        if name_of(obj) == ref.get("name"):
            return obj
    return None


def check_policy_references(docs):
    """Linkerd ignores an AuthorizationPolicy whose target or authentication does not exist."""
    problems = []
    for pol in of_kind(docs, "AuthorizationPolicy", "policy.linkerd.io"):
        where = f"AuthorizationPolicy/{name_of(pol)}"
        t = pol["spec"]["targetRef"]
        if t.get("kind") != "Namespace":
            group = t.get("group", "")
            if not any(name_of(o) == t.get("name") and group_of(o) == group for o in of_kind(docs, t.get("kind"))):
                problems.append(f"{where}: target {t.get('kind')}/{t.get('name')} does not exist")
        refs = pol["spec"].get("requiredAuthenticationRefs", [])
        if not refs:
            problems.append(f"{where}: no requiredAuthenticationRefs")
        counts = {}
        for ref in refs:
            counts[ref.get("kind")] = counts.get(ref.get("kind"), 0) + 1
            if ref.get("kind") in ("MeshTLSAuthentication", "NetworkAuthentication") and _authn(docs, ref) is None:
                problems.append(f"{where}: {ref.get('kind')}/{ref.get('name')} does not exist")
        if any(n > 1 for n in counts.values()):
            problems.append(f"{where}: at most one authentication of each kind is allowed")
    return problems


def check_servers(docs):
    """Every Server is reachable by someone: a policy on it or on one of its routes; it selects
    pods of the chart; and every container port of a meshed service pod has a Server."""
    problems = []
    servers = of_kind(docs, "Server", "policy.linkerd.io")
    pods = [pod_template(d) for d in of_kind(docs, "Deployment")]
    for server in servers:
        name = name_of(server)
        covered = policies_for(docs, "Server", name, "policy.linkerd.io")
        for route in inbound_routes(docs, name):
            covered += policies_for(docs, route["kind"], name_of(route), group_of(route))
        if not covered:
            problems.append(f"Server/{name}: no AuthorizationPolicy allows anything on it or its routes")
        # A Server's own accessPolicy applies to traffic no route or policy matches: anything
        # but deny would open the port, write methods included, beside the policies.
        access = server["spec"].get("accessPolicy", "deny")
        if access != "deny":
            problems.append(f"Server/{name}: accessPolicy {access!r} admits calls no policy allows; must be deny")
        selector = server["spec"].get("podSelector", {})
        port = server["spec"].get("port")
        if not any(_labels_match(selector, m.get("labels", {})) and any(
                p.get("name") == port or p.get("containerPort") == port
                for c in s.get("containers", []) for p in c.get("ports", [])) for m, s in pods):
            problems.append(f"Server/{name}: selects no pod port of the chart ({port})")
    for meta, spec in pods:
        if meta.get("labels", {}).get("app.kubernetes.io/component") not in SERVICE_COMPONENTS:
            continue
        for c in spec.get("containers", []):
            for p in c.get("ports", []):
                if not any(_labels_match(s["spec"].get("podSelector", {}), meta.get("labels", {}))
                           and s["spec"].get("port") in (p.get("name"), p.get("containerPort")) for s in servers):
                    problems.append(f"container {c.get('name')} port {p.get('name')}: no Server covers it")
    return problems


def _route_methods(route):
    """(service, method) pairs a GRPCRoute matches; None stands for 'anything'."""
    out = []
    for rule in route["spec"].get("rules", []):
        matches = rule.get("matches") or [{}]
        for m in matches:
            method = m.get("method")
            if not method or method.get("type", "Exact") != "Exact":
                out.append((None, None))
            else:
                out.append((method.get("service") or None, method.get("method") or None))
    return out


def _matches_write(pair):
    service, method = pair
    return service in (None, COMPARISON_SERVICE) and (method is None or method in WRITE_METHODS)


def _identities(docs, pol):
    """The client identities a policy admits, as 'name.namespace' strings; '*' for anyone."""
    mesh = [r for r in pol["spec"].get("requiredAuthenticationRefs", []) if r.get("kind") in (
        "MeshTLSAuthentication", "ServiceAccount")]
    if not mesh:
        return {"*"}  # network-only (or nothing): not bound to an identity
    out = set()
    ns_default = pol.get("metadata", {}).get("namespace", "")
    for ref in mesh:
        if ref["kind"] == "ServiceAccount":
            out.add(f"{ref['name']}.{ref.get('namespace', ns_default)}")
            continue
        authn = _authn(docs, ref) or {"spec": {}}
        for i in authn["spec"].get("identityRefs", []):
            out.add("*" if i.get("kind") != "ServiceAccount" or not i.get("name")
                    else f"{i['name']}.{i.get('namespace', ns_default)}")
        for ident in authn["spec"].get("identities", []):
            parts = ident.split(".")
            out.add("*" if "*" in ident or len(parts) < 3 else f"{parts[0]}.{parts[1]}")
    return out


def check_write_authorization(docs, sender):
    """Only `sender` ('name.namespace') may call a write method; and it can."""
    problems = []
    sender_can = set()
    for server in of_kind(docs, "Server", "policy.linkerd.io"):
        routes = [r for r in inbound_routes(docs, name_of(server)) if r["kind"] == "GRPCRoute"]
        write_routes = [r for r in routes if any(_matches_write(p) for p in _route_methods(r))]
        if not write_routes:
            continue
        targets = [(server, policies_for(docs, "Server", name_of(server), "policy.linkerd.io"))]
        targets += [(r, policies_for(docs, "GRPCRoute", name_of(r), "gateway.networking.k8s.io"))
                    for r in write_routes]
        for obj, pols in targets:
            for pol in pols:
                admitted = _identities(docs, pol)
                if admitted != {sender}:
                    problems.append(f"AuthorizationPolicy/{name_of(pol)} on {obj['kind']}/{name_of(obj)} "
                                    f"(write methods) admits {sorted(admitted)}, not only {sender}")
                elif obj["kind"] == "GRPCRoute":
                    sender_can |= {m for s, m in _route_methods(obj) if s == COMPARISON_SERVICE}
    if problems:
        return problems
    missing = WRITE_METHODS - sender_can
    if missing:
        problems.append(f"the sender ({sender}) is not authorized for {sorted(missing)}")
    return problems


def check_probes(docs):
    """Probes are httpGet on a port whose Server has no routes: Linkerd authorizes the kubelet's
    probes itself only then (a Server with routes needs an explicit probe route and policy)."""
    problems = []
    servers = of_kind(docs, "Server", "policy.linkerd.io")
    for obj in of_kind(docs, "Deployment"):
        meta, spec = pod_template(obj)
        for c in spec.get("containers", []):
            ports = {p.get("name"): p.get("containerPort") for p in c.get("ports", [])}
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                probe = c.get(kind)
                if probe is None:
                    continue
                where = f"Deployment/{name_of(obj)} {c.get('name')} {kind}"
                if "httpGet" not in probe:
                    problems.append(f"{where}: not an httpGet probe ({', '.join(probe)})")
                    continue
                port = probe["httpGet"].get("port")
                if port not in ports and port not in ports.values():
                    problems.append(f"{where}: port {port} is not a container port")
                    continue
                for s in servers:
                    if _labels_match(s["spec"].get("podSelector", {}), meta.get("labels", {})) and s["spec"].get(
                            "port") in (port, ports.get(port)):
                        if inbound_routes(docs, name_of(s)):
                            problems.append(f"{where}: Server/{name_of(s)} has routes, so Linkerd does not "
                                            "authorize the kubelet's probes on it")
                        protocol = s["spec"].get("proxyProtocol", "unknown")
                        if protocol not in ("unknown", "HTTP/1", "HTTP/2"):
                            problems.append(f"{where}: Server/{name_of(s)} is {protocol}, so the proxy sees no "
                                            "HTTP probe to authorize")
    return problems


def check_retries(docs):
    """Timeouts on every outbound route; retries only on idempotent methods, with a limit; none
    on Services (they would cover every method)."""
    problems = []
    for svc in of_kind(docs, "Service"):
        if any(k.startswith(("retry.linkerd.io/", "timeout.linkerd.io/")) for k in svc["metadata"].get(
                "annotations", {}) or {}):
            problems.append(f"Service/{name_of(svc)}: retry/timeout annotations belong on routes")
    for route in of_kind(docs, "GRPCRoute"):
        if not any(_ref_is(p, "Service", "") for p in route["spec"].get("parentRefs", [])):
            continue
        where = f"GRPCRoute/{name_of(route)}"
        ann = route["metadata"].get("annotations", {}) or {}
        if "timeout.linkerd.io/request" not in ann:
            problems.append(f"{where}: no timeout.linkerd.io/request")
        if "retry.linkerd.io/http" in ann:
            problems.append(f"{where}: retry.linkerd.io/http is not valid on a GRPCRoute")
        retrying = any(k.startswith("retry.linkerd.io/") for k in ann)
        if not retrying:
            continue
        codes = set(ann.get("retry.linkerd.io/grpc", "").split(","))
        if not ann.get("retry.linkerd.io/grpc") or not codes <= GRPC_RETRY_CODES:
            problems.append(f"{where}: retry.linkerd.io/grpc {ann.get('retry.linkerd.io/grpc')!r} is not a list "
                            "of gRPC status names")
        limit = ann.get("retry.linkerd.io/limit")
        if limit is None or not str(limit).isdigit() or not 1 <= int(limit) <= MAX_RETRY_LIMIT:
            problems.append(f"{where}: retry.linkerd.io/limit must be set, 1..{MAX_RETRY_LIMIT} (is {limit!r})")
        for pair in _route_methods(route):
            if pair not in IDEMPOTENT:
                problems.append(f"{where}: retries {pair[0] or '*'}/{pair[1] or '*'}, which is not idempotent")
    return problems


def _seconds(duration):
    """A Go/Linkerd-style duration with one unit (`500ms`, `10s`, `2m`) in seconds, else None."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for unit in ("ms", "s", "m", "h"):
        number = str(duration).removesuffix(unit)
        if number != str(duration) and number.isdigit():
            return int(number) * units[unit]
    return None


def check_route_timeouts(docs):
    """The mesh's timeouts fit inside the sender's own deadline: a route timeout longer than it
    never fires (the sender gives up first), and a try timeout no shorter than the route's
    leaves no time for the retry it exists for."""
    problems = []
    deadline = None
    for cm in of_kind(docs, "ConfigMap"):
        if "SENDER_RPC_TIMEOUT" in (cm.get("data") or {}):
            deadline = _seconds(cm["data"]["SENDER_RPC_TIMEOUT"])
    if deadline is None:
        return ["no sender ConfigMap with a SENDER_RPC_TIMEOUT to compare the route timeouts with"]
    for route in of_kind(docs, "GRPCRoute"):
        if not any(_ref_is(p, "Service", "") for p in route["spec"].get("parentRefs", [])):
            continue
        where = f"GRPCRoute/{name_of(route)}"
        ann = route["metadata"].get("annotations", {}) or {}
        request = _seconds(ann.get("timeout.linkerd.io/request"))
        if request is None or request > deadline:
            problems.append(f"{where}: timeout.linkerd.io/request {ann.get('timeout.linkerd.io/request')!r} "
                            f"must be a duration within the sender's deadline ({deadline:g}s)")
            continue
        if "retry.linkerd.io/timeout" in ann:
            per_try = _seconds(ann["retry.linkerd.io/timeout"])
            if per_try is None or per_try >= request:
                problems.append(f"{where}: retry.linkerd.io/timeout {ann['retry.linkerd.io/timeout']!r} must be "
                                f"shorter than the request timeout ({request:g}s)")
    return problems


def check_scalers(docs):
    """Every HPA and KEDA ScaledObject scales a Deployment of the chart, and none is scaled by
    both: KEDA makes an HPA of its own, and two HPAs on one Deployment fight over replicas."""
    problems = []
    deployments = {name_of(d) for d in of_kind(docs, "Deployment")}
    scaled = {}
    for obj in of_kind(docs, "HorizontalPodAutoscaler") + of_kind(docs, "ScaledObject", "keda.sh"):
        ref = obj["spec"].get("scaleTargetRef", {})
        target = ref.get("name")
        where = f"{obj['kind']}/{name_of(obj)}"
        if ref.get("kind", "Deployment") != "Deployment" or target not in deployments:
            problems.append(f"{where}: scales {ref.get('kind', 'Deployment')}/{target}, not a Deployment of the chart")
            continue
        if target in scaled:
            problems.append(f"{where}: Deployment/{target} is also scaled by {scaled[target]}")
        scaled[target] = where
    return problems


def run_checks(docs, schemas, sender):
    results = {
        "CRD schemas, no undeclared fields": check_crd_schemas(docs, schemas),
        "no ServiceProfile": check_no_service_profile(docs),
        "security posture": check_posture(docs),
        "named ports, appProtocol": check_service_ports(docs),
        "policy references resolve": check_policy_references(docs),
        "every Server covered": check_servers(docs),
        "only the sender writes": check_write_authorization(docs, sender),
        "probes allowed": check_probes(docs),
        "timeouts, bounded idempotent retries": check_retries(docs),
        "timeouts within the sender's deadline": check_route_timeouts(docs),
        "one scaler per Deployment": check_scalers(docs),
    }
    return results


# ---------------------------------------------------------------------------------------------
# IAM documents


def check_iam(paths):
    problems = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        where = os.path.basename(path)
        if doc.get("Version") != "2012-10-17":
            problems.append(f"{where}: Version must be 2012-10-17")
        statements = doc.get("Statement")
        if not isinstance(statements, list) or not statements:
            problems.append(f"{where}: no Statement list")
            continue
        for st in statements:
            sw = f"{where} {st.get('Sid', '?')}"
            if st.get("Effect") != "Allow" or not st.get("Sid"):
                problems.append(f"{sw}: every statement needs a Sid and Effect Allow")
            actions = st.get("Action", [])
            actions = [actions] if isinstance(actions, str) else actions
            resources = st.get("Resource", [])
            resources = [resources] if isinstance(resources, str) else resources
            if not actions or any("*" in a for a in actions):
                problems.append(f"{sw}: actions must be listed one by one, no wildcards")
            if not resources or any(r == "*" or r.endswith(":*") for r in resources):
                problems.append(f"{sw}: resources must be named (no '*')")
    return problems


# ---------------------------------------------------------------------------------------------
# Negative tests: every check must reject a manifest broken in its way.

BASELINE = None  # (docs, schemas, sender), set by main()


class ChecksRejectBrokenManifests(unittest.TestCase):
    def setUp(self):
        docs, self.schemas, self.sender = BASELINE
        self.docs = copy.deepcopy(docs)

    def find(self, kind, suffix):
        hits = [d for d in self.docs if d.get("kind") == kind and name_of(d).endswith(suffix)]
        self.assertTrue(hits, f"{kind} *{suffix} not in the render")
        return hits[0]

    def container(self, suffix):
        return pod_template(self.find("Deployment", suffix))[1]["containers"][0]

    def assertFinds(self, problems, text):
        self.assertTrue(any(text in p for p in problems), f"expected a problem with {text!r}, got {problems}")

    def test_baseline_passes(self):
        results = run_checks(self.docs, self.schemas, self.sender)
        self.assertEqual({k: v for k, v in results.items() if v}, {})

    # posture
    def test_writable_root_filesystem(self):
        self.container("-comparison")["securityContext"]["readOnlyRootFilesystem"] = False
        self.assertFinds(check_posture(self.docs), "readOnlyRootFilesystem")

    def test_root_user(self):
        self.container("-sender")["securityContext"]["runAsUser"] = 0
        self.assertFinds(check_posture(self.docs), "runAsUser")

    def test_capability_kept(self):
        self.container("-watcher")["securityContext"]["capabilities"] = {"drop": ["NET_RAW"]}
        self.assertFinds(check_posture(self.docs), "drop ALL")

    def test_privilege_escalation(self):
        del self.container("-watcher")["securityContext"]["allowPrivilegeEscalation"]
        self.assertFinds(check_posture(self.docs), "allowPrivilegeEscalation")

    def test_no_seccomp(self):
        obj = self.find("Deployment", "-sender")
        del pod_template(obj)[1]["securityContext"]["seccompProfile"]
        del self.container("-sender")["securityContext"]["seccompProfile"]
        self.assertFinds(check_posture(self.docs), "seccompProfile")

    def test_not_meshed(self):
        del pod_template(self.find("Deployment", "-comparison"))[0]["annotations"]["linkerd.io/inject"]
        self.assertFinds(check_posture(self.docs), "linkerd.io/inject")

    def test_plain_sidecar_proxy(self):
        del pod_template(self.find("Deployment", "-sender"))[0]["annotations"][
            "config.beta.linkerd.io/proxy-enable-native-sidecar"]
        self.assertFinds(check_posture(self.docs), "native sidecar")

    # ports
    def test_grpc_port_without_h2c(self):
        del self.find("Service", "-comparison")["spec"]["ports"][0]["appProtocol"]
        self.assertFinds(check_service_ports(self.docs), "kubernetes.io/h2c")

    # schemas
    def test_undeclared_field_in_server(self):
        self.find("Server", "-comparison-grpc")["spec"]["proxyProtocl"] = "gRPC"
        self.assertFinds(check_crd_schemas(self.docs, self.schemas), "spec.proxyProtocl: field not declared")

    def test_undeclared_nested_field(self):
        route = self.find("GRPCRoute", "-comparison-writes")
        route["spec"]["rules"][0]["matches"][0]["method"]["methods"] = "RecordMake"
        self.assertFinds(check_crd_schemas(self.docs, self.schemas), "method.methods: field not declared")

    def test_schema_violation(self):
        self.find("GRPCRoute", "-comparison-reads")["spec"]["rules"][0]["matches"][0]["method"]["type"] = "Prefix"
        self.assertFinds(check_crd_schemas(self.docs, self.schemas), "'Prefix' is not one of")

    def test_unserved_version(self):
        self.find("Server", "-sender-admin")["apiVersion"] = "policy.linkerd.io/v1beta9"
        self.assertFinds(check_crd_schemas(self.docs, self.schemas), "no CRD schema")

    def test_service_profile(self):
        self.docs.append({"apiVersion": "linkerd.io/v1alpha2", "kind": "ServiceProfile",
                          "metadata": {"name": "x"}, "spec": {"routes": []}})
        self.assertFinds(check_no_service_profile(self.docs), "ServiceProfile/x")

    # policy
    def test_server_without_policy(self):
        self.docs = [d for d in self.docs if not (d.get("kind") == "AuthorizationPolicy"
                                                  and name_of(d).endswith("-sender-admin-mesh-scrapers"))]
        self.assertFinds(check_servers(self.docs), "-sender-admin: no AuthorizationPolicy")

    def test_port_without_server(self):
        self.docs = [d for d in self.docs if not (d.get("kind") == "Server" and name_of(d).endswith("-watcher-admin"))]
        self.assertFinds(check_servers(self.docs), "port admin: no Server covers it")

    def test_dangling_authentication(self):
        pol = self.find("AuthorizationPolicy", "-comparison-reads")
        pol["spec"]["requiredAuthenticationRefs"][0]["name"] = "nobody"
        self.assertFinds(check_policy_references(self.docs), "nobody does not exist")

    def test_write_route_for_another_identity(self):
        authn = self.find("MeshTLSAuthentication", "-comparison-writes-callers")
        authn["spec"]["identityRefs"].append({"kind": "ServiceAccount", "name": "operator", "namespace": "ops"})
        self.assertFinds(check_write_authorization(self.docs, self.sender), "operator.ops")

    def test_write_route_by_network_only(self):
        pol = self.find("AuthorizationPolicy", "-comparison-writes")
        pol["spec"]["requiredAuthenticationRefs"] = [
            {"group": "policy.linkerd.io", "kind": "NetworkAuthentication", "name": "anyone"}]
        self.assertFinds(check_write_authorization(self.docs, self.sender), "['*']")

    def test_server_wide_policy_opens_writes(self):
        reads = copy.deepcopy(self.find("AuthorizationPolicy", "-comparison-reads"))
        reads["metadata"]["name"] = "everything"
        reads["spec"]["targetRef"] = {"group": "policy.linkerd.io", "kind": "Server",
                                      "name": name_of(self.find("Server", "-comparison-grpc"))}
        self.docs.append(reads)
        self.assertFinds(check_write_authorization(self.docs, self.sender), "AuthorizationPolicy/everything")

    def test_write_method_on_reads_route(self):
        route = self.find("GRPCRoute", "-comparison-reads")
        route["spec"]["rules"][0]["matches"].append(
            {"method": {"type": "Exact", "service": COMPARISON_SERVICE, "method": "UpdateRecipe"}})
        self.assertFinds(check_write_authorization(self.docs, self.sender), "-comparison-reads (write methods)")

    def test_sender_cannot_write(self):
        self.docs = [d for d in self.docs if not (d.get("kind") == "AuthorizationPolicy"
                                                  and name_of(d).endswith("-comparison-writes"))]
        self.assertFinds(check_write_authorization(self.docs, self.sender), "not authorized")

    # probes
    def test_grpc_probe(self):
        self.container("-comparison")["readinessProbe"] = {"grpc": {"port": 50051}}
        self.assertFinds(check_probes(self.docs), "not an httpGet probe")

    def test_probe_on_port_with_routes(self):
        self.container("-comparison")["livenessProbe"]["httpGet"]["port"] = "grpc"
        self.assertFinds(check_probes(self.docs), "has routes")

    # retries
    def test_retry_on_non_idempotent_method(self):
        route = self.find("GRPCRoute", "-outbound-record-make")
        route["spec"]["rules"][0]["matches"].append(
            {"method": {"type": "Exact", "service": COMPARISON_SERVICE, "method": "CreateRecipe"}})
        self.assertFinds(check_retries(self.docs), "CreateRecipe, which is not idempotent")

    def test_retry_on_catch_all(self):
        self.find("GRPCRoute", "-outbound-other")["metadata"]["annotations"]["retry.linkerd.io/grpc"] = "unavailable"
        self.assertFinds(check_retries(self.docs), "*/*, which is not idempotent")

    def test_retry_without_limit(self):
        del self.find("GRPCRoute", "-outbound-reads")["metadata"]["annotations"]["retry.linkerd.io/limit"]
        self.assertFinds(check_retries(self.docs), "limit must be set")

    def test_route_without_timeout(self):
        del self.find("GRPCRoute", "-outbound-reads")["metadata"]["annotations"]["timeout.linkerd.io/request"]
        self.assertFinds(check_retries(self.docs), "no timeout")

    def test_route_timeout_beyond_the_senders_deadline(self):
        self.find("GRPCRoute", "-outbound-record-make")["metadata"]["annotations"]["timeout.linkerd.io/request"] = "15s"
        self.assertFinds(check_route_timeouts(self.docs), "within the sender's deadline")

    def test_try_timeout_as_long_as_the_request(self):
        ann = self.find("GRPCRoute", "-outbound-reads")["metadata"]["annotations"]
        ann["retry.linkerd.io/timeout"] = ann["timeout.linkerd.io/request"]
        self.assertFinds(check_route_timeouts(self.docs), "shorter than the request timeout")

    def test_server_access_policy_open(self):
        self.find("Server", "-comparison-grpc")["spec"]["accessPolicy"] = "all-authenticated"
        self.assertFinds(check_servers(self.docs), "accessPolicy 'all-authenticated'")

    def test_probe_port_opaque(self):
        self.find("Server", "-comparison-admin")["spec"]["proxyProtocol"] = "opaque"
        self.assertFinds(check_probes(self.docs), "is opaque")

    def test_two_scalers_on_one_deployment(self):
        sender = self.find("Deployment", "-sender")
        self.docs.append({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
                          "metadata": {"name": "extra"}, "spec": {"scaleTargetRef": {"name": name_of(sender)}}})
        self.assertFinds(check_scalers(self.docs), "is also scaled by")

    def test_scaler_on_a_missing_deployment(self):
        self.find("HorizontalPodAutoscaler", "-comparison")["spec"]["scaleTargetRef"]["name"] = "nope"
        self.assertFinds(check_scalers(self.docs), "not a Deployment of the chart")

    def test_retry_on_service(self):
        self.find("Service", "-comparison")["metadata"]["annotations"] = {"retry.linkerd.io/grpc": "unavailable"}
        self.assertFinds(check_retries(self.docs), "belong on routes")

    # IAM
    def test_iam_wildcards(self):
        import tempfile
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            json.dump({"Version": "2012-10-17", "Statement": [
                {"Sid": "All", "Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}, f)
        try:
            problems = check_iam([f.name])
        finally:
            os.unlink(f.name)
        self.assertFinds(problems, "no wildcards")
        self.assertFinds(problems, "must be named")


# ---------------------------------------------------------------------------------------------


def extract_mesh(path):
    docs = [d for d in load_docs(path) if group_of(d) in MESH_GROUPS or (
        d.get("kind") == "ServiceAccount" and name_of(d).endswith("-operator"))]
    docs.sort(key=lambda d: (d["kind"], name_of(d)))
    out = ["# Rendered from charts/recipe-mesh (default values, release recipe-mesh, namespace",
           "# recipe-mesh) by scripts/check-chart.sh --write-mesh. Do not edit: change the chart.",
           "# Apply with: kubectl -n recipe-mesh apply -f mesh/rendered.yaml"]
    for d in docs:
        out.append("---")
        out.append(yaml.safe_dump(d, sort_keys=True, default_flow_style=False).rstrip())
    return "\n".join(out) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schemas", help="directory with INDEX.tsv and the CRD schemas")
    parser.add_argument("--extract-mesh", metavar="RENDERED")
    parser.add_argument("--check-iam", nargs="+", metavar="JSON")
    parser.add_argument("renders", nargs="*", metavar="NAME=FILE")
    args = parser.parse_args()

    if args.extract_mesh:
        sys.stdout.write(extract_mesh(args.extract_mesh))
        return 0
    if args.check_iam:
        problems = check_iam(args.check_iam)
        for p in problems:
            print(f"  FAIL {p}")
        return 1 if problems else 0
    if not args.schemas or not args.renders:
        parser.error("--schemas and at least one NAME=FILE are required")

    schemas = load_schemas(args.schemas)
    failed = 0
    first = None
    for item in args.renders:
        name, _, path = item.partition("=")
        docs = load_docs(path)
        sa = [name_of(d) for d in of_kind(docs, "ServiceAccount") if name_of(d).endswith("-sender")]
        namespace = "recipe-mesh"  # scripts/check-chart.sh renders into this namespace
        sender = f"{sa[0]}.{namespace}" if sa else "(no sender ServiceAccount)"
        first = first or (docs, schemas, sender)
        for check, problems in run_checks(docs, schemas, sender).items():
            status = "ok  " if not problems else "FAIL"
            failed += bool(problems)
            print(f"  {status} [{name}] {check}")
            for p in problems:
                print(f"         {p}")

    global BASELINE
    BASELINE = first
    print("  negative tests: each check must reject a broken manifest")
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(ChecksRejectBrokenManifests)
    result = unittest.TextTestRunner(stream=sys.stdout, verbosity=1).run(suite)
    failed += len(result.failures) + len(result.errors)
    passed = result.testsRun - len(result.failures) - len(result.errors)
    print(f"chart checks: {passed} negative tests passed, {len(result.failures) + len(result.errors)} failed; "
          f"{failed} failures in total")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
