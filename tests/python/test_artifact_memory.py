"""The registry's memory does not grow with an artifact: a 300 MiB file is uploaded, registered
as a version (copied into content-addressed storage) and downloaded both ways through the real
`weir registry` binary, and its peak resident memory (VmHWM) stays under a bound far below the
file's size. The test streams too: it never holds the file, it generates and hashes chunks."""
import hashlib
import http.client
import json
import urllib.parse

from conftest import Registry, database_url

MIB = 1 << 20
SIZE = 300 * MIB
CHUNK = MIB
# Well under the 300 MiB file (and the Helm pod's 512 MiB limit); measured 33 MiB (22 MiB at start).
PEAK_BOUND = 150 * MIB


def chunks():
    """SIZE bytes, one MiB at a time, each different (so nothing deduplicates or compresses)."""
    for index in range(SIZE // CHUNK):
        yield hashlib.sha256(str(index).encode()).digest() * (CHUNK // 32)


def expected_sha256():
    digest = hashlib.sha256()
    for chunk in chunks():
        digest.update(chunk)
    return digest.hexdigest()


def connection(url):
    parsed = urllib.parse.urlparse(url)
    return http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=300)


def upload(url, path):
    conn = connection(url)
    conn.putrequest("PUT", f"/api/2.0/mlflow-artifacts/artifacts/{path}")
    conn.putheader("X-Weir-User", "alice")
    conn.putheader("Content-Length", str(SIZE))
    conn.endheaders()
    for chunk in chunks():
        conn.send(chunk)
    answer = conn.getresponse()
    body = answer.read()
    conn.close()
    assert answer.status == 200, body


def download_sha256(url, path):
    """The sha256 and size of an artifact, read a MiB at a time."""
    conn = connection(url)
    conn.request("GET", f"/api/2.0/mlflow-artifacts/artifacts/{path}", headers={"X-Weir-User": "alice"})
    answer = conn.getresponse()
    assert answer.status == 200, answer.read(4096)
    assert answer.getheader("Content-Length") == str(SIZE), "a streamed download still says its size"
    digest, size = hashlib.sha256(), 0
    while True:
        chunk = answer.read(CHUNK)
        if not chunk:
            break
        digest.update(chunk)
        size += len(chunk)
    conn.close()
    return digest.hexdigest(), size


def call(url, method, path, body):
    conn = connection(url)
    conn.request(method, path, body=json.dumps(body), headers={"X-Weir-User": "alice"})
    answer = conn.getresponse()
    text = answer.read()
    conn.close()
    assert answer.status == 200, text
    return json.loads(text)


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def test_a_300_mib_artifact_moves_through_the_registry_in_bounded_memory(tmp_path):
    registry = Registry(database_url("sqlite", tmp_path), tmp_path)
    try:
        pid = registry.process.pid
        before = status_kib(pid, "VmHWM")
        upload(registry.url, "big/model/weights.bin")
        assert download_sha256(registry.url, "big/model/weights.bin") == (expected_sha256(), SIZE)

        # Registering copies the file into the versions' storage; its blob streams back out.
        call(registry.url, "POST", "/api/2.0/mlflow/registered-models/create", {"name": "big"})
        created = call(registry.url, "POST", "/api/2.0/mlflow/model-versions/create",
                       {"name": "big", "source": "mlflow-artifacts:/big/model"})
        version = created["model_version"]["version"]
        resolved = call(registry.url, "GET", f"/api/2.0/weir/resolve?name=big&version={version}", None)
        assert resolved["files"] == ["weights.bin"], resolved
        assert download_sha256(registry.url, f"{resolved['artifact_path']}/weights.bin") == (expected_sha256(), SIZE)

        peak = status_kib(pid, "VmHWM") * 1024
        print(f"weir registry VmHWM: {before} KiB at start, {peak // 1024} KiB after moving 3 x 300 MiB")
        assert peak < PEAK_BOUND, f"peak RSS {peak // MIB} MiB for a {SIZE // MIB} MiB artifact"
    finally:
        registry.stop()


def test_an_upload_declared_over_the_limit_is_refused_before_its_body(tmp_path):
    registry = Registry(database_url("sqlite", tmp_path), tmp_path)
    try:
        conn = connection(registry.url)
        conn.putrequest("PUT", "/api/2.0/mlflow-artifacts/artifacts/huge/file.bin")
        conn.putheader("X-Weir-User", "alice")
        conn.putheader("Content-Length", str((1 << 30) + 1))
        conn.endheaders()
        answer = conn.getresponse()
        body = json.loads(answer.read())
        conn.close()
        assert answer.status == 413, body
        assert body["error_code"] == "RESOURCE_EXHAUSTED", body
        assert "1073741824" in body["message"], body
        listed = call(registry.url, "GET", "/api/2.0/mlflow-artifacts/artifacts?path=huge", None)
        assert listed["files"] == [], "nothing of a refused upload is listed"
    finally:
        registry.stop()
