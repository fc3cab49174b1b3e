"""Checks .gitlab-ci.yml beyond GitLab's JSON schema (which `check-jsonschema --builtin-schema
vendor.gitlab-ci` applies): what GitLab itself would only find when a pipeline runs.

- every job's stage (after `extends`) is declared, and it has a script;
- `extends` and `needs` name jobs or templates that exist, and a job needs only jobs of its
  own or earlier stages;
- the files the jobs run exist in the repository;
- one image job per service, each building its target of docker/Dockerfile with kaniko, and
  the test job given the emulator as a service container;
- production is deployed only by hand, and deploys are atomic.

Usage: python3 scripts/lib/gitlab_ci_check.py [--self-test] [.gitlab-ci.yml]
(exit 1 with the problems; --self-test first checks that broken variants are rejected)
"""

import os
import re
import sys

import yaml

RESERVED = {
    "stages", "workflow", "variables", "default", "include", "image", "services",
    "before_script", "after_script", "cache",
}
SERVICES = ("comparison", "sender", "watcher")
# Paths a job's commands may name, checked when they appear.
PATH_PATTERN = re.compile(
    r"(?<![\w$/.-])((?:scripts|docker|charts|services)/[\w./-]+)"
)


def resolve(jobs, name, seen=()):
    """The job with its `extends` merged in, as GitLab does (a shallow merge per key)."""
    if name in seen:
        raise ValueError(f"extends cycle through {name}")
    job = jobs[name]
    merged = {}
    parents = job.get("extends", [])
    if isinstance(parents, str):
        parents = [parents]
    for parent in parents:
        if parent not in jobs:
            raise ValueError(f"{name}: extends unknown {parent}")
        merged.update(resolve(jobs, parent, seen + (name,)))
    merged.update({k: v for k, v in job.items() if k != "extends"})
    return merged


def commands(job):
    for key in ("before_script", "script", "after_script"):
        for line in job.get(key, []) or []:
            yield line if isinstance(line, str) else " ".join(line)


def check(path, root):
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    problems = []
    stages = doc.get("stages", [])
    jobs = {k: v for k, v in doc.items() if k not in RESERVED and isinstance(v, dict)}
    resolved = {}
    for name in jobs:
        try:
            resolved[name] = resolve(jobs, name)
        except ValueError as e:
            problems.append(str(e))
    runnable = {n: j for n, j in resolved.items() if not n.startswith(".")}
    for name, job in runnable.items():
        stage = job.get("stage", "test")
        if stage not in stages:
            problems.append(f"{name}: stage {stage!r} is not among {stages}")
        if not job.get("script") and not job.get("trigger"):
            problems.append(f"{name}: no script")
        for need in job.get("needs", []) or []:
            need = need["job"] if isinstance(need, dict) else need
            if need not in runnable:
                problems.append(f"{name}: needs unknown job {need}")
            elif stage in stages and stages.index(
                runnable[need].get("stage", "test")
            ) > stages.index(stage):
                problems.append(f"{name}: needs {need}, of a later stage")
        for line in commands(job):
            for ref in PATH_PATTERN.findall(line):
                ref = ref.rstrip(".")
                if "$" in ref:
                    continue
                if not os.path.exists(os.path.join(root, ref)):
                    problems.append(f"{name}: runs {ref}, which does not exist")
    for service in SERVICES:
        job = runnable.get(f"image:{service}")
        if job is None:
            problems.append(f"no image:{service} job")
            continue
        if job.get("variables", {}).get("SERVICE") != service:
            problems.append(f"image:{service}: SERVICE is not {service}")
        text = "\n".join(commands(job))
        for needle in ("/kaniko/executor", "docker/Dockerfile", '--target "$SERVICE"'):
            if needle not in text:
                problems.append(f"image:{service}: does not use {needle}")
    with open(os.path.join(root, "docker/Dockerfile"), encoding="utf-8") as f:
        targets = set(re.findall(r"^FROM .* AS (\w+)$", f.read(), re.MULTILINE))
    for service in SERVICES:
        if service not in targets:
            problems.append(f"docker/Dockerfile has no target {service}")
    test = runnable.get("test", {})
    aliases = [s.get("alias") for s in test.get("services", []) if isinstance(s, dict)]
    if "moto" not in aliases or "TEST_AWS_ENDPOINT_URL" not in (test.get("variables") or {}):
        problems.append("test: no moto service container handed to scripts/test.sh")
    production = runnable.get("deploy:production", {})
    rules = production.get("rules", [])
    if not rules or any(r.get("when") != "manual" for r in rules):
        problems.append("deploy:production must be manual in every rule")
    for name, job in runnable.items():
        text = "\n".join(commands(job))
        if "helm upgrade" in text and "--atomic" not in text:
            problems.append(f"{name}: helm upgrade without --atomic")
        if name.startswith("deploy:"):
            if not (job.get("environment") or {}).get("name"):
                problems.append(f"{name}: no environment")
            # Every helm call names its cluster: a runner's default context is nobody's choice.
            helm_calls = [line for line in commands(job) if re.search(r"\bhelm (upgrade|test)\b", line)]
            if not helm_calls or any("--kube-context" not in line for line in helm_calls):
                problems.append(f"{name}: a helm upgrade/test without --kube-context")
            # The chart's ci/ values are examples (placeholder accounts) for the offline checks.
            if "charts/recipe-mesh/ci/" in text:
                problems.append(f"{name}: deploys the example values in charts/recipe-mesh/ci/")
    return list(dict.fromkeys(problems))


def self_test(path, root):
    """Each check must be able to fail: break the real file in one way at a time."""
    with open(path, encoding="utf-8") as f:
        good = yaml.safe_load(f)

    def broken(change):
        doc = yaml.safe_load(yaml.safe_dump(good))
        change(doc)
        tmp = os.path.join(root, "target", "gitlab-ci-self-test.yml")
        os.makedirs(os.path.dirname(tmp), exist_ok=True)
        with open(tmp, "w", encoding="utf-8") as f:
            yaml.safe_dump(doc, f)
        try:
            return check(tmp, root)
        finally:
            os.remove(tmp)

    cases = {
        "unknown stage": lambda d: d["fmt"].update(stage="nope"),
        "unknown need": lambda d: d["binaries"].update(needs=["nope"]),
        "later-stage need": lambda d: d["test"].update(needs=["binaries"]),
        "missing file": lambda d: d["test"].update(script=["scripts/nope.sh"]),
        "missing image job": lambda d: d.pop("image:sender"),
        "automatic production": lambda d: d["deploy:production"]["rules"][0].pop("when"),
        "unknown extends": lambda d: d["clippy"].update(extends=".nope"),
        "no emulator service": lambda d: d["test"].pop("services"),
        "deploy without a cluster": lambda d: d[".deploy"].update(
            script=[line.replace('--kube-context "$KUBE_CONTEXT" ', "") for line in d[".deploy"]["script"]]),
        "deploy of example values": lambda d: d[".deploy"]["script"].append(
            "helm upgrade --install x y --kube-context c --atomic -f charts/recipe-mesh/ci/production-values.yaml"),
    }
    baseline = set(check(path, root))
    failures = [
        name for name, change in cases.items() if not set(broken(change)) - baseline
    ]
    if failures:
        sys.exit(f"self-test: not caught: {failures}")
    print(f"self-test: {len(cases)} broken variants each rejected")


def main():
    args = [a for a in sys.argv[1:] if a != "--self-test"]
    path = args[0] if args else ".gitlab-ci.yml"
    root = os.path.dirname(os.path.abspath(path))
    if "--self-test" in sys.argv:
        self_test(path, root)
    problems = check(path, root)
    for p in problems:
        print(f"{path}: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"{path}: stages, needs, extends, files, image jobs and deploy rules are consistent")


if __name__ == "__main__":
    main()
