"""The dashboard in a real headless Chromium (Debian's `chromium`, driven by Playwright
through `executable_path`; never a browser of Playwright's own) against a live
`trainforge up`: sign-in, the jobs list, a job's live charts and status, cancel, the
spec editor's validation and submit, "not found", "reconnecting…".

Each test saves a screenshot under test-artifacts/ui/ (gitignored; CI leaves it
behind). Every console error and page error of the whole run is collected, and the
last test asserts there was none beyond the HTTP errors a test provokes on purpose
(Chromium logs each 4xx answer as "Failed to load resource").
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO
from tests.procs import UpServer, trainforge_up

pytestmark = pytest.mark.e2e
playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = REPO / "test-artifacts" / "ui"
TIMEOUT_MS = 120_000  # a loaded shared machine: generous, never a timed assertion
expect.set_options(timeout=TIMEOUT_MS)
DIGITS = {"source": {"kind": "builtin", "name": "digits"}}
LIVE_EPOCHS = 30  # the job the live test watches (the compare test reads it too)


def spec(epochs: int, batch_size: int = 32, hidden: int = 32) -> dict[str, Any]:
    return {
        "dataset": {**DIGITS, "batch_size": batch_size},
        "model": {"kind": "mlp", "hidden_units": [hidden]},
        "optimizer": {"kind": "adam", "lr": 0.002},
        "epochs": epochs,
        "seed": 0,
        "checkpointing": {"every_n_epochs": 2, "keep_last": 2, "keep_best": 1},
    }


@dataclass
class Console:
    """Console errors and page errors of the whole run, each with its test."""

    test: str = ""
    errors: list[tuple[str, str]] = field(default_factory=list)
    # Per test: the provoked failures it expects the browser to log (regexes).
    allowed: dict[str, list[str]] = field(default_factory=dict)

    def allow(self, pattern: str) -> None:
        self.allowed.setdefault(self.test, []).append(pattern)

    def unexpected(self) -> list[tuple[str, str]]:
        return [
            (test, text)
            for test, text in self.errors
            if not any(re.search(p, text) for p in self.allowed.get(test, []))
        ]


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpServer]:
    with trainforge_up(tmp_path_factory.mktemp("ui")) as server:
        yield server


@pytest.fixture(scope="module")
def console() -> Console:
    return Console()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed (`make test` installs it)")
        pytest.skip("chromium is not installed (`make chromium`)")
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Any, console: Console, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh tab (its own sessionStorage); a screenshot of it after the test."""
    console.test = request.node.name
    context = browser.new_context(viewport={"width": 1360, "height": 1000})
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    name = request.node.name
    tab.on("console", lambda m: m.type == "error" and console.errors.append((name, m.text)))
    tab.on("pageerror", lambda e: console.errors.append((name, f"pageerror: {e}")))
    try:
        yield tab
    finally:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        context.close()


def auth(up: UpServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {up.key}"}


def submit(up: UpServer, body: dict[str, Any]) -> str:
    r = httpx.post(f"{up.base}/v1/jobs", json=body, headers=auth(up))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def job(up: UpServer, job_id: str) -> dict[str, Any]:
    r = httpx.get(f"{up.base}/v1/jobs/{job_id}", headers=auth(up))
    assert r.status_code == 200, r.text
    return dict(r.json())


def sign_in(page: Any, up: UpServer, path: str = "/ui/") -> None:
    page.goto(up.base + path)
    page.get_by_label("API key").fill(up.key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_label("API key")).to_have_count(0)


def test_a_wrong_key_shows_the_sign_in_error(up: UpServer, page: Any, console: Console) -> None:
    console.allow(r"status of 401")
    page.goto(up.base + "/")  # `/` redirects to the dashboard
    assert page.url.endswith("/ui/")
    page.get_by_label("API key").fill("tf_nokey_notasecret")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("The API key was refused")
    expect(page.get_by_label("API key")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('trainforge.apiKey')") is None


def test_a_key_refused_mid_session_returns_to_sign_in_with_the_message(
    up: UpServer, page: Any, console: Console
) -> None:
    console.allow(r"status of 401")
    sign_in(page, up)
    expect(page.get_by_test_id("jobs")).to_be_visible()
    # As a key revoked while the page is open: the next refresh is refused.
    page.evaluate("sessionStorage.setItem('trainforge.apiKey', 'tf_revoked_notasecret')")
    expect(page.get_by_role("alert")).to_contain_text("The API key was refused")
    expect(page.get_by_label("API key")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('trainforge.apiKey')") is None


def test_the_jobs_page_lists_a_submitted_job(up: UpServer, page: Any) -> None:
    job_id = submit(up, {"name": "ui-listed", "spec": spec(epochs=2)})
    sign_in(page, up)
    row = page.locator(f'tr[data-job-id="{job_id}"]')
    expect(row).to_contain_text("ui-listed")
    expect(row.get_by_test_id("progress")).to_contain_text("/2")
    # The row updates live (no reload) until the job has run.
    expect(row.get_by_test_id("status")).to_have_text("succeeded")
    expect(row.get_by_test_id("progress")).to_have_text("2/2")
    expect(row.get_by_test_id("best")).to_contain_text("val_loss")
    assert page.evaluate("sessionStorage.getItem('trainforge.apiKey')") == up.key


# What the page shows: status, the val_accuracy chart's points, the progress epoch.
_READ_STATE = """() => ({
    status: document.querySelector('.job-header [data-testid=status]')?.textContent,
    points: document.querySelector(
        '[data-chart=accuracy] [data-series=val_accuracy]')?.dataset.points,
    epoch: document.querySelector('.progress-block [data-testid=progress]')?.dataset.epoch,
})"""
# Every distinct state the page renders, recorded in the page as it happens (a
# MutationObserver), so a fast job's intermediate states are not missed by sampling.
_RECORD_STATES = f"""() => {{
    const read = {_READ_STATE};
    window.__states = [];
    const record = () => {{
        const s = read(), last = window.__states.at(-1);
        if (!last || last.status !== s.status || last.points !== s.points
            || last.epoch !== s.epoch) window.__states.push(s);
    }};
    new MutationObserver(record).observe(document.body,
        {{subtree: true, childList: true, attributes: true, characterData: true}});
    record();
}}"""


def _states(page: Any, script: str) -> list[tuple[str, int, int]]:
    found = page.evaluate(script)
    return [
        (str(s["status"]), int(s["points"] or 0), int(s["epoch"] or 0))
        for s in (found if isinstance(found, list) else [found])
    ]


def test_the_job_page_grows_live_and_turns_succeeded_without_a_reload(
    up: UpServer, page: Any, console: Console
) -> None:
    console.allow(r"status of 409")  # the cancel of an ended job, at the end
    # Long enough to be watched on a fast quiet host too (~0.2 s an epoch there): at
    # batch 16 the whole job once ended while the page was still signing in.
    epochs = LIVE_EPOCHS
    job_id = submit(up, {"name": "ui-live", "spec": spec(epochs=epochs, batch_size=2, hidden=128)})
    sign_in(page, up, f"/ui/jobs/{job_id}")
    expect(page.locator("[data-chart=accuracy]")).to_be_visible()
    page.evaluate("window.__sameDocument = true")  # gone if the page reloads
    page.evaluate(_RECORD_STATES)
    zoomed: tuple[str, int] | None = None  # the accuracy chart's x range, its points then
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        [(status, points, _)] = _states(page, _READ_STATE)
        if status in ("succeeded", "failed", "canceled"):
            break
        if zoomed is None and status == "running" and points >= 2:
            zoomed = (_drag_zoom(page, "accuracy"), points)
        page.wait_for_timeout(100)
    seen = _states(page, "() => window.__states")
    running = [(points, epoch) for status, points, epoch in seen if status == "running"]
    assert seen[-1][0] == "succeeded", (seen[-5:], up.log.read_text()[-3000:])
    # While it ran, the page showed more and more points and a later and later epoch.
    assert len({p for p, _ in running}) >= 3, running
    assert len({e for _, e in running}) >= 3, running
    assert running == sorted(running)
    # The progress text keeps up with the charts (it once waited for a heartbeat).
    assert all(epoch >= points for points, epoch in running), running
    expect(page.locator("[data-chart=accuracy] [data-series=val_accuracy]")).to_have_attribute(
        "data-points", str(epochs)
    )
    expect(page.locator(".progress-block [data-testid=progress]")).to_have_attribute(
        "data-epoch", str(epochs)
    )
    assert page.evaluate("window.__sameDocument") is True
    # The zoom survived the points that came after it; the other charts kept growing.
    assert zoomed is not None and zoomed[1] < epochs, seen
    accuracy = page.locator("[data-chart=accuracy]")
    assert accuracy.get_attribute("data-x-range") == zoomed[0]
    loss_range = str(page.locator("[data-chart=loss]").get_attribute("data-x-range"))
    loss_max = float(loss_range.split(",")[1])
    last_step = job(up, job_id)["progress"]["step"]
    assert loss_max >= last_step
    page.locator("[data-chart=accuracy] .u-over").dblclick()  # back to every point
    assert float(str(accuracy.get_attribute("data-x-range")).split(",")[1]) >= last_step
    for chart in ("loss", "accuracy", "lr", "grad_norm"):
        expect(page.locator(f"[data-chart={chart}] .latest")).to_contain_text(f"epoch {epochs}")
    expect(page.get_by_test_id("checkpoints")).to_contain_text("★ best")
    expect(page.get_by_test_id("timeline")).to_contain_text("running → succeeded")
    expect(page.get_by_test_id("spec")).to_contain_text('"hidden_units"')
    # A checkpoint downloads with the Bearer header (fetch, then a blob link): the same bytes.
    latest = httpx.get(f"{up.base}/v1/jobs/{job_id}/checkpoints", headers=auth(up)).json()
    last_link = page.get_by_test_id("checkpoints").locator("a[data-checkpoint]").last
    # The table catches up with the last checkpoint (its event came before the end).
    expect(last_link).to_have_attribute("data-checkpoint", str(latest["items"][-1]["id"]))
    with page.expect_download() as download:
        last_link.click()
    body = Path(download.value.path()).read_bytes()
    assert hashlib.sha256(body).hexdigest() == latest["items"][-1]["sha256"]
    assert download.value.suggested_filename.endswith(".safetensors")
    # The README's screenshot (docs/dashboard-job.png is a copy of this one).
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.mouse.move(0, 0)
    page.screenshot(path=str(ARTIFACTS / "job-page.png"))
    # Cancel from a page that has not heard yet that the job ended: the API's 409, as it is.
    page.get_by_role("button", name="Cancel").evaluate("b => b.disabled = false")
    page.get_by_role("button", name="Cancel").click()
    expect(page.get_by_test_id("action-message")).to_contain_text(
        "The job has already ended (succeeded)"
    )


def _drag_zoom(page: Any, chart: str) -> str:
    """Drag across the middle of a chart's plot (uPlot's zoom); the x range it shows then."""
    over = page.locator(f"[data-chart={chart}] .u-over")
    box = over.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.2, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.6, y, steps=5)
    page.mouse.up()
    before = page.locator(f"[data-chart={chart}]").get_attribute("data-x-range")
    return str(before)


def test_cancel_from_the_page_cancels_a_running_job(up: UpServer, page: Any) -> None:
    job_id = submit(up, {"name": "ui-cancel", "spec": spec(epochs=500, batch_size=8)})
    sign_in(page, up, f"/ui/jobs/{job_id}")
    header = page.locator(".job-header [data-testid=status]")
    expect(header).to_have_text("running")
    page.get_by_role("button", name="Cancel").click()
    expect(header).to_have_text("canceled")
    expect(page.get_by_test_id("reason")).to_contain_text("canceled_by_user")
    ended = job(up, job_id)
    assert (ended["status"], ended["status_reason"]) == ("canceled", "canceled_by_user")
    expect(page.get_by_role("button", name="Retry")).to_be_enabled()


def test_the_editor_shows_the_422_location_and_submits_a_valid_spec(
    up: UpServer, page: Any, console: Console
) -> None:
    console.allow(r"status of 422")  # the invalid spec's POST /v1/specs/validate
    sign_in(page, up, "/ui/new")
    editor = page.get_by_label("Job spec (YAML or JSON)")
    editor.fill(
        "dataset:\n  source: {kind: builtin, name: digits}\n"
        "optimizer:\n  kind: sgd\n  lr: -1\nepochs: 2\n"
    )
    problem = page.locator('[data-testid=problems] li[data-loc="spec.optimizer.lr"]')
    expect(problem).to_contain_text("spec.optimizer.lr")
    expect(problem).to_contain_text("greater than 0")
    editor.fill(
        "dataset:\n  source: {kind: builtin, name: digits}\n  batch_size: 64\n"
        "model: {kind: mlp, hidden_units: [16]}\n"
        "optimizer:\n  kind: sgd\n  lr: 0.05\nschedule: {kind: cosine}\nepochs: 2\n"
    )
    expect(page.get_by_test_id("valid")).to_be_visible()
    expect(page.get_by_test_id("steps-per-epoch")).to_have_text(re.compile(r"^\d+$"))
    # the layer table as you type: flatten, dense, activation, then the implied head
    rows = page.locator("[data-testid=layers] tbody tr")
    expect(rows).to_have_count(4)
    expect(rows.nth(3)).to_contain_text("head")
    expect(rows.nth(1)).to_contain_text("1,040")  # 64 x 16 + 16
    expect(page.locator("[data-chart=plan-lr] [data-series=lr]")).to_have_attribute(
        "data-points", "2"
    )
    page.locator("#job-name").fill("from-the-editor")
    page.get_by_role("button", name="Submit job").click()
    page.wait_for_url(re.compile(r"/ui/jobs/[^/]+$"))
    job_id = page.url.rsplit("/", 1)[1]
    created = job(up, job_id)
    assert created["name"] == "from-the-editor"
    assert created["spec"]["optimizer"]["lr"] == 0.05
    expect(page.locator(".job-header h1")).to_contain_text("from-the-editor")


# The distinct colours of the editor's text: highlighting gives keys, numbers, strings and
# comments their own.
_EDITOR_COLOURS = """() => new Set([...document.querySelectorAll('.cm-content .cm-line *')]
    .map((el) => getComputedStyle(el).color)).size"""


def test_the_spec_editor_highlights_explains_completes_and_marks_the_problem_line(
    up: UpServer, page: Any, console: Console
) -> None:
    """CodeMirror 6 from the pinned bundle: YAML highlighting, hover help and completion
    from the spec's JSON Schema, a 422's location marked at its line, the plan cleared."""
    console.allow(r"status of 422")
    page.add_init_script("sessionStorage.removeItem('trainforge.draftSpec')")
    sign_in(page, up, "/ui/new")
    expect(page.get_by_test_id("steps-per-epoch")).to_have_text(re.compile(r"^\d+$"))
    assert page.evaluate(_EDITOR_COLOURS) >= 3
    # hover: the field's path, type, bounds and description
    page.locator(".cm-line", has_text="batch_size").get_by_text("batch_size").hover()
    help_box = page.get_by_test_id("spec-help")
    expect(help_box).to_contain_text("dataset.batch_size")
    expect(help_box).to_contain_text("Keras default 32")
    expect(help_box).to_contain_text("integer")
    # completion: a new key under `optimizer:` offers the optimizer's fields
    page.locator(".cm-line", has_text="lr: 0.001").click()
    page.keyboard.press("End")
    page.keyboard.press("Enter")
    page.keyboard.type("mom")
    option = page.locator(".cm-tooltip-autocomplete li", has_text="momentum")
    option.click()  # (Enter right after the list opens is ignored: interactionDelay)
    expect(page.locator(".cm-line", has_text="momentum:")).to_have_count(1)
    # a spec the server refuses: the line of spec.optimizer.lr is marked, the plan goes
    page.get_by_label("Job spec (YAML or JSON)").fill(
        "dataset:\n  source: {kind: builtin, name: digits}\n"
        "optimizer:\n  kind: sgd\n  lr: -1\nepochs: 2\n"
    )
    marked = page.locator(".cm-line", has=page.locator(".cm-lintRange-error"))
    expect(marked).to_have_count(1)
    expect(marked).to_contain_text("lr: -1")
    expect(page.get_by_test_id("plan-empty")).to_be_visible()
    expect(page.get_by_test_id("steps-per-epoch")).to_have_count(0)
    expect(page.locator("[data-testid=layers] tbody tr")).to_have_count(0)
    # JSON: the language switches, and the problem is marked on its (pretty-printed) line
    page.get_by_label("Job spec (YAML or JSON)").fill(
        '{\n  "dataset": {"source": {"kind": "builtin", "name": "digits"}},\n  "epochs": 0\n}'
    )
    expect(page.locator(".cm-editor")).to_have_attribute("data-language", "json")
    expect(marked).to_have_count(1)
    expect(marked).to_contain_text('"epochs": 0')


def test_an_unknown_job_shows_not_found(up: UpServer, page: Any, console: Console) -> None:
    console.allow(r"status of 404")
    sign_in(page, up, "/ui/jobs/no-such-job")
    expect(page.get_by_test_id("not-found")).to_contain_text("Job not found")


def test_a_lost_server_shows_reconnecting_and_recovers(
    up: UpServer, page: Any, console: Console
) -> None:
    console.allow(r"net::ERR_FAILED")
    sign_in(page, up)
    expect(page.get_by_test_id("jobs")).to_be_visible()
    # The server goes away (every request fails at the network level), then comes back.
    page.route("**/v1/**", lambda route: route.abort())
    page.route("**/healthz", lambda route: route.abort())
    banner = page.locator("#banner")
    expect(banner).to_have_text("reconnecting…")
    expect(banner).to_be_visible()
    page.unroute("**/v1/**")
    page.unroute("**/healthz")
    expect(banner).to_be_hidden()
    expect(page.locator("tr[data-job-id]").first).to_be_visible()


def test_a_sweep_page_shows_the_leaderboard_and_the_objective_per_parameter(
    up: UpServer, page: Any
) -> None:
    paths = httpx.get(f"{up.base}/openapi.json").json()["paths"]
    if "/v1/sweeps" not in paths:
        pytest.skip("this server has no sweeps API (issue 13)")
    body = {
        "name": "ui-sweep",
        "spec": spec(epochs=2, batch_size=64),
        "parameters": {"optimizer.lr": {"kind": "choice", "values": [0.01, 0.002]}},
        "algorithm": {"kind": "grid"},
        "objective": {"metric": "val_accuracy"},
        "max_concurrent_trials": 1,
    }
    r = httpx.post(f"{up.base}/v1/sweeps", json=body, headers=auth(up))
    assert r.status_code == 201, r.text
    sign_in(page, up, f"/ui/sweeps/{r.json()['id']}")
    expect(page.locator(".job-header h1")).to_contain_text("ui-sweep")
    board = page.get_by_test_id("leaderboard")
    expect(board.locator("tbody tr").first).to_be_visible()
    expect(board.locator("thead")).to_contain_text("optimizer.lr")
    # A trial with an objective: a point against the parameter, and its curve.
    lr_points = page.locator("[data-chart='param-optimizer.lr'] [data-series=val_accuracy]")
    expect(lr_points).not_to_have_attribute("data-points", "0")
    curve = page.locator("[data-chart=trials] [data-series]").first
    expect(curve).not_to_have_attribute("data-points", "0")
    # The two trials differ only in lr: queued together, claimed together, one pack.
    expect(page.get_by_test_id("execution")).to_contain_text("pack auto")
    packs = page.get_by_test_id("pack-table").locator("tbody tr")
    expect(packs).to_have_count(1)
    expect(packs.first).to_contain_text("#0, #1")
    expect(board.locator("tbody tr").first.locator("td").nth(5)).to_have_text("P1")


def test_compare_overlays_a_metric_and_lists_only_the_differing_fields(
    up: UpServer, page: Any
) -> None:
    r = httpx.get(f"{up.base}/v1/jobs", params={"status": "succeeded"}, headers=auth(up))
    by_name = {j["name"]: j["id"] for j in r.json()["items"]}
    a, b = by_name["ui-listed"], by_name["ui-live"]  # 32/128 units, 2/30 epochs, batch 32/2
    sign_in(page, up, f"/ui/compare?jobs={a},{b}")
    chart = page.locator("[data-chart=compare]")
    expect(chart.locator("[data-series=ui-listed]")).to_have_attribute("data-points", "2")
    expect(chart.locator("[data-series=ui-live]")).to_have_attribute(
        "data-points", str(LIVE_EPOCHS)
    )
    diff = page.get_by_test_id("spec-diff")
    fields = diff.locator("tbody code")
    # ... and nothing that is equal (seed, optimizer, checkpointing, ...).
    expect(fields).to_have_text(["dataset.batch_size", "epochs", "model.hidden_units"])


def test_the_datasets_page_uploads_lists_and_deletes(up: UpServer, page: Any) -> None:
    rows = ["x1,x2,label"] + [f"{i % 7},{(i * 3) % 5},{'ab'[i % 2]}" for i in range(40)]
    sign_in(page, up, "/ui/datasets")
    page.locator("#ds-file").set_input_files(
        {"name": "tiny.csv", "mimeType": "text/csv", "buffer": "\n".join(rows).encode()}
    )
    page.locator("#ds-name").fill("ui-tiny")  # the format is inferred (issue 29)
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_test_id("upload-message")).to_contain_text("Stored: ui-tiny")
    columns = page.get_by_test_id("upload-message").get_by_test_id("dataset-columns")
    expect(columns.locator("tbody tr").first).to_contain_text("x1")
    expect(columns.locator("tbody tr").first).to_contain_text("number")
    row = page.get_by_test_id("datasets").locator("tr", has_text="ui-tiny")
    expect(row).to_contain_text("classification")
    row.get_by_role("button", name="Delete").click()
    row.get_by_role("button", name="Confirm delete").click()
    expect(page.get_by_test_id("datasets-message")).to_contain_text("Deleted ui-tiny")
    expect(page.get_by_test_id("datasets").locator("tr", has_text="ui-tiny")).to_have_count(0)
    listed = httpx.get(f"{up.base}/v1/datasets", headers=auth(up)).json()["items"]
    assert "ui-tiny" not in [d["name"] for d in listed]


def test_the_api_docs_page_works_offline_with_an_authorize_button(up: UpServer, page: Any) -> None:
    """/docs (Swagger UI) loads everything from this server, none from a CDN."""
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto(up.base + "/docs")
    expect(page.get_by_role("button", name=re.compile("Authorize"))).to_be_visible()
    expect(page.get_by_text("/v1/jobs", exact=True).first).to_be_visible()
    page.get_by_role("button", name=re.compile("Authorize")).first.click()
    expect(page.get_by_text("ApiKey", exact=False).first).to_be_visible()  # the scheme
    others = [u for u in requested if not u.startswith(up.base) and not u.startswith("data:")]
    assert requested and not others, others


def test_no_console_or_page_error_during_the_whole_run(console: Console) -> None:
    assert not console.unexpected(), console.unexpected()
