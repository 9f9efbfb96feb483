"""The web dashboard (issue 20) in a real browser: Debian's chromium driven by Playwright against a
real `weir registry` with identities, runs logged by the official mlflow client, and (for the
serving page) a real `weir route` in front of two `weir serve` replicas. Sign-in and its cookie,
MLflow's run links, run comparison, approvals (refused for a version's creator even when posted
directly), alias moves and the audit trail, the canary control agreeing with `weir canary status`,
and every page's HTML through the W3C Nu Html Checker, at 360 px and by keyboard. Screenshots are
kept in target/dashboard-screenshots/."""
import html
import json
import pathlib
import re
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request

import pytest

from conftest import MODELS, Registry, database_url
from dashboard_browser import (
    canary_status, html_errors, identities_toml, log_run, mlflow_as, new_context, post_form, screenshot, sign_in,
    start_serving, token, wait_for,
)


class Seeded:
    """What the module's registry holds: two runs to compare (they differ in `lr` only), and model
    `iris` with version 1 created by cody (submitter + approver) and version 2 by sam."""


def api(url, name, method, path, body=None):
    """weir's own API (/api/2.0/weir/…) as `name`."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}/api/2.0/weir/{path}", data=data, method=method)
    if name is not None:
        request.add_header("Authorization", f"Bearer {token(name)}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def register_iris_version(url, name, version_folder):
    """A run by `name` holding an iris model.onnx folder, registered as a version of iris by `name`."""
    run_id, _, _ = log_run(url, name, "iris-training", {"source": version_folder.name}, [0.5, 0.3],
                           artifacts=[(version_folder, "model")])
    with mlflow_as(url, name) as mlflow:
        client = mlflow.MlflowClient(tracking_uri=url, registry_uri=url)
        try:
            client.create_registered_model("iris")
        except mlflow.exceptions.MlflowException:
            pass  # the first creator made it
        run = client.get_run(run_id)
        return client.create_model_version("iris", source=f"{run.info.artifact_uri}/model", run_id=run_id).version


@pytest.fixture(scope="module")
def seeded():
    folder = pathlib.Path(tempfile.mkdtemp(prefix="weir-dashboard-"))
    identities = folder / "identities.toml"
    identities.write_text(identities_toml())
    registry = Registry(database_url("sqlite", folder), folder, "--tokens", str(identities))
    try:
        notes = folder / "notes.txt"
        notes.write_text("trained on the <march> data & checked\n")
        data = Seeded()
        data.url = registry.url
        data.folder = folder
        data.run_a, data.experiment, data.link_a = log_run(
            registry.url, "sam", "churn-training", {"lr": "0.1", "layers": "2"},
            [0.9, 0.7, 0.55, 0.42, 0.35, 0.3, 0.27, 0.25], artifacts=[(notes, None)])
        data.run_b, experiment_b, data.link_b = log_run(
            registry.url, "sam", "churn-training", {"lr": "0.01", "layers": "2"},
            [0.95, 0.85, 0.77, 0.7, 0.64, 0.6, 0.57, 0.55])
        assert experiment_b == data.experiment
        assert register_iris_version(registry.url, "cody", MODELS / "iris" / "1") == "1"
        assert register_iris_version(registry.url, "sam", MODELS / "iris" / "2") == "2"
        yield data
    finally:
        registry.stop()


@pytest.fixture
def context(chromium):
    """A fresh browser context (no cookie) per test, desktop sized."""
    browser_context = new_context(chromium)
    yield browser_context
    browser_context.close()


def signed_in(context, url, name):
    page = context.new_page()
    sign_in(page, url, name)
    assert "/ui/sign-in" not in page.url, f"{name} was not signed in: {page.url}"
    return page


def test_sign_in_sets_a_strict_http_only_cookie_and_refuses_a_wrong_token(seeded, context):
    url = seeded.url
    page = context.new_page()
    # Signed out, a page sends the visitor to the sign-in form (or refuses).
    answer = page.goto(f"{url}/ui/models")
    assert "/ui/sign-in" in page.url or answer.status == 401, (answer.status, page.url)

    sign_in(page, url, "not-a-token", raw=True)
    assert page.locator("input[name=token]").count() == 1, "a wrong token left the sign-in form"
    answer = page.goto(f"{url}/ui/models")
    assert "/ui/sign-in" in page.url or answer.status == 401, (answer.status, page.url)

    sign_in(page, url, "rita")
    assert "/ui/sign-in" not in page.url, page.url
    cookies = context.cookies(url)
    assert cookies, "signing in set no cookie"
    for cookie in cookies:
        assert cookie["httpOnly"] is True, cookie["name"]
        assert cookie["sameSite"] == "Strict", cookie["name"]
    answer = page.goto(f"{url}/ui/models")
    assert answer.status == 200 and "/ui/models" in page.url
    assert page.get_by_text("iris").first.is_visible()
    screenshot(page, "models-as-reader")

    # Where a sign-in leads stays on this site: no open redirect through `next`.
    context.clear_cookies()
    page.goto(f"{url}/ui/sign-in?next=https://example.invalid/steal")
    page.locator("input[name=token]").fill(token("rita"))
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    assert page.url.startswith(f"{url}/"), page.url

    # Signing out ends the session.
    with page.expect_navigation():
        page.locator("form[action='/ui/sign-out'] button").first.click()
    answer = page.goto(f"{url}/ui/models")
    assert "/ui/sign-in" in page.url or answer.status == 401, (answer.status, page.url)


def test_the_link_the_mlflow_client_prints_opens_the_run_with_its_metric_chart(seeded, context):
    url = seeded.url
    assert seeded.link_a == f"{url}/#/experiments/{seeded.experiment}/runs/{seeded.run_a}"
    run_page = re.compile(rf"/ui/experiments/{seeded.experiment}/runs/{seeded.run_a}$")
    # Signed out, the link asks for a token first and then lands on the run.
    page = context.new_page()
    page.goto(seeded.link_a)
    page.wait_for_url(re.compile(r"/ui/sign-in"))
    page.locator("input[name=token]").fill(token("rita"))
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(run_page)
    # Signed in, it goes straight there.
    page.goto(f"{url}/ui/")
    page.goto(seeded.link_a)
    page.wait_for_url(run_page)
    # The params, and the loss history drawn as an inline SVG chart.
    assert page.get_by_text("lr", exact=True).first.is_visible()
    assert page.get_by_text("0.1", exact=True).first.is_visible()
    chart = page.locator(".chart svg").first
    assert chart.is_visible()
    assert chart.locator("path, polyline, circle").count() >= 1, "the chart draws nothing"
    assert "loss" in page.locator("main").inner_text()
    screenshot(page, "run")

    # MLflow's other link formats land on the matching pages.
    page.goto(f"{url}/#/experiments/{seeded.experiment}")
    page.wait_for_url(re.compile(rf"/ui/experiments/{seeded.experiment}$"), timeout=10_000)
    page.goto(f"{url}/#/models/iris/versions/2")
    page.wait_for_url(re.compile(r"/ui/models/iris/versions/2$"), timeout=10_000)
    page.goto(f"{url}/#/models/iris")
    page.wait_for_url(re.compile(r"/ui/models/iris$"), timeout=10_000)


def test_two_runs_compare_with_the_differing_param_highlighted(seeded, context):
    url = seeded.url
    page = signed_in(context, url, "rita")
    page.goto(f"{url}/ui/experiments/{seeded.experiment}")
    for run_id in (seeded.run_a, seeded.run_b):
        page.locator(f"input[type=checkbox][value='{run_id}']").check()
    with page.expect_navigation():
        page.get_by_role("button", name=re.compile("compare", re.I)).click()
    assert "/ui/compare" in page.url
    chosen = urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)["runs"]
    assert sorted(chosen) == sorted([seeded.run_a, seeded.run_b])

    def row(param):
        return page.locator("tr").filter(has=page.locator("th, td").filter(has_text=re.compile(rf"^\s*{param}\s*$"))).first

    def highlighted(param):
        return row(param).evaluate("r => r.classList.contains('diff') || r.querySelector('.diff') !== null")

    assert row("lr").count() == 1 and row("layers").count() == 1
    assert highlighted("lr"), "the differing param lr is not highlighted"
    assert not highlighted("layers"), "the equal param layers is highlighted"
    # Both runs' loss histories overlaid in one chart.
    assert page.locator(".chart svg").count() >= 1
    screenshot(page, "compare", readme="dashboard-compare.png")


def approval(url, version, name="rita"):
    status, body = api(url, name, "GET", f"approvals/get?name=iris&version={version}")
    assert status == 200, body
    return body["approval"]


def test_a_creator_who_could_approve_sees_no_button_and_is_refused_when_posting(seeded, context):
    url = seeded.url
    page = signed_in(context, url, "cody")
    approve = page.get_by_role("button", name=re.compile(r"^\s*approve", re.I))
    # cody holds the approver role: sam's version offers him the button...
    page.goto(f"{url}/ui/models/iris/versions/2")
    assert approve.count() == 1, "an approver sees no approve button on someone else's version"
    # ...his own does not.
    answer = page.goto(f"{url}/ui/models/iris/versions/1")
    assert answer.status == 200
    assert approve.count() == 0, "the creator is offered an approve button"
    assert page.locator("form[action$='/approve']").count() == 0
    before = approval(url, "1")

    refused = post_form(page, url, "/ui/models/iris/versions/1/approve", {"comment": "my own work"})
    assert refused.status == 403, (refused.status, refused.text()[:500])
    # Refused for being the creator (the store's own words), not for the form's CSRF token.
    assert "cody created version 1 of 'iris' and cannot approve it" in html.unescape(refused.text()), refused.text()[:2000]
    after = approval(url, "1")
    assert after == before and not after["approved"] and "cody" not in after.get("approved_by", [])
    status, audit = api(url, "ada", "GET", "audit/list?name=iris&action=approve")
    assert status == 200 and not [e for e in audit["events"] if e["user"] == "cody"], audit

    # A form posted without the page's CSRF token is refused too (sam's version, which cody may approve).
    before = approval(url, "2")
    forged = page.request.post(f"{url}/ui/models/iris/versions/2/approve", form={"comment": "x"},
                               headers={"Origin": url}, max_redirects=0)
    assert forged.status == 403
    assert "CSRF token" in html.unescape(forged.text())
    assert approval(url, "2") == before


def test_a_reader_sees_no_actions_and_is_refused_when_posting(seeded, context):
    url = seeded.url
    page = signed_in(context, url, "rita")
    assert page.goto(f"{url}/ui/models/iris/versions/2").status == 200
    for action in ("approve", "reject", "request-approval", "aliases"):
        assert page.locator(f"form[action$='/{action}']").count() == 0, action
    before = approval(url, "2")
    for path, fields in (("/ui/models/iris/versions/2/approve", {"comment": "x"}),
                         ("/ui/models/iris/versions/2/reject", {"comment": "x"}),
                         ("/ui/models/iris/aliases", {"alias": "candidate", "version": "2"})):
        refused = post_form(page, url, path, fields)
        assert refused.status == 403, (path, refused.status)
        # Refused for the role (by the access layer or the handler), not for the form.
        assert re.search(r"rita.{0,80}(lacks|needs) the approver role", html.unescape(refused.text())), refused.text()[:2000]
    assert approval(url, "2") == before
    with mlflow_as(url, "rita") as mlflow:
        client = mlflow.MlflowClient(tracking_uri=url, registry_uri=url)
        assert "candidate" not in client.get_registered_model("iris").aliases


def set_field(form, name, value):
    """Fills a form's visible input or chooses in its select (a hidden field is left as the page
    set it)."""
    field = form.locator(f"[name={name}]").first
    if field.count() == 0 or field.get_attribute("type") == "hidden":
        return
    if field.evaluate("e => e.tagName") == "SELECT":
        field.select_option(value)
    else:
        field.fill(value)


def test_an_approver_approves_moves_production_and_sees_the_audit_entry(seeded, context):
    url = seeded.url
    page = signed_in(context, url, "avery")
    page.goto(f"{url}/ui/models/iris/versions/2")
    form = page.locator("form[action$='/versions/2/approve']")
    comment = form.locator("textarea[name=comment], input[name=comment]")
    if comment.count():
        comment.first.fill("holdout accuracy 0.97")
    with page.expect_navigation():
        form.get_by_role("button").first.click()
    state = approval(url, "2")
    assert state["approved"] and state["approved_by"] == ["avery"], state

    page.goto(f"{url}/ui/models/iris/versions/2")
    alias_form = page.locator("form[action='/ui/models/iris/aliases']").first
    set_field(alias_form, "alias", "production")
    set_field(alias_form, "version", "2")
    with page.expect_navigation():
        alias_form.get_by_role("button").first.click()
    with mlflow_as(url, "rita") as mlflow:
        client = mlflow.MlflowClient(tracking_uri=url, registry_uri=url)
        assert client.get_model_version_by_alias("iris", "production").version == "2"

    page.goto(f"{url}/ui/models/iris/versions/2")
    text = page.locator("main").inner_text()
    assert "production" in text
    audit_rows = page.locator("tr").filter(has_text="avery")
    assert audit_rows.filter(has_text=re.compile("approve", re.I)).count() >= 1, "no audit entry for the approval"
    assert audit_rows.filter(has_text=re.compile("alias", re.I)).count() >= 1, "no audit entry for the alias move"
    assert "holdout accuracy 0.97" in text or comment.count() == 0
    screenshot(page, "approval", readme="dashboard-approval.png")


def test_an_admin_sets_the_canary_percent_and_weir_canary_status_agrees(context, tmp_path):
    identities = tmp_path / "identities.toml"
    identities.write_text(identities_toml())
    router, replicas, router_token = start_serving(tmp_path, "router-admin-secret")
    registry = None
    try:
        registry = Registry(database_url("sqlite", tmp_path), tmp_path, "--tokens", str(identities),
                            "--router", router.admin, "--router-token-file", str(router_token))
        url = registry.url
        assert [b["weight"] for b in canary_status("iris", router.admin, router_token)["backends"]] == [90, 10]

        # A reader sees the route but no controls.
        reader = signed_in(context, url, "rita")
        assert reader.goto(f"{url}/ui/serving/iris").status == 200
        assert reader.locator("form[action='/ui/serving/iris/canary']").count() == 0
        assert post_form(reader, url, "/ui/serving/iris/canary", {"percent": "50"}).status == 403
        assert [b["weight"] for b in canary_status("iris", router.admin, router_token)["backends"]] == [90, 10]
        reader.close()
        context.clear_cookies()

        page = signed_in(context, url, "ada")
        page.goto(f"{url}/ui/serving/iris")
        form = page.locator("form[action='/ui/serving/iris/canary']")
        form.locator("input[name=percent]").fill("30")
        with page.expect_navigation():
            form.get_by_role("button").first.click()
        status = canary_status("iris", router.admin, router_token)
        weights = {b["version"]: (b["role"], b["weight"]) for b in status["backends"]}
        assert weights == {"1": ("stable", 70), "2": ("canary", 30)}, weights
        # The page shows what the router says, refreshed in place.
        wait_for("the serving page to show 30%", 10, lambda: "30%" in page.locator("main").inner_text())
        screenshot(page, "serving")

        # Its HTML (page and refreshed panel) is valid too.
        pages = {}
        for path in ("/ui/serving", "/ui/serving/iris", "/ui/serving/iris/panel"):
            answer = page.request.get(f"{url}{path}")
            assert answer.status == 200, (path, answer.status)
            body = answer.text()
            if path.endswith("/panel"):
                body = f"<!DOCTYPE html><html lang=en><head><title>panel</title></head><body>{body}</body></html>"
            pages[f"ada {path}"] = body
        errors = html_errors(pages, tmp_path / "html")
        assert not errors, "\n".join(errors)
    finally:
        if registry:
            registry.stop()
        router.stop()
        for replica in replicas:
            replica.stop()


def every_page(seeded):
    """(path, the status it must answer) for every page of the seeded registry."""
    s = seeded
    found = [
        "/ui/sign-in", "/ui/", "/ui/experiments", "/ui/experiments?q=churn", f"/ui/experiments/{s.experiment}",
        f"/ui/experiments/{s.experiment}?order=metrics.loss%20DESC",
        f"/ui/experiments/{s.experiment}?filter=params.lr%20%3D%20%270.1%27",
        f"/ui/experiments/{s.experiment}/runs/{s.run_a}", f"/ui/runs/{s.run_a}/artifacts",
        f"/ui/runs/{s.run_a}/artifact?path=notes.txt", f"/ui/compare?runs={s.run_a}&runs={s.run_b}",
        f"/ui/compare?runs={s.run_a}&runs={s.run_b}&x=time",
        "/ui/models", "/ui/models/iris", "/ui/models/iris/versions/1", "/ui/models/iris/versions/2",
        "/ui/serving",
    ]
    # Error pages are pages too: unknown things, a bad filter, one run to compare, a route no
    # router has.
    refused = [
        (f"/ui/experiments/{s.experiment}/runs/no-such-run", 404), ("/ui/models/no-such-model", 404),
        ("/ui/models/iris/versions/99", 404), (f"/ui/experiments/{s.experiment}?filter=params.lr%20%3D%3D%3D", 400),
        (f"/ui/compare?runs={s.run_a}", 400), ("/ui/serving/iris", 404),
    ]
    return [(path, 200) for path in found] + refused


def test_every_page_is_valid_html_for_an_admin_and_a_reader(seeded, chromium):
    url = seeded.url
    pages = {}
    for name in ("ada", "rita"):
        context = new_context(chromium)
        try:
            page = signed_in(context, url, name)
            public = context.request.get(f"{url}/")
            assert public.status == 200
            pages[f"{name} /"] = public.text()
            for path, status in every_page(seeded):
                answer = page.request.get(f"{url}{path}")
                assert answer.status == status, (name, path, answer.status)
                assert answer.headers["content-type"].startswith("text/html"), (name, path, answer.headers)
                pages[f"{name} {path}"] = answer.text()
        finally:
            context.close()
    errors = html_errors(pages, seeded.folder / "html")
    assert not errors, f"{len(errors)} HTML errors:\n" + "\n".join(errors)
    # The checker is really looking: a broken page fails.
    assert html_errors({"broken": "<!DOCTYPE html><html lang=en><title>x</title><p></p></p>"}, seeded.folder / "broken")


def test_a_run_page_fits_a_360_px_screen(seeded, chromium):
    context = new_context(chromium, 360, 740)
    try:
        page = signed_in(context, seeded.url, "rita")
        for path in (f"/ui/experiments/{seeded.experiment}/runs/{seeded.run_a}", f"/ui/experiments/{seeded.experiment}",
                     f"/ui/compare?runs={seeded.run_a}&runs={seeded.run_b}", "/ui/models/iris/versions/2",
                     "/ui/models", "/ui/experiments", f"/ui/runs/{seeded.run_a}/artifact?path=notes.txt"):
            page.goto(f"{seeded.url}{path}")
            width = page.evaluate("document.scrollingElement.scrollWidth")
            assert width <= 360, f"{path} scrolls sideways at 360 px: {width} px wide"
            if "/runs/" in path:
                screenshot(page, "run-360px")
    finally:
        context.close()


def test_the_keyboard_reaches_the_sign_in_button_and_signs_in(seeded, context):
    page = context.new_page()
    page.goto(f"{seeded.url}/ui/sign-in")

    def focused():
        return page.evaluate(
            "(() => { const e = document.activeElement;"
            " return e ? [e.tagName, e.getAttribute('name') || '', e.getAttribute('type') || ''] : null })()")

    for _ in range(30):
        page.keyboard.press("Tab")
        if focused()[1] == "token":
            break
    assert focused()[1] == "token", "Tab never reaches the token field"
    page.keyboard.type(token("rita"))
    for _ in range(10):
        page.keyboard.press("Tab")
        tag, _, kind = focused()
        if tag == "BUTTON" and kind in ("", "submit"):
            break
    assert focused()[0] == "BUTTON", f"Tab never reaches the sign-in button: {focused()}"
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert "/ui/sign-in" not in page.url
    assert context.cookies(seeded.url)


def test_the_package_lock_names_only_the_npm_registry():
    """The HTML checker comes from npm by `npm ci` from a committed lock file: every package has
    an integrity hash and none is fetched from anywhere but the registry npm is configured with."""
    folder = pathlib.Path(__file__).resolve().parents[1] / "browser"
    lock = json.loads((folder / "package-lock.json").read_text())
    registry = subprocess.run(["npm", "config", "get", "registry"], cwd=folder, capture_output=True, text=True,
                              timeout=60, check=True).stdout.strip()
    packages = {k: v for k, v in lock["packages"].items() if k}
    assert packages and "node_modules/vnu-jar" in packages
    for name, package in packages.items():
        assert package.get("integrity", "").startswith("sha512-"), name
        # No `resolved` means "from the configured registry"; one that is written must be there.
        resolved = package.get("resolved")
        assert resolved is None or resolved.startswith(registry), (name, resolved, registry)
    # vnu-jar's postinstall would download a Java runtime: scripts stay off.
    assert "ignore-scripts=true" in (folder / ".npmrc").read_text()


def test_an_open_registry_asks_who_acts_and_still_refuses_the_creator(chromium, tmp_path):
    """Anonymous mode (no identities, loopback): no sign-in, and every action names who does it,
    as the CLI's --as does; the version's creator is refused under that name too."""
    registry = Registry(database_url("sqlite", tmp_path), tmp_path)
    context = new_context(chromium)
    try:
        url = registry.url
        assert register_iris_version(url, None, MODELS / "iris" / "1") == "1"
        page = context.new_page()
        assert page.goto(f"{url}/ui/models/iris/versions/1").status == 200
        assert "/ui/sign-in" not in page.url
        form = page.locator("form[action$='/versions/1/approve']")
        acting = form.locator("input[name=as]")
        assert acting.count() == 1 and acting.get_attribute("required") is not None

        acting.fill("anonymous")  # the name the version was created under
        with page.expect_navigation():
            form.get_by_role("button", name="Approve").click()
        assert "cannot approve" in page.locator("main").inner_text()
        assert not approval(url, "1", None)["approved"]

        page.goto(f"{url}/ui/models/iris/versions/1")
        form.locator("input[name=as]").fill("bob")
        form.locator("textarea[name=comment]").fill("looks right")
        with page.expect_navigation():
            form.get_by_role("button", name="Approve").click()
        state = approval(url, "1", None)
        assert state["approved"] and state["approved_by"] == ["bob"], state
        screenshot(page, "open-registry-approved")

        pages = {f"open {path}": page.request.get(f"{url}{path}").text()
                 for path in ("/ui/", "/ui/models", "/ui/models/iris", "/ui/models/iris/versions/1", "/ui/experiments")}
        errors = html_errors(pages, tmp_path / "html")
        assert not errors, "\n".join(errors)
    finally:
        context.close()
        registry.stop()
