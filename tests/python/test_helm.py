"""The Helm chart: lint, render for several value sets, validate every object against the
Kubernetes OpenAPI schemas, parse the rendered router and autoscaler configs with weir's own
loaders, check RBAC grants nothing more, and refuse bad values with the schema's message."""
import pathlib
import subprocess

import kubernetes_validate
import pytest
import yaml

from conftest import ROOT, weir_binary

CHART = ROOT / "helm" / "weir"
HELM = ROOT / "target" / "tools" / "helm"
KUBERNETES = "1.33"

VALUE_SETS = {
    "no-canary": ["--set-json", 'models=[{"name": "iris", "uri": "models:/iris@production"}]'],
    "canary-10": [],
    # A canary is one value: --set on top of the models the user's values file (or, on upgrade,
    # --reuse-values) already holds.
    "canary-100": ["-f", str(CHART / "values.yaml"), "--set", "models[0].canary.percent=100"],
    "external-postgres": ["--set", "registry.database.url=postgres://weir:secret@db.example:5432/weir"],
    "prometheus": ["--set", "autoscaler.prometheus.url=http://prometheus.monitoring:9090", "--set", "serviceMonitor.enabled=true", "--set", "networkPolicy.enabled=true"],
    "no-autoscaler": ["--set", "autoscaler.enabled=false", "--set", "registry.enabled=false", "--set", "registry.url=http://registry.ml:5000"],
}


def helm(*args, check=True):
    assert HELM.is_file(), f"{HELM} is missing: run `make setup`"
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, check=check)


def render(extra):
    output = helm("template", "demo", str(CHART), "--namespace", "ml", *extra).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def by_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def config_map(objects, suffix, key):
    for o in by_kind(objects, "ConfigMap"):
        if o["metadata"]["name"].endswith(suffix):
            return o["data"][key]
    raise AssertionError(f"no ConfigMap *{suffix}")


def test_lint_is_clean():
    result = helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_object_matches_the_kubernetes_schemas(name):
    objects = render(VALUE_SETS[name])
    assert objects
    for obj in objects:
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            # A CRD: not in the Kubernetes schemas; checked by hand.
            assert obj["spec"]["endpoints"][0]["port"] == "http"
            continue
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)
        spec = obj.get("spec", {}).get("template", {}).get("spec")
        if spec:
            assert spec["securityContext"]["runAsNonRoot"] is True
            for container in spec["containers"]:
                assert container["securityContext"]["readOnlyRootFilesystem"] is True
                assert container["resources"]["limits"]["memory"]


def weir_check(objects, suffix, key, command, tmp_path):
    """Writes a rendered ConfigMap's file and has `weir COMMAND --check` parse it, as it would at
    start-up in the pod; the finished process."""
    path = tmp_path / key
    path.write_text(config_map(objects, suffix, key))
    checked = subprocess.run([str(weir_binary()), command, "--config", str(path), "--check"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    return checked


@pytest.mark.parametrize("name, weights", [("no-canary", {"stable": 100}), ("canary-10", {"stable": 90, "canary": 10}), ("canary-100", {"stable": 0, "canary": 100})])
def test_router_config_parses_with_weirs_loader_and_carries_the_weights(name, weights, tmp_path):
    objects = render(VALUE_SETS[name])
    checked = weir_check(objects, "-router", "routes.toml", "route", tmp_path)
    expected = " ".join(f"{version}={weight}%" for version, weight in weights.items())
    assert checked.stdout.strip() == f"iris: {expected}"
    # Runtime Deployments per version; no replica count while the autoscaler owns it.
    deployments = {d["metadata"]["name"]: d for d in by_kind(objects, "Deployment")}
    for version in weights:
        deployment = deployments[f"demo-weir-iris-{version}"]
        assert "replicas" not in deployment["spec"]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert "--model=iris=models:/iris@production" in container["args"] or version == "canary"
        assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace >= container["lifecycle"]["preStop"]["sleep"]["seconds"] + 30


@pytest.mark.parametrize("name, signal", [("canary-10", "scrape"), ("prometheus", "prometheus")])
def test_autoscaler_config_parses_and_rbac_grants_nothing_more(name, signal, tmp_path):
    objects = render(VALUE_SETS[name])
    checked = weir_check(objects, "-autoscaler", "autoscaler.toml", "autoscale", tmp_path)
    lines = checked.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["iris-stable", "iris-canary"]
    assert all('deployment: "demo-weir-iris-' in line and f"{signal.capitalize()}" in line for line in lines), lines
    (role,) = by_kind(objects, "Role")
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"]), tuple(sorted(r["verbs"]))) for r in role["rules"]}
    expected = {
        (("apps",), ("deployments",), ("get", "list", "watch")),
        (("apps",), ("deployments/scale",), ("get", "patch")),
    }
    if signal == "scrape":
        expected.add((("",), ("pods",), ("list",)))
    assert rules == expected
    assert by_kind(objects, "ClusterRole") == [] and by_kind(objects, "ClusterRoleBinding") == []


def test_external_postgres_goes_through_a_secret():
    objects = render(VALUE_SETS["external-postgres"])
    (secret,) = by_kind(objects, "Secret")
    assert secret["stringData"]["database-url"].startswith("postgres://")
    (registry,) = by_kind(objects, "StatefulSet")
    env = registry["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "WEIR_DB", "valueFrom": {"secretKeyRef": {"name": secret["metadata"]["name"], "key": "database-url"}}}]


@pytest.mark.parametrize("values, expected", [
    (["--set", "models[0].canary.percent=150"], "percent"),
    (["--set-json", 'models=[{"name": "iris"}]'], "uri"),
    (["--set", "models[0].uri=s3://bucket/iris"], "uri"),
    (["--set", "registry.database.url=mysql://db"], "database"),
])
def test_bad_values_fail_with_the_schemas_message(values, expected):
    result = helm("template", "demo", str(CHART), *values, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr
    assert expected in result.stderr, result.stderr
