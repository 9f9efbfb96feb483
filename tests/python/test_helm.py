"""The Helm chart: lint, render for several value sets, validate every object against the
Kubernetes OpenAPI schemas, parse the rendered router and autoscaler configs with weir's own
loaders, check RBAC grants nothing more, check the credentials (tokens only as mounted files,
never in args or env) and the NetworkPolicies flow by flow, and refuse bad values with the
schema's or the chart's message."""
import base64
import hashlib
import ipaddress
import json
import pathlib
import subprocess
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request

import kubernetes_validate
import pytest
import yaml

from conftest import ROOT, Registry, database_url, wait_until_ok, weir_binary

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
    "own-secrets": [
        "--set", "registry.auth.existingSecret=my-identities",
        "--set", "runtime.registryToken.existingSecret=my-runtime-token",
        "--set", "router.admin.existingSecret=my-router-admin",
        "--set", "router.sharedState.tokenSecret.name=my-router-registry",
        "--set", "router.sharedState.tokenSecret.key=admin",
        "--set", "registry.database.existingSecret=my-database",
    ],
    "anonymous": ["--set", "registry.auth.allowAnonymous=true"],
    # Production (issue 19): PostgreSQL + S3 make the registry a stateless Deployment.
    "stateless": [
        "--set", "registry.database.existingSecret=my-database",
        "--set", "registry.artifacts.s3.bucket=weir-models",
        "--set", "registry.artifacts.s3.prefix=/prod/",
        "--set", "registry.artifacts.s3.endpoint=http://minio.storage:9000",
        "--set", "registry.artifacts.s3.allowHttp=true",
        "--set", "registry.artifacts.s3.existingSecret=my-s3",
        "--set", "serviceMonitor.enabled=true",
    ],
    "irsa": [
        "--set", "registry.database.url=postgres://weir:secret@db.example:5432/weir",
        "--set", "registry.artifacts.s3.bucket=weir-models",
        "--set", "registry.artifacts.s3.region=eu-west-1",
        "--set-json", 'registry.artifacts.s3.serviceAccount.annotations={"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/weir-registry"}',
    ],
    "s3-sqlite": ["--set", "registry.artifacts.s3.bucket=weir-models", "--set", "registry.artifacts.s3.endpoint=https://s3.example"],
    "local-router-state": ["--set", "router.sharedState.enabled=false", "--set", "router.replicas=1"],
    # Issue 21: gRPC on the runtime (with gRPC probes) and through the router.
    "grpc": ["--set", "runtime.grpc.enabled=true", "--set", "runtime.grpc.probes=true", "--set", "router.grpc.enabled=true", "--set", "router.grpc.port=9090"],
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
    (role,) = by_kind(objects, "Role")
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"]), tuple(r.get("resourceNames", ())), tuple(sorted(r["verbs"]))) for r in role["rules"]}
    runtime = ("demo-weir-iris-stable", "demo-weir-iris-canary")
    expected = {
        (("apps",), ("deployments",), runtime, ("get",)),
        (("apps",), ("deployments/scale",), runtime, ("get", "patch")),
    }
    if signal == "scrape":
        # Namespace-wide but read-only: resourceNames cannot narrow a list by label selector.
        expected.add((("",), ("pods",), (), ("list",)))
    assert rules == expected
    assert by_kind(objects, "ClusterRole") == [] and by_kind(objects, "ClusterRoleBinding") == []
    # The Kubernetes scaler talks to the API server only: no router address, no admin token.
    for target in tomllib.loads(config_map(objects, "-autoscaler", "autoscaler.toml"))["target"]:
        assert "router" not in target["scaler"] and "router_token_file" not in target["scaler"]
    checked = weir_check(objects, "-autoscaler", "autoscaler.toml", "autoscale", tmp_path)
    lines = checked.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["iris-stable", "iris-canary"]
    assert all('deployment: "demo-weir-iris-' in line and f"{signal.capitalize()}" in line for line in lines), lines


def test_external_postgres_goes_through_a_secret():
    objects = render(VALUE_SETS["external-postgres"])
    (secret,) = [s for s in by_kind(objects, "Secret") if s["metadata"]["name"] == "demo-weir-registry"]
    assert secret["stringData"]["database-url"].startswith("postgres://")
    (registry,) = by_kind(objects, "StatefulSet")
    env = registry["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "WEIR_DB", "valueFrom": {"secretKeyRef": {"name": secret["metadata"]["name"], "key": "database-url"}}}]


@pytest.mark.parametrize("values, expected", [
    (["--set", "models[0].canary.percent=150"], "percent"),
    (["--set-json", 'models=[{"name": "iris"}]'], "uri"),
    (["--set", "models[0].uri=s3://bucket/iris"], "uri"),
    (["--set", "registry.database.url=mysql://db"], "database"),
    # No model: no runtime Deployment for the autoscaler's Role to name.
    (["--set-json", "models=[]"], "minItems"),
])
def test_bad_values_fail_with_the_schemas_message(values, expected):
    result = helm("template", "demo", str(CHART), *values, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr
    assert expected in result.stderr, result.stderr


# Credentials ------------------------------------------------------------------------------------

def workloads(objects):
    return [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]


def container(objects, kind, name):
    for o in by_kind(objects, kind):
        if o["metadata"]["name"] == name:
            return o["spec"]["template"]["spec"]["containers"][0], o["spec"]["template"]["spec"]
    raise AssertionError(f"no {kind} {name}")


def secret_data(secret):
    data = {key: base64.b64decode(value).decode() for key, value in secret.get("data", {}).items()}
    data.update(secret.get("stringData", {}))
    return data


def secret_values(objects):
    """Every value held by a rendered Secret, and the password of every URL among them."""
    values = set()
    for secret in by_kind(objects, "Secret"):
        for value in secret_data(secret).values():
            values.add(value)
            if "://" in value and urllib.parse.urlsplit(value).password:
                values.add(f":{urllib.parse.urlsplit(value).password}@")
    return values


def leaks(objects, values):
    """(object, container, text) for every container arg, command or env value holding one of
    `values`."""
    found = []
    for o in workloads(objects):
        spec = o["spec"]["template"]["spec"]
        for c in spec.get("initContainers", []) + spec["containers"]:
            texts = c.get("args", []) + c.get("command", []) + [e["value"] for e in c.get("env", []) if "value" in e]
            found += [(o["metadata"]["name"], c["name"], t) for t in texts if any(v in str(t) for v in values)]
    return found


def mounted_secret(spec, container_spec, mount_path):
    """(Secret name, {key: path}) behind the volume mounted read-only at `mount_path`."""
    (mount,) = [m for m in container_spec["volumeMounts"] if m["mountPath"] == mount_path]
    assert mount.get("readOnly") is True and "subPath" not in mount, mount
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    return volume["secret"]["secretName"], {i["key"]: i["path"] for i in volume["secret"]["items"]}


def test_the_leak_scan_finds_a_planted_token():
    objects = render([])
    (generated, *_) = by_kind(objects, "Secret")
    token = secret_data(generated)["admin-token"]
    router, _ = container(objects, "Deployment", "demo-weir-router")
    router["args"].append(f"--admin-token={token}")
    assert leaks(objects, secret_values(objects)) == [("demo-weir-router", "weir", f"--admin-token={token}")]
    router["args"].pop()
    router.setdefault("env", []).append({"name": "WEIR_DB", "value": "postgres://u:hunter22@db/weir"})
    assert leaks(objects, {":hunter22@"})


@pytest.mark.parametrize("name", VALUE_SETS)
def test_no_secret_value_is_in_any_args_or_env(name):
    objects = render(VALUE_SETS[name])
    values = secret_values(objects)
    assert leaks(objects, values) == []
    # Nor anywhere else outside the Secrets: ConfigMaps, annotations, Services.
    for o in objects:
        if o["kind"] != "Secret":
            text = yaml.safe_dump(o)
            assert not [v for v in values if v in text], o["metadata"]["name"]
    # Tokens travel only as files: every flag naming one points into a mounted Secret.
    for o in workloads(objects):
        for c in o["spec"]["template"]["spec"]["containers"]:
            for arg in c["args"]:
                if "token" in arg:
                    assert arg.split("=", 1)[0] in ("--tokens", "--admin-token-file", "--registry-token-file"), arg


def test_defaults_render_no_anonymous_registry_and_generated_identities():
    objects = render([])
    registry, spec = container(objects, "StatefulSet", "demo-weir-registry")
    assert "--tokens=/etc/weir/identities/identities.toml" in registry["args"]
    assert not any("anonymous" in arg for arg in registry["args"])
    secret_name, items = mounted_secret(spec, registry, "/etc/weir/identities")
    # The registry pod sees the identities file only, not the generated tokens.
    assert secret_name == "demo-weir-registry-identities" and items == {"identities.toml": "identities.toml"}
    (secret,) = [s for s in by_kind(objects, "Secret") if s["metadata"]["name"] == secret_name]
    data = secret_data(secret)
    tokens = ("admin-token", "runtime-token", "router-token")
    assert set(data) == {"identities.toml", *tokens}
    assert len({data[k] for k in tokens}) == 3
    assert all(len(data[k]) == 40 and data[k].isalnum() for k in tokens)
    users = {u["name"]: u for u in tomllib.loads(data["identities.toml"])["user"]}
    assert users == {
        "admin": {"name": "admin", "token_sha256": hashlib.sha256(data["admin-token"].encode()).hexdigest(), "roles": ["admin"]},
        "runtime": {"name": "runtime", "token_sha256": hashlib.sha256(data["runtime-token"].encode()).hexdigest(), "roles": ["reader"]},
        # The router writes its shared canary state through the registry: an admin (issue 19).
        "router": {"name": "router", "token_sha256": hashlib.sha256(data["router-token"].encode()).hexdigest(), "roles": ["admin"]},
    }
    assert not [k for k in tokens if data[k] in data["identities.toml"]]
    # Each render without a cluster draws new tokens (`lookup` keeps them on a real upgrade).
    again = secret_data([s for s in by_kind(render([]), "Secret") if s["metadata"]["name"] == secret_name][0])
    assert again["admin-token"] != data["admin-token"]


@pytest.mark.parametrize("name", ["canary-10", "anonymous", "own-secrets", "stateless", "irsa", "s3-sqlite", "local-router-state", "grpc"])
def test_every_flag_the_chart_passes_is_one_weir_knows(name):
    helps = {}
    for o in workloads(render(VALUE_SETS[name])):
        for c in o["spec"]["template"]["spec"]["containers"]:
            command = c["args"][0]
            if command not in helps:
                helps[command] = subprocess.run([str(weir_binary()), command, "--help"], capture_output=True, text=True, check=True).stdout
            for arg in c["args"][1:]:
                flag = arg.split("=", 1)[0]
                assert f"{flag} " in helps[command] or f"{flag}\n" in helps[command], f"weir {command} has no {flag}"


def test_the_real_registry_accepts_the_generated_identities(tmp_path):
    """The generated file as `weir registry --tokens` loads it: the admin token may write, the
    runtime token only read, anything else is refused."""
    (secret,) = [s for s in by_kind(render([]), "Secret") if s["metadata"]["name"] == "demo-weir-registry-identities"]
    data = secret_data(secret)
    identities = tmp_path / "identities.toml"
    identities.write_text(data["identities.toml"])
    registry = Registry(database_url("sqlite", tmp_path), tmp_path, "--tokens", str(identities))
    try:
        wait_until_ok(f"{registry.url}/health", registry.process, 30)

        def call(path, token, body=None):
            request = urllib.request.Request(f"{registry.url}/api/2.0/mlflow/registered-models/{path}", data=body and json.dumps(body).encode(), method="POST" if body else "GET")
            request.add_header("Content-Type", "application/json")
            if token:
                request.add_header("Authorization", f"Bearer {token}")
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    return answer.status
            except urllib.error.HTTPError as refused:
                return refused.code

        assert call("create", data["admin-token"], {"name": "iris"}) == 200
        assert call("search", data["runtime-token"]) == 200
        assert call("create", data["runtime-token"], {"name": "bert"}) == 403
        assert call("create", data["router-token"], {"name": "bert"}) == 200
        assert call("search", None) == 401
        assert call("search", data["admin-token"][:-1]) == 401
    finally:
        registry.stop()


def test_runtime_presents_the_generated_runtime_token():
    objects = render([])
    for version in ("stable", "canary"):
        runtime, spec = container(objects, "Deployment", f"demo-weir-iris-{version}")
        assert "--registry-token-file=/etc/weir/registry-token/token" in runtime["args"]
        assert mounted_secret(spec, runtime, "/etc/weir/registry-token") == ("demo-weir-registry-identities", {"runtime-token": "token"})


def test_router_admin_api_has_its_own_port_service_and_token():
    objects = render(["--set", "router.service.type=LoadBalancer"])
    router, spec = container(objects, "Deployment", "demo-weir-router")
    for flag in ("--admin-host=0.0.0.0", "--admin-port=8001", "--admin-token-file=/etc/weir/router-admin/token", "--http-port=8000"):
        assert flag in router["args"]
    assert {p["name"]: p["containerPort"] for p in router["ports"]} == {"http": 8000, "admin": 8001}
    assert mounted_secret(spec, router, "/etc/weir/router-admin") == ("demo-weir-router-admin", {"token": "token"})
    services = {s["metadata"]["name"]: s["spec"] for s in by_kind(objects, "Service")}
    # The data Service (exposed here as a LoadBalancer) carries only the data port.
    assert services["demo-weir-router"]["type"] == "LoadBalancer"
    assert [(p["port"], p["targetPort"]) for p in services["demo-weir-router"]["ports"]] == [(8000, "http")]
    admin = services["demo-weir-router-admin"]
    assert admin["type"] == "ClusterIP"
    assert [(p["port"], p["targetPort"]) for p in admin["ports"]] == [(8001, "admin")]
    assert admin["selector"]["app.kubernetes.io/component"] == "router"
    (secret,) = [s for s in by_kind(objects, "Secret") if s["metadata"]["name"] == "demo-weir-router-admin"]
    token = secret_data(secret)["token"]
    assert len(token) == 40 and token.isalnum()
    # Only the router holds its admin token: the Kubernetes autoscaler never calls the router.
    autoscaler, spec = container(objects, "Deployment", "demo-weir-autoscaler")
    assert all(m["mountPath"] != "/etc/weir/router-admin" for m in autoscaler["volumeMounts"])


def generated(objects, name):
    (secret,) = [s for s in by_kind(objects, "Secret") if s["metadata"]["name"] == name]
    return secret_data(secret)


class ChartRouter:
    """`weir route` with the router container's args, on loopback: the mounted Secrets' files
    written to `folder`, --registry pointed at `registry_url`; `data` and `admin` are its
    listeners."""

    def __init__(self, objects, folder, registry_url=None):
        router, spec = container(objects, "Deployment", "demo-weir-router")
        files = {"/etc/weir/routes/routes.toml": config_map(objects, "-router", "routes.toml")}
        for volume in spec["volumes"]:
            if "secret" in volume:
                (mount,) = [m for m in router["volumeMounts"] if m["name"] == volume["name"]]
                data = generated(objects, volume["secret"]["secretName"])
                for item in volume["secret"]["items"]:
                    files[f"{mount['mountPath']}/{item['path']}"] = data[item["key"]]
        self.token = files["/etc/weir/router-admin/token"]
        folder.mkdir()
        args = []
        for arg in router["args"]:
            flag, _, value = arg.partition("=")
            if value in files:
                path = folder / value.strip("/").replace("/", "-")
                path.write_text(files[value])
                value = str(path)
            elif value.startswith("/var/lib/weir/"):
                value = str(folder / pathlib.Path(value).name)
            elif flag in ("--host", "--admin-host"):
                assert value == "0.0.0.0"
                value = "127.0.0.1"
            elif flag in ("--http-port", "--admin-port"):
                value = "0"
            elif flag == "--registry":
                assert value == "http://demo-weir-registry:5000" and registry_url
                value = registry_url
            args.append(f"{flag}={value}" if flag.startswith("--") else flag)
        self.stderr = folder / "stderr"
        with self.stderr.open("w") as log:
            self.process = subprocess.Popen([str(weir_binary()), *args], stdout=subprocess.PIPE, stderr=log, text=True)
        data, admin = (self.process.stdout.readline() for _ in range(2))
        if not ("listening on" in data and "admin API on" in admin):
            self.stop()
            raise AssertionError((data, admin, self.process.poll(), self.stderr.read_text()))
        self.data, self.admin = (line.strip().rsplit(" ", 1)[1] for line in (data, admin))

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


def call(url, bearer=None, body=None):
    """(status, the JSON answer or None)."""
    request = urllib.request.Request(url, data=body and json.dumps(body).encode(), method="POST" if body else "GET")
    request.add_header("Content-Type", "application/json")
    if bearer:
        request.add_header("Authorization", f"Bearer {bearer}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            text = answer.read()
            return answer.status, json.loads(text) if text.startswith(b"{") else None
    except urllib.error.HTTPError as refused:
        return refused.code, None


def test_the_real_router_runs_with_the_charts_arguments_and_its_own_state(tmp_path):
    """router.sharedState.enabled=false: the router container's args as `weir route` takes
    them, on loopback: the admin API answers on its port with the token only, the data port
    answers no admin path."""
    router = ChartRouter(render(VALUE_SETS["local-router-state"]), tmp_path / "router")
    token = router.token
    try:
        assert call(f"{router.admin}/admin/v1/routes", token)[0] == 200
        assert call(f"{router.admin}/admin/v1/routes")[0] == 401
        assert call(f"{router.admin}/admin/v1/routes", "not-the-token")[0] == 401
        assert call(f"{router.data}/admin/v1/routes", token)[0] == 404
    finally:
        router.stop()
    assert token not in router.stderr.read_text()


def test_two_real_routers_with_the_charts_arguments_share_their_canary_state(tmp_path):
    """The default values: two routers with the chart's args (--registry, the generated
    router-token) on one real registry loading the generated identities; a canary percent set
    through one router's admin API reaches the other (the contract says within 1 s; bounded at
    15 s here so a loaded machine does not fail it)."""
    objects = render([])
    tokens = generated(objects, "demo-weir-registry-identities")
    folder = tmp_path / "registry"
    folder.mkdir()
    identities = folder / "identities.toml"
    identities.write_text(tokens["identities.toml"])
    registry = Registry(database_url("sqlite", folder), folder, "--tokens", str(identities))
    routers = []
    try:
        wait_until_ok(f"{registry.url}/health", registry.process, 30)
        routers = [ChartRouter(objects, tmp_path / f"router-{n}", registry.url) for n in (1, 2)]
        first, second = routers
        assert call(f"{first.data}/admin/v1/routes", first.token)[0] == 404
        assert call(f"{first.admin}/admin/v1/routes/iris/canary", first.token, {"percent": 25})[0] == 200

        def canary_weight(router):
            status, answer = call(f"{router.admin}/admin/v1/routes/iris", router.token)
            assert status == 200, status
            return {b["version"]: b["weight"] for b in answer["backends"]}["canary"]

        deadline = time.monotonic() + 15
        while canary_weight(second) != 25 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert canary_weight(second) == 25
    finally:
        for router in routers:
            router.stop()
        registry.stop()
    for router in routers:
        log = router.stderr.read_text()
        assert not [name for name, token in tokens.items() if name.endswith("-token") and token in log]


def test_existing_secrets_are_used_and_nothing_is_generated():
    objects = render(VALUE_SETS["own-secrets"])
    assert by_kind(objects, "Secret") == []
    registry, spec = container(objects, "StatefulSet", "demo-weir-registry")
    assert "--tokens=/etc/weir/identities/identities.toml" in registry["args"]
    assert mounted_secret(spec, registry, "/etc/weir/identities") == ("my-identities", {"identities.toml": "identities.toml"})
    assert registry["env"] == [{"name": "WEIR_DB", "valueFrom": {"secretKeyRef": {"name": "my-database", "key": "database-url"}}}]
    runtime, spec = container(objects, "Deployment", "demo-weir-iris-stable")
    assert "--registry-token-file=/etc/weir/registry-token/token" in runtime["args"]
    assert mounted_secret(spec, runtime, "/etc/weir/registry-token") == ("my-runtime-token", {"token": "token"})
    c, spec = container(objects, "Deployment", "demo-weir-router")
    assert mounted_secret(spec, c, "/etc/weir/router-admin") == ("my-router-admin", {"token": "token"})
    assert "--registry-token-file=/etc/weir/registry-token/token" in c["args"]
    assert mounted_secret(spec, c, "/etc/weir/registry-token") == ("my-router-registry", {"admin": "token"})


def test_allow_anonymous_renders_an_open_registry_and_no_identities():
    objects = render(VALUE_SETS["anonymous"])
    registry, spec = container(objects, "StatefulSet", "demo-weir-registry")
    assert "--allow-anonymous" in registry["args"]
    assert not any(arg.startswith("--tokens") for arg in registry["args"])
    assert "volumes" not in spec
    assert [s["metadata"]["name"] for s in by_kind(objects, "Secret")] == ["demo-weir-router-admin"]
    runtime, spec = container(objects, "Deployment", "demo-weir-iris-stable")
    assert not any("token" in arg for arg in runtime["args"])
    assert "registry-token" not in {v["name"] for v in spec["volumes"]}
    # The router's admin API keeps its token: allowAnonymous is about the registry only.
    router, _ = container(objects, "Deployment", "demo-weir-router")
    assert "--admin-token-file=/etc/weir/router-admin/token" in router["args"]


def test_an_external_registry_gets_a_token_only_when_given_one():
    objects = render(VALUE_SETS["no-autoscaler"])
    assert [s["metadata"]["name"] for s in by_kind(objects, "Secret")] == ["demo-weir-router-admin"]
    runtime, _ = container(objects, "Deployment", "demo-weir-iris-stable")
    assert not any("token" in arg for arg in runtime["args"])
    objects = render(VALUE_SETS["no-autoscaler"] + ["--set", "runtime.registryToken.existingSecret=ext"])
    runtime, spec = container(objects, "Deployment", "demo-weir-iris-stable")
    assert "--registry-token-file=/etc/weir/registry-token/token" in runtime["args"]
    assert mounted_secret(spec, runtime, "/etc/weir/registry-token") == ("ext", {"token": "token"})


@pytest.mark.parametrize("models", [
    '[{"name": "iris", "uri": "models:/iris@production"}]',
    '[{"name": "iris", "uri": "models:/iris@production", "canary": {"uri": "models:/iris/2", "percent": 5}}, {"name": "bert", "uri": "models:/bert/1"}]',
])
def test_autoscaler_role_names_exactly_the_runtime_deployments(models):
    objects = render(["--set-json", f"models={models}"])
    runtime = sorted(d["metadata"]["name"] for d in by_kind(objects, "Deployment") if d["metadata"]["labels"]["app.kubernetes.io/component"] == "runtime")
    assert len(runtime) == models.count('"uri"')
    (role,) = by_kind(objects, "Role")
    for rule in role["rules"]:
        if rule["apiGroups"] == ["apps"]:
            assert sorted(rule["resourceNames"]) == runtime
        else:
            assert rule == {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}


@pytest.mark.parametrize("values, expected", [
    (["--set", "registry.auth.allowAnonymous=true", "--set", "registry.auth.existingSecret=ids"], "exclude each other"),
    (["--set", "registry.auth.existingSecret=ids"], "set runtime.registryToken.existingSecret"),
    # The router's shared state needs an admin token out of the user's identities too.
    (["--set", "registry.auth.existingSecret=ids", "--set", "runtime.registryToken.existingSecret=rt"], "set router.sharedState.tokenSecret.name"),
    # Two registry pods on one SQLite file or one artifacts volume.
    (["--set", "registry.replicas=2"], "registry.replicas=2 needs the stateless registry"),
    (["--set", "registry.replicas=3", "--set", "registry.artifacts.s3.bucket=weir-models"], "registry.replicas=3 needs the stateless registry"),
    (["--set", "registry.replicas=2", "--set", "registry.database.existingSecret=db"], "registry.replicas=2 needs the stateless registry"),
    (["--set", "registry.artifacts.s3.bucket=weir-models", "--set", "registry.artifacts.s3.endpoint=http://minio:9000"], "set registry.artifacts.s3.allowHttp=true"),
])
def test_contradictory_credentials_fail_with_the_charts_message(values, expected):
    result = helm("template", "demo", str(CHART), *values, check=False)
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr


@pytest.mark.parametrize("values, expected", [
    (["--set", "router.admin.port=8000"], "admin"),
    (["--set", "registry.auth.allowAnonymous=yes"], "allowAnonymous"),
    (["--set", "registry.auth.existingSecret=Not_A_Name"], "existingSecret"),
    (["--set", "networkPolicy.kubernetesApi.cidrs[0]=apiserver"], "cidrs"),
    (["--set", "networkPolicy.enable=true"], "enable"),
    (["--set", "registry.replicas=0"], "replicas"),
    (["--set", "registry.database.poolSize=0"], "poolSize"),
    (["--set", "registry.artifacts.s3.bucket=Weir_Models"], "bucket"),
    (["--set", "registry.artifacts.s3.endpoint=minio:9000"], "endpoint"),
    (["--set", "registry.artifacts.s3.accessKey=AKIA"], "accessKey"),
    (["--set", "router.sharedState.tokenSecret.nam=x"], "nam"),
])
def test_bad_credential_and_policy_values_fail_with_the_schemas_message(values, expected):
    result = helm("template", "demo", str(CHART), *values, check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr, result.stderr
    assert expected in result.stderr, result.stderr


# NetworkPolicies, evaluated -----------------------------------------------------------------------

NAMESPACES = {
    "ml": {"kubernetes.io/metadata.name": "ml"},
    "frontend": {"kubernetes.io/metadata.name": "frontend"},
    "monitoring": {"kubernetes.io/metadata.name": "monitoring", "team": "observability"},
    "kube-system": {"kubernetes.io/metadata.name": "kube-system"},
}


def pod(namespace, labels=None, ip="10.244.0.9"):
    return {"namespace": namespace, "labels": labels or {}, "ip": ip}


def endpoint(ip):
    """Something outside the cluster's pods: the API server, an external registry."""
    return {"namespace": None, "labels": {}, "ip": ip}


def component(objects, name):
    for o in workloads(objects):
        labels = o["spec"]["template"]["metadata"]["labels"]
        if labels.get("app.kubernetes.io/component") == name:
            return pod("ml", labels)
    raise AssertionError(f"no {name} pods")


def selects(selector, labels):
    assert set(selector) <= {"matchLabels"}, f"the evaluator knows matchLabels only: {selector}"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def peer_matches(peer, policy_namespace, other):
    if "ipBlock" in peer:
        return other["namespace"] is None and ipaddress.ip_address(other["ip"]) in ipaddress.ip_network(peer["ipBlock"]["cidr"])
    if other["namespace"] is None:
        return False
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], NAMESPACES[other["namespace"]]):
            return False
    elif other["namespace"] != policy_namespace:
        return False
    return selects(peer.get("podSelector", {}), other["labels"])


def admits(policies, direction, subject, other, port, protocol):
    """Whether the policies selecting `subject` let traffic in `direction` (Ingress from / Egress
    to `other`) on `port`; a pod no policy selects for that direction is open."""
    field, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    chosen = [p for p in policies if subject["namespace"] == "ml" and direction in p["spec"]["policyTypes"] and selects(p["spec"]["podSelector"], subject["labels"])]
    if not chosen:
        return True
    for policy in chosen:
        for rule in policy["spec"].get(field, []):
            ports = rule.get("ports")
            if ports and not any(p["port"] == port and p.get("protocol", "TCP") == protocol for p in ports):
                continue
            peers = rule.get(peers_key)
            assert peers is None or peers, "an empty peer list would admit anyone"
            if peers is None or any(peer_matches(peer, "ml", other) for peer in peers):
                return True
    return False


def allowed(policies, source, destination, port, protocol="TCP"):
    return admits(policies, "Egress", source, destination, port, protocol) and admits(policies, "Ingress", destination, source, port, protocol)


def test_network_policies_allow_exactly_the_flows_weir_needs():
    objects = render([])
    policies = by_kind(objects, "NetworkPolicy")
    assert len(policies) == 4
    router, runtime, registry, autoscaler = (component(objects, c) for c in ("router", "runtime", "registry", "autoscaler"))
    client, neighbour = pod("frontend", {"app": "web"}), pod("ml", {"app": "other"})
    prometheus, dns = pod("monitoring", {"app": "prometheus"}), pod("kube-system", {"k8s-app": "kube-dns"})
    api, internet = endpoint("10.96.0.1"), endpoint("93.184.216.34")
    for source, destination, port in [
        (client, router, 8000), (neighbour, router, 8000),
        (router, runtime, 8080),
        (runtime, registry, 5000), (autoscaler, registry, 5000),
        # Shared canary state (router.sharedState.enabled, the default): the registry's port only.
        (router, registry, 5000),
        (autoscaler, router, 8001), (autoscaler, runtime, 8080),
        (autoscaler, api, 443), (autoscaler, api, 6443),
    ]:
        assert allowed(policies, source, destination, port), (source["labels"], destination["labels"], port)
    for each in (router, runtime, registry, autoscaler):
        assert allowed(policies, each, dns, 53, "UDP") and allowed(policies, each, dns, 53, "TCP")
    for source, destination, port in [
        (client, router, 8001), (neighbour, router, 8001), (runtime, router, 8001),
        (client, runtime, 8080), (neighbour, runtime, 8080), (registry, runtime, 8080),
        (client, registry, 5000), (neighbour, registry, 5000),
        (router, registry, 5001), (router, internet, 5000), (registry, router, 8000), (registry, router, 8001),
        (runtime, api, 443), (router, api, 443), (registry, api, 6443),
        (runtime, internet, 443), (registry, internet, 80), (autoscaler, internet, 80),
        (prometheus, runtime, 8080), (prometheus, autoscaler, 9102), (client, autoscaler, 9102),
    ]:
        assert not allowed(policies, source, destination, port), (source["labels"], destination["labels"], port)


def test_network_policy_values_narrow_and_open_what_they_say():
    objects = render([
        "--set", "networkPolicy.metrics.enabled=true",
        "--set-json", 'networkPolicy.metrics.namespaceSelector={"matchLabels": {"team": "observability"}}',
        "--set-json", 'networkPolicy.clients=[{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "frontend"}}}]',
        "--set-json", 'networkPolicy.registryClients=[{"podSelector": {"matchLabels": {"app": "ci"}}}]',
        "--set-json", 'networkPolicy.kubernetesApi.cidrs=["10.96.0.1/32"]',
    ])
    policies = by_kind(objects, "NetworkPolicy")
    router, runtime, registry, autoscaler = (component(objects, c) for c in ("router", "runtime", "registry", "autoscaler"))
    prometheus, elsewhere = pod("monitoring", {"app": "prometheus"}), pod("kube-system", {"app": "prometheus"})
    # The registry's /metrics (issue 19) is on its API port, behind the reader token.
    for destination, port in ((runtime, 8080), (router, 8000), (autoscaler, 9102), (registry, 5000)):
        assert allowed(policies, prometheus, destination, port)
        assert not allowed(policies, elsewhere, destination, port)
    assert not allowed(policies, prometheus, router, 8001)
    assert allowed(policies, pod("frontend"), router, 8000) and not allowed(policies, pod("kube-system"), router, 8000)
    assert allowed(policies, pod("ml", {"app": "ci"}), registry, 5000) and not allowed(policies, pod("frontend", {"app": "ci"}), registry, 5000)
    assert allowed(policies, autoscaler, endpoint("10.96.0.1"), 443) and not allowed(policies, autoscaler, endpoint("10.96.0.2"), 443)


def test_network_policies_reach_what_lies_outside_the_release():
    objects = render(VALUE_SETS["no-autoscaler"] + ["--set", "autoscaler.enabled=true", "--set", "autoscaler.prometheus.url=http://prometheus.monitoring:9090"])
    policies = by_kind(objects, "NetworkPolicy")
    runtime, autoscaler = component(objects, "runtime"), component(objects, "autoscaler")
    outside = endpoint("10.0.7.7")
    assert allowed(policies, runtime, outside, 5000) and not allowed(policies, runtime, outside, 5001)
    assert allowed(policies, autoscaler, outside, 9090) and not allowed(policies, autoscaler, component(objects, "runtime"), 8080)
    objects = render(VALUE_SETS["external-postgres"])
    policies = by_kind(objects, "NetworkPolicy")
    assert allowed(policies, component(objects, "registry"), outside, 5432) and not allowed(policies, component(objects, "registry"), outside, 5433)


def test_network_policies_can_be_turned_off():
    assert by_kind(render(["--set", "networkPolicy.enabled=false"]), "NetworkPolicy") == []


def test_network_policies_for_shared_state_and_s3():
    # The router reaches an external registry (shared state) on its port, and nothing else.
    objects = render(VALUE_SETS["no-autoscaler"])
    policies = by_kind(objects, "NetworkPolicy")
    router, outside = component(objects, "router"), endpoint("10.0.7.7")
    assert allowed(policies, router, outside, 5000) and not allowed(policies, router, outside, 5001)
    # Without shared state the router never calls the registry.
    objects = render(VALUE_SETS["local-router-state"])
    policies = by_kind(objects, "NetworkPolicy")
    assert not allowed(policies, component(objects, "router"), component(objects, "registry"), 5000)
    # S3: the endpoint's port (MinIO here), 443 for AWS (and STS, for IRSA); nothing else.
    objects = render(VALUE_SETS["stateless"])
    policies = by_kind(objects, "NetworkPolicy")
    registry = component(objects, "registry")
    assert allowed(policies, registry, outside, 9000) and allowed(policies, registry, outside, 5432)
    assert not allowed(policies, registry, outside, 443) and not allowed(policies, registry, outside, 80)
    objects = render(VALUE_SETS["irsa"])
    policies = by_kind(objects, "NetworkPolicy")
    registry = component(objects, "registry")
    assert allowed(policies, registry, outside, 443) and not allowed(policies, registry, outside, 9000)
    # networkPolicy.egress.s3 replaces the default rule.
    objects = render(VALUE_SETS["irsa"] + ["--set-json", 'networkPolicy.egress.s3=[{"to": [{"ipBlock": {"cidr": "10.0.7.0/24"}}], "ports": [{"port": 443}]}]'])
    policies = by_kind(objects, "NetworkPolicy")
    registry = component(objects, "registry")
    assert allowed(policies, registry, outside, 443) and not allowed(policies, registry, endpoint("10.0.8.7"), 443)


# Production modes (issue 19): stateless registry, shared router state, registry metrics -------

def registry_workload(objects):
    """(kind, the registry's object, its container, its pod spec)."""
    (workload,) = [o for o in workloads(objects) if o["metadata"]["name"] == "demo-weir-registry"]
    spec = workload["spec"]["template"]["spec"]
    return workload["kind"], workload, spec["containers"][0], spec


def registry_accounts(objects):
    """The registry's ServiceAccounts (the autoscaler has its own)."""
    return [a for a in by_kind(objects, "ServiceAccount") if a["metadata"]["name"] != "demo-weir-autoscaler"]


def env_of(container_spec):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container_spec.get("env", [])}


def test_postgres_and_s3_make_the_registry_a_stateless_deployment():
    objects = render(VALUE_SETS["stateless"])
    kind, registry, c, spec = registry_workload(objects)
    assert kind == "Deployment" and by_kind(objects, "StatefulSet") == []
    assert registry["spec"]["replicas"] == 2
    assert registry["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    # Nothing on disk but scratch space: no claim anywhere, / read-only, /tmp an emptyDir.
    assert "volumeClaimTemplates" not in registry["spec"]
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim"]
    assert not [v for v in spec["volumes"] if "persistentVolumeClaim" in v]
    assert {m["mountPath"]: m["name"] for m in c["volumeMounts"]} == {"/tmp": "tmp", "/etc/weir/identities": "identities"}
    assert {"name": "tmp", "emptyDir": {}} in spec["volumes"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert "--artifacts=s3://weir-models/prod" in c["args"] and "--db-pool-size=8" in c["args"]
    assert "--tokens=/etc/weir/identities/identities.toml" in c["args"]
    # The credentials by reference; the endpoint and region are plain settings.
    assert env_of(c) == {
        "WEIR_DB": {"secretKeyRef": {"name": "my-database", "key": "database-url"}},
        "AWS_ENDPOINT_URL": "http://minio.storage:9000",
        "AWS_ALLOW_HTTP": "true",
        "AWS_ACCESS_KEY_ID": {"secretKeyRef": {"name": "my-s3", "key": "AWS_ACCESS_KEY_ID"}},
        "AWS_SECRET_ACCESS_KEY": {"secretKeyRef": {"name": "my-s3", "key": "AWS_SECRET_ACCESS_KEY"}},
    }
    assert not [a for a in c["args"] if "AWS" in a or "my-s3" in a or "my-database" in a]
    # No IRSA asked: no ServiceAccount, the API token stays unmounted.
    assert registry_accounts(objects) == [] and "serviceAccountName" not in spec
    assert spec["automountServiceAccountToken"] is False
    (pdb,) = [p for p in by_kind(objects, "PodDisruptionBudget") if p["metadata"]["name"] == "demo-weir-registry"]
    assert pdb["spec"]["selector"]["matchLabels"] == registry["spec"]["selector"]["matchLabels"]
    # The Service finds the Deployment's pods.
    (service,) = [s for s in by_kind(objects, "Service") if s["metadata"]["name"] == "demo-weir-registry"]
    assert service["spec"]["selector"].items() <= registry["spec"]["template"]["metadata"]["labels"].items()
    # Replicas and pool size as asked.
    _, registry, c, _ = registry_workload(render(VALUE_SETS["stateless"] + ["--set", "registry.replicas=3", "--set", "registry.database.poolSize=20"]))
    assert registry["spec"]["replicas"] == 3 and "--db-pool-size=20" in c["args"]
    _, registry, _, _ = registry_workload(render(VALUE_SETS["stateless"] + ["--set", "registry.replicas=1"]))
    assert registry["spec"]["replicas"] == 1


def test_irsa_gives_the_registry_an_annotated_service_account_and_no_static_keys():
    objects = render(VALUE_SETS["irsa"])
    kind, _, c, spec = registry_workload(objects)
    assert kind == "Deployment"
    (account,) = registry_accounts(objects)
    assert account["metadata"]["name"] == "demo-weir-registry" == spec["serviceAccountName"]
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/weir-registry"}
    # EKS's webhook projects its own token (audience sts.amazonaws.com) whatever these say: the
    # Kubernetes API token is never mounted.
    assert account["automountServiceAccountToken"] is False and spec["automountServiceAccountToken"] is False
    env = env_of(c)
    assert env["AWS_REGION"] == "eu-west-1"
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP"} & set(env)
    assert "--artifacts=s3://weir-models" in c["args"]
    # The password-bearing URL the chart was given travels only through its Secret.
    assert env["WEIR_DB"] == {"secretKeyRef": {"name": "demo-weir-registry", "key": "database-url"}}
    # Other modes create no ServiceAccount.
    for name in ("canary-10", "stateless", "s3-sqlite"):
        assert registry_accounts(render(VALUE_SETS[name])) == [], name


@pytest.mark.parametrize("name, artifacts, database", [
    ("s3-sqlite", "s3://weir-models", "sqlite:///data/registry.db"),
    ("external-postgres", "/data/artifacts", None),
    ("canary-10", "/data/artifacts", "sqlite:///data/registry.db"),
])
def test_sqlite_or_the_artifacts_volume_keep_one_statefulset_pod(name, artifacts, database):
    objects = render(VALUE_SETS[name])
    kind, registry, c, spec = registry_workload(objects)
    assert kind == "StatefulSet" and registry["spec"]["replicas"] == 1
    assert [t["metadata"]["name"] for t in registry["spec"]["volumeClaimTemplates"]] == ["data"]
    assert {"name": "data", "mountPath": "/data"} in c["volumeMounts"]
    assert f"--artifacts={artifacts}" in c["args"]
    env = env_of(c)
    if database:
        assert env["WEIR_DB"] == database
        assert not [a for a in c["args"] if a.startswith("--db-pool-size")]
    else:
        assert "--db-pool-size=8" in c["args"]
    # S3 uploads get scratch space; the local mode is unchanged.
    assert ({"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]) == artifacts.startswith("s3://")
    assert ("AWS_ENDPOINT_URL" in env) == artifacts.startswith("s3://")
    assert not [p for p in by_kind(objects, "PodDisruptionBudget") if p["metadata"]["name"] == "demo-weir-registry"]


def test_routers_share_their_state_through_the_registry_with_an_admin_token_file():
    objects = render([])
    router, spec = container(objects, "Deployment", "demo-weir-router")
    assert "--registry=http://demo-weir-registry:5000" in router["args"]
    assert "--registry-token-file=/etc/weir/registry-token/token" in router["args"]
    # The key names the release: two releases on one registry keep their routes apart.
    assert "--state-key=routes/ml/demo-weir" in router["args"]
    # The state file stays, as the local copy used while the registry is away.
    assert "--state=/var/lib/weir/routes.state.json" in router["args"]
    assert {"name": "state", "emptyDir": {}} in spec["volumes"]
    assert mounted_secret(spec, router, "/etc/weir/registry-token") == ("demo-weir-registry-identities", {"router-token": "token"})
    assert "env" not in router
    # Local state: the state file alone, no registry, no router user generated.
    objects = render(VALUE_SETS["local-router-state"])
    router, spec = container(objects, "Deployment", "demo-weir-router")
    assert "--state=/var/lib/weir/routes.state.json" in router["args"]
    assert not [a for a in router["args"] if a.startswith(("--registry", "--state-key"))]
    assert {"name": "state", "emptyDir": {}} in spec["volumes"]
    data = generated(objects, "demo-weir-registry-identities")
    assert "router-token" not in data and [u["name"] for u in tomllib.loads(data["identities.toml"])["user"]] == ["admin", "runtime"]
    # An anonymous registry: shared state without a token.
    router, spec = container(render(VALUE_SETS["anonymous"]), "Deployment", "demo-weir-router")
    assert "--registry=http://demo-weir-registry:5000" in router["args"]
    assert not [a for a in router["args"] if a.startswith("--registry-token-file")]
    assert "registry-token" not in {v["name"] for v in spec["volumes"]}
    # An external registry: its URL; a token only when given one (as for the runtime pods).
    router, _ = container(render(VALUE_SETS["no-autoscaler"]), "Deployment", "demo-weir-router")
    assert "--registry=http://registry.ml:5000" in router["args"]
    assert not [a for a in router["args"] if a.startswith("--registry-token-file")]
    objects = render(VALUE_SETS["no-autoscaler"] + ["--set", "router.sharedState.tokenSecret.name=ext-admin"])
    router, spec = container(objects, "Deployment", "demo-weir-router")
    assert mounted_secret(spec, router, "/etc/weir/registry-token") == ("ext-admin", {"token": "token"})
    # A tokenSecret of the user's: no router user generated beside it.
    objects = render(["--set", "router.sharedState.tokenSecret.name=mine"])
    assert "router-token" not in generated(objects, "demo-weir-registry-identities")


@pytest.mark.parametrize("name, credentials", [
    ("stateless", {"name": "demo-weir-registry-identities", "key": "runtime-token"}),
    ("own-secrets", {"name": "my-runtime-token", "key": "token"}),
    ("anonymous", None),
])
def test_the_registry_service_monitor_presents_a_reader_token_from_a_secret(name, credentials):
    objects = render(VALUE_SETS[name] + ["--set", "serviceMonitor.enabled=true"])
    monitors = {m["metadata"]["name"]: m["spec"] for m in by_kind(objects, "ServiceMonitor")}
    assert set(monitors) == {"demo-weir", "demo-weir-registry"}
    # The release-wide one skips the registry, which would answer it 401.
    assert {"key": "app.kubernetes.io/component", "operator": "NotIn", "values": ["router-admin", "registry"]} in monitors["demo-weir"]["selector"]["matchExpressions"]
    registry = monitors["demo-weir-registry"]
    assert registry["selector"]["matchLabels"]["app.kubernetes.io/component"] == "registry"
    (endpoint_spec,) = registry["endpoints"]
    assert endpoint_spec["port"] == "http" and endpoint_spec["path"] == "/metrics"
    if credentials:
        assert endpoint_spec["authorization"] == {"type": "Bearer", "credentials": credentials}
    else:
        assert "authorization" not in endpoint_spec
    if name == "stateless":
        # The token named is the generated reader's.
        data = generated(objects, credentials["name"])
        users = {u["token_sha256"]: u for u in tomllib.loads(data["identities.toml"])["user"]}
        assert users[hashlib.sha256(data[credentials["key"]].encode()).hexdigest()]["roles"] == ["reader"]
    # An external registry is someone else's to scrape.
    objects = render(VALUE_SETS["no-autoscaler"] + ["--set", "serviceMonitor.enabled=true"])
    assert [m["metadata"]["name"] for m in by_kind(objects, "ServiceMonitor")] == ["demo-weir"]


def test_the_registry_metrics_answer_the_service_monitors_reader_token(tmp_path):
    """The token the registry's ServiceMonitor sends reads /metrics on a real registry loading
    the generated identities; no token, or a wrong one, is refused."""
    objects = render(["--set", "serviceMonitor.enabled=true"])
    (monitor,) = [m for m in by_kind(objects, "ServiceMonitor") if m["metadata"]["name"] == "demo-weir-registry"]
    reference = monitor["spec"]["endpoints"][0]["authorization"]["credentials"]
    data = generated(objects, reference["name"])
    identities = tmp_path / "identities.toml"
    identities.write_text(data["identities.toml"])
    registry = Registry(database_url("sqlite", tmp_path), tmp_path, "--tokens", str(identities))
    try:
        wait_until_ok(f"{registry.url}/health", registry.process, 30)
        request = urllib.request.Request(f"{registry.url}/metrics")
        request.add_header("Authorization", f"Bearer {data[reference['key']]}")
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 200
            assert "weir_build_info" in answer.read().decode()
        assert call(f"{registry.url}/metrics")[0] == 401
        assert call(f"{registry.url}/metrics", "not-a-token")[0] == 401
    finally:
        registry.stop()


# gRPC (issue 21) ----------------------------------------------------------------------------------

def service_ports(objects, name):
    for s in by_kind(objects, "Service"):
        if s["metadata"]["name"] == name:
            return {p["name"]: p for p in s["spec"]["ports"]}
    raise AssertionError(f"no Service {name}")


def test_grpc_is_off_unless_enabled():
    objects = render([])
    for s in by_kind(objects, "Service"):
        assert "grpc" not in {p["name"] for p in s["spec"]["ports"]}, s["metadata"]["name"]
    for o in workloads(objects):
        for c in o["spec"]["template"]["spec"]["containers"]:
            assert not any(a.startswith("--grpc-port") for a in c["args"]), c["args"]
    assert "grpc_port" not in config_map(objects, "-router", "routes.toml")


def test_grpc_ports_are_named_grpc_on_the_runtime_and_router_services(tmp_path):
    objects = render(VALUE_SETS["grpc"])
    for version in ("stable", "canary"):
        ports = service_ports(objects, f"demo-weir-iris-{version}")
        assert ports["grpc"] == {"name": "grpc", "port": 9000, "targetPort": "grpc"}
        assert ports["http"]["port"] == 8080
        runtime, _ = container(objects, "Deployment", f"demo-weir-iris-{version}")
        assert "--grpc-port=9000" in runtime["args"]
        assert {"name": "grpc", "containerPort": 9000} in runtime["ports"]
        # gRPC probes (grpc.health.v1): "" follows readiness, "live" liveness.
        assert runtime["readinessProbe"]["grpc"] == {"port": 9000}
        assert runtime["livenessProbe"]["grpc"] == {"port": 9000, "service": "live"}
        assert "httpGet" not in runtime["readinessProbe"]
    router_ports = service_ports(objects, "demo-weir-router")
    assert router_ports["grpc"] == {"name": "grpc", "port": 9090, "targetPort": "grpc"}
    assert "grpc" not in service_ports(objects, "demo-weir-router-admin")
    router, _ = container(objects, "Deployment", "demo-weir-router")
    assert "--grpc-port=9090" in router["args"]
    assert {"name": "grpc", "containerPort": 9090} in router["ports"]
    # The routes file names the runtime's gRPC port, and weir's own loader takes it.
    routes = tomllib.loads(config_map(objects, "-router", "routes.toml"))
    assert routes["settings"]["grpc_port"] == 9000
    checked = weir_check(objects, "-router", "routes.toml", "route", tmp_path)
    assert checked.stdout.strip() == "iris: stable=90% canary=10%"


def test_grpc_probes_are_optional():
    objects = render(["--set", "runtime.grpc.enabled=true"])
    runtime, _ = container(objects, "Deployment", "demo-weir-iris-stable")
    assert "--grpc-port=9000" in runtime["args"]
    assert runtime["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert runtime["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    # The runtime alone: the router serves no gRPC and its Service has no such port.
    assert "grpc" not in service_ports(objects, "demo-weir-router")


def test_network_policies_let_grpc_through_the_router_only():
    objects = render(VALUE_SETS["grpc"])
    policies = by_kind(objects, "NetworkPolicy")
    router, runtime, autoscaler = (component(objects, c) for c in ("router", "runtime", "autoscaler"))
    client = pod("frontend", {"app": "web"})
    for source, destination, port in [(client, router, 9090), (router, runtime, 9000)]:
        assert allowed(policies, source, destination, port), (source["labels"], destination["labels"], port)
    for source, destination, port in [(client, runtime, 9000), (autoscaler, runtime, 9000), (client, router, 9000), (router, runtime, 9090)]:
        assert not allowed(policies, source, destination, port), (source["labels"], destination["labels"], port)
    # Without gRPC, neither port is open.
    plain = by_kind(render([]), "NetworkPolicy")
    assert not allowed(plain, client, router, 9090) and not allowed(plain, router, runtime, 9000)


@pytest.mark.parametrize("values, expected", [
    (["--set", "router.grpc.enabled=true"], "router.grpc.enabled needs runtime.grpc.enabled"),
    (["--set", "runtime.grpc.enabled=true", "--set", "router.grpc.enabled=true", "--set", "router.grpc.port=8001"], "router.grpc.port 8001 is also router.admin.port"),
    (["--set", "router.grpc.port=8000"], "port"),
    (["--set", "runtime.grpc.port=0"], "port"),
    (["--set", "runtime.grpc.probe=true"], "probe"),
])
def test_bad_grpc_values_are_refused_with_a_message(values, expected):
    result = helm("template", "demo", str(CHART), *values, check=False)
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr
