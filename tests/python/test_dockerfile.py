"""The Dockerfile, checked without building it (containers cannot run on the test machines):
hadolint's rules, pinned base images, a build context without build output, the ONNX Runtime
wheel checked against a recorded sha256 of the version the tests use, and a runtime stage that
holds every library the binary and ONNX Runtime link against (read with ldd)."""
import pathlib
import re
import subprocess
import sys

import pytest

from conftest import ROOT, weir_binary

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
VENV_BIN = pathlib.Path(sys.executable).parent

# What debian:12-slim holds without installing anything: glibc (libc, libm, libdl, librt,
# libpthread, the loader) and libgcc_s (both Essential packages).
BASE_IMAGE_LIBRARIES = {
    "linux-vdso.so.1",
    "libc.so.6",
    "libm.so.6",
    "libdl.so.2",
    "librt.so.1",
    "libpthread.so.0",
    "libgcc_s.so.1",
    "ld-linux-x86-64.so.2",
}
# Libraries that need a package installed by name in the runtime stage.
PACKAGED_LIBRARIES = {"libstdc++.so.6": "libstdc++6"}
# bookworm's glibc: a binary asking for a newer symbol version would not start in the image.
BASE_IMAGE_GLIBC = (2, 36)


def dockerfile():
    return DOCKERFILE.read_text()


def stages(text):
    """The Dockerfile's stages as (FROM line, body)."""
    parts = re.split(r"^(FROM .*)$", text, flags=re.M)
    return list(zip(parts[1::2], parts[2::2]))


def test_hadolint_passes():
    result = subprocess.run(
        [str(VENV_BIN / "hadolint"), str(DOCKERFILE)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_what_it_should():
    """The linter is not silently passing everything: an unpinned image and a bare `cd` fail."""
    bad = "FROM debian:latest\nRUN cd /tmp && echo hi\n"
    result = subprocess.run(
        [str(VENV_BIN / "hadolint"), "-"], input=bad, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "DL3007" in result.stdout, result.stdout


def test_base_images_are_pinned_to_exact_releases():
    text = dockerfile()
    defaults = dict(re.findall(r"^ARG (\w+_IMAGE)=(\S+)$", text, flags=re.M))
    froms = re.findall(r"^FROM (\S+)", text, flags=re.M)
    assert len(froms) == 3
    for image in froms:
        resolved = defaults.get(image.strip("${}"), image)
        name, _, tag = resolved.partition(":")
        assert tag and "latest" not in tag, f"{image} is not pinned"
        assert re.search(r"\d+\.\d+", tag), f"{resolved}: pin an exact release, not a moving tag"


def test_dependencies_build_in_a_cached_layer_from_the_lockfile():
    build = stages(dockerfile())[0][1]
    assert "--mount=type=cache,target=/usr/local/cargo/registry" in build
    assert "--mount=type=cache,target=/src/target" in build
    assert "--locked" in build, "the image must build what Cargo.lock says"


def test_the_build_context_leaves_out_build_output_and_history():
    patterns = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    for heavy in ["target/", ".venv/", ".git/"]:
        assert heavy in patterns, heavy
    # Nothing the build needs is left out: every workspace member and the lockfile.
    members = re.search(r"members = \[(.*?)\]", (ROOT / "Cargo.toml").read_text(), re.S)
    for member in re.findall(r'"([^"]+)"', members.group(1)):
        assert not any(member.startswith(p.rstrip("/")) for p in patterns), member
    assert "Cargo.lock" not in patterns and "src/" not in patterns


def test_onnxruntime_wheel_is_checked_against_a_recorded_hash_of_the_tested_version():
    text = dockerfile()
    pinned = re.search(r"onnxruntime==([\d.]+) --hash=sha256:([0-9a-f]{64})", text)
    assert pinned, "the wheel must be pinned with its sha256"
    assert "--require-hashes" in text
    tested = re.search(r"^onnxruntime==([\d.]+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert pinned.group(1) == tested.group(1), "the image's ONNX Runtime differs from the tested one"
    assert f"libonnxruntime.so.{pinned.group(1)}" in text


def linked_libraries(path):
    result = subprocess.run(["ldd", str(path)], capture_output=True, text=True, check=True)
    names = set()
    for line in result.stdout.splitlines():
        name = line.strip().split(" ")[0]
        names.add(pathlib.PurePath(name).name)
    return names


def onnxruntime_library():
    found = sorted(VENV_BIN.parent.glob("lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.*"))
    assert found, "the venv has no ONNX Runtime"
    return found[0]


@pytest.mark.parametrize("what", ["weir", "libonnxruntime"])
def test_runtime_stage_holds_every_linked_library(what):
    path = weir_binary() if what == "weir" else onnxruntime_library()
    runtime = stages(dockerfile())[-1][1]
    installed = set(re.findall(r"apt-get install [^\n]*?--no-install-recommends ([^\n&]+)", runtime)[0].split())
    for library in linked_libraries(path):
        if library in BASE_IMAGE_LIBRARIES:
            continue
        package = PACKAGED_LIBRARIES.get(library)
        assert package, f"{what} links {library}, which the runtime image does not have"
        assert package in installed, f"{what} needs {library}: install {package} in the runtime stage"


def test_binary_asks_for_no_newer_glibc_than_the_image_has():
    symbols = subprocess.run(
        ["objdump", "-T", str(weir_binary())], capture_output=True, text=True, check=True
    ).stdout
    versions = {tuple(int(p) for p in v.split(".")) for v in re.findall(r"GLIBC_([\d.]+)", symbols)}
    assert versions, "no glibc symbol versions read"
    assert max(versions) <= BASE_IMAGE_GLIBC, max(versions)


def test_runtime_stage_copies_only_the_binary_and_the_library():
    runtime = stages(dockerfile())[-1][1]
    copies = re.findall(r"^COPY (.*)$", runtime, flags=re.M)
    assert copies == [
        "--from=build /weir /usr/local/bin/weir",
        "--from=onnxruntime /libonnxruntime.so /usr/local/lib/libonnxruntime.so",
    ]
    assert re.search(r"^USER 65532:65532$", runtime, flags=re.M), "the image must not run as root"
