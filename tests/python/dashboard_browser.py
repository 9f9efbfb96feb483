"""Helpers for the dashboard's browser tests: Debian's chromium driven by Playwright, the W3C Nu
Html Checker (vnu.jar) over rendered pages, screenshots kept as test artifacts, and the serving
processes (`weir serve` replicas behind a real `weir route`) the serving page watches."""
import contextlib
import io
import json
import os
import pathlib
import re
import shutil
import subprocess
import time

from conftest import ROOT, MODELS, Server, weir_binary

# The system browser, never a downloaded build: `playwright install` is never run.
CHROMIUM = pathlib.Path(os.environ.get("WEIR_CHROMIUM", "/usr/bin/chromium"))
# Headless in a container as root, and nothing that reaches past loopback on its own.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-quic", "--no-first-run",
]
VNU = ROOT / "tests" / "browser" / "node_modules" / "vnu-jar" / "build" / "dist" / "vnu.jar"
SCREENSHOTS = ROOT / "target" / "dashboard-screenshots"
# The README's pictures: refreshed only on request (WEIR_UPDATE_SCREENSHOTS=1), the lead commits.
README_IMAGES = ROOT / "docs" / "images"

# One identity per role, plus cody: a creator who holds submitter AND approver, so the refusal of
# approving one's own version cannot come from a missing role.
USERS = {
    "rita": ["reader"],
    "sam": ["reader", "submitter"],
    "avery": ["reader", "approver"],
    "ada": ["admin"],
    "cody": ["reader", "submitter", "approver"],
}


def token(name):
    return f"{name}-token"


def identities_toml():
    return "".join(
        f'[[user]]\nname = "{name}"\ntoken = "{token(name)}"\nroles = {json.dumps(roles)}\n\n'
        for name, roles in USERS.items()
    )


def launch(playwright):
    assert CHROMIUM.is_file(), f"{CHROMIUM} is missing: run `make setup` (it installs Debian's chromium)"
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


def new_context(browser, width=1280, height=900):
    """A fresh browser context (no cookie); a missing element fails in 15 s rather than 30."""
    context = browser.new_context(viewport={"width": width, "height": height})
    context.set_default_timeout(15_000)
    return context


def sign_in(page, url, name_or_token, *, raw=False):
    """Signs in through the form at /ui/sign-in; the response the form's POST led to."""
    secret = name_or_token if raw else token(name_or_token)
    page.goto(f"{url}/ui/sign-in")
    page.locator("form input[name=token]").fill(secret)
    with page.expect_navigation():
        page.locator("form:has(input[name=token]) button[type=submit], form:has(input[name=token]) button:not([type])").first.click()
    return page


def csrf_of(page):
    """The CSRF token the page's forms carry (hidden input `csrf`)."""
    field = page.locator("input[name=csrf]").first
    assert field.count() == 1, f"no csrf field on {page.url}"
    return field.get_attribute("value")


def post_form(page, url, path, fields):
    """POSTs a urlencoded form from the page's context (its cookie) as the browser would: same
    Origin, the page's CSRF token."""
    return page.request.post(
        f"{url}{path}", form={"csrf": csrf_of(page), **fields},
        headers={"Origin": url, "Referer": page.url}, max_redirects=0,
    )


def screenshot(page, name, *, readme=None):
    """Saves a full-page screenshot under target/dashboard-screenshots/ (a test artifact); with
    WEIR_UPDATE_SCREENSHOTS=1 also as docs/images/<readme> for the README."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if readme and os.environ.get("WEIR_UPDATE_SCREENSHOTS") == "1":
        README_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, README_IMAGES / readme)
    return path


def html_errors(pages, folder):
    """Runs vnu.jar over {label: html}; the errors as "label: line N: message" strings."""
    assert VNU.is_file(), f"{VNU} is missing: run `make setup` (npm ci in tests/browser)"
    assert shutil.which("java"), "java is missing: run `make setup` (default-jre-headless)"
    folder.mkdir(parents=True, exist_ok=True)
    labels = {}
    for number, (label, html) in enumerate(pages.items()):
        path = folder / f"page-{number}.html"
        path.write_text(html)
        labels[path.name] = label
    checked = subprocess.run(
        ["java", "-jar", str(VNU), "--errors-only", "--format", "json", *[str(folder / name) for name in labels]],
        capture_output=True, text=True, timeout=300,
    )
    # vnu writes its report on stderr; exit 1 means "errors found", anything else is a crash.
    assert checked.returncode in (0, 1), f"vnu.jar failed ({checked.returncode}): {checked.stderr[-2000:]}"
    errors = []
    for message in json.loads(checked.stderr)["messages"]:
        if message.get("type") == "info":
            continue
        label = labels.get(message.get("url", "").rsplit("/", 1)[-1], message.get("url"))
        errors.append(f"{label}: line {message.get('lastLine')}: {message.get('message')} [{message.get('extract', '').strip()}]")
    return errors


@contextlib.contextmanager
def mlflow_as(url, name):
    """The official mlflow client pointed at the registry as `name` (MLFLOW_TRACKING_TOKEN), or
    with no credentials when `name` is None (a registry without identities)."""
    import mlflow

    # set_tracking_uri / set_registry_uri also export MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI;
    # all of it is put back, or later tests' clients would reach this (stopped) registry.
    names = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved = {key: os.environ.get(key) for key in names}
    if name is None:
        os.environ.pop("MLFLOW_TRACKING_TOKEN", None)
    else:
        os.environ["MLFLOW_TRACKING_TOKEN"] = token(name)
    mlflow.set_tracking_uri(url)
    mlflow.set_registry_uri(url)
    try:
        yield mlflow
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def log_run(url, name, experiment, params, losses, artifacts=()):
    """A run logged with mlflow.start_run / log_param / log_metric over steps as `name`; its run
    id, experiment id and the link the client printed ("View run … at: URL")."""
    printed = io.StringIO()
    with mlflow_as(url, name) as mlflow:
        mlflow.set_experiment(experiment)
        with contextlib.redirect_stdout(printed):
            with mlflow.start_run() as run:
                for key, value in params.items():
                    mlflow.log_param(key, value)
                for step, loss in enumerate(losses):
                    mlflow.log_metric("loss", loss, step=step)
                for local, artifact_path in artifacts:
                    if pathlib.Path(local).is_dir():
                        mlflow.log_artifacts(str(local), artifact_path=artifact_path)
                    else:
                        mlflow.log_artifact(str(local), artifact_path=artifact_path)
    link = re.search(r"View run \S+ at: (\S+)", printed.getvalue())
    assert link, f"the mlflow client printed no run link: {printed.getvalue()!r}"
    return run.info.run_id, run.info.experiment_id, link.group(1)


def iris_repository(folder, version):
    """A model repository holding only iris/<version> from the test models."""
    repository = folder / f"repo-v{version}"
    shutil.copytree(MODELS / "iris" / str(version), repository / "iris" / str(version))
    return repository


class Router:
    """A real `weir route` on free loopback ports with an admin token file: `data` and `admin`
    are its two URLs."""

    def __init__(self, config, token_file):
        self.process = subprocess.Popen(
            [str(weir_binary()), "route", "--config", str(config), "--http-port", "0", "--admin-port", "0",
             "--admin-token-file", str(token_file)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        found = {}
        for _ in range(50):
            line = self.process.stdout.readline()
            if not line:
                break
            for key, pattern in (("data", r"listening on (http://[\d.]+:\d+)"), ("admin", r"admin API on (http://[\d.]+:\d+)")):
                match = re.search(pattern, line)
                if match:
                    found[key] = match.group(1)
            if len(found) == 2:
                break
        assert len(found) == 2, f"weir route did not announce both listeners: {found}"
        self.data, self.admin = found["data"], found["admin"]

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start_serving(folder, admin_token):
    """Two `weir serve` replicas (iris 1 and iris 2) behind a router at 90/10; (router, replicas,
    token file)."""
    replicas = [Server(repository=iris_repository(folder, version)) for version in (1, 2)]
    config = folder / "routes.toml"
    config.write_text(
        '[[route]]\nmodel = "iris"\n'
        f'[[route.backend]]\nversion = "1"\nendpoints = ["{replicas[0].url}"]\nweight = 90\n'
        f'[[route.backend]]\nversion = "2"\nendpoints = ["{replicas[1].url}"]\nweight = 10\n'
    )
    token_file = folder / "router-token"
    token_file.write_text(admin_token)
    return Router(config, token_file), replicas, token_file


def canary_status(model, admin_url, token_file):
    """`weir canary status MODEL --router ADMIN_URL --token-file F --output json`, parsed."""
    shown = subprocess.run(
        [str(weir_binary()), "canary", "status", model, "--router", admin_url, "--token-file", str(token_file),
         "--output", "json"],
        capture_output=True, text=True, timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def wait_for(what, seconds, done):
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
