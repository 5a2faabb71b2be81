"""Dashboard items of issue 25 in real Chromium against a live `trainforge up`: readable
tick labels, 16 trial colours, the log/linear toggle (log by default for loss), a log x
axis for a parameter sampled log-uniformly, the Sweeps page linked in the top bar, and a
finished job's model download and predict form."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.test_ui import (  # noqa: F401 - the fixtures of the UI tests
    auth,
    browser,
    console,
    expect,
    job,
    page,
    sign_in,
    spec,
    submit,
    up,
)
from tests.procs import UpServer

CHART_MODULE = "/ui/static/js/chart.js"


def test_tick_labels_and_colours_in_the_browser(up: UpServer, page: Any) -> None:  # noqa: F811
    sign_in(page, up)
    found = page.evaluate(
        """async (module) => {
          const { tickLabels, COLORS } = await import(module);
          return {
            lr: tickLabels([0.0009, 0.00092, 0.00094, 0.00096, 0.00098, 0.001]),
            loss: tickLabels([0.2, 0.4, 0.6, 0.8, 1.0]),
            tiny: tickLabels([0.3, 0.3005, 0.301]),
            decades: tickLabels([0.0001, 0.001, 0.01, 0.1, 1]),
            colours: COLORS,
          };
        }""",
        CHART_MODULE,
    )
    for labels in (found["lr"], found["loss"], found["tiny"], found["decades"]):
        assert len(set(labels)) == len(labels), labels  # neighbouring ticks never read alike
    assert found["loss"] == ["0.2", "0.4", "0.6", "0.8", "1.0"]
    assert found["decades"] == ["1.00e-4", "0.001", "0.01", "0.1", "1"]
    assert len(set(found["colours"])) >= 12


def test_loss_is_log_by_default_and_toggles(up: UpServer, page: Any) -> None:  # noqa: F811
    job_id = submit(up, {"spec": spec(epochs=2, batch_size=64)})
    deadline = time.monotonic() + 300
    while job(up, job_id)["status"] not in ("succeeded", "failed", "canceled"):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    sign_in(page, up, f"/ui/jobs/{job_id}")
    loss = page.locator("[data-chart=loss]")
    expect(loss).to_have_attribute("data-y-scale", "log")
    expect(loss.locator("[data-series=loss]")).not_to_have_attribute("data-points", "0")
    loss.get_by_test_id("log-toggle").click()
    expect(loss).to_have_attribute("data-y-scale", "linear")
    expect(loss.locator("[data-series=loss]")).not_to_have_attribute("data-points", "0")
    accuracy = page.locator("[data-chart=accuracy]")
    expect(accuracy).to_have_attribute("data-y-scale", "linear")
    accuracy.get_by_test_id("log-toggle").click()
    expect(accuracy).to_have_attribute("data-y-scale", "log")


def test_the_sweeps_page_lists_the_teams_sweeps(up: UpServer, page: Any) -> None:  # noqa: F811
    body = {
        "name": "lr-log-sweep",
        "spec": spec(epochs=1, batch_size=64),
        "parameters": {"optimizer.lr": {"kind": "log_uniform", "low": 1e-4, "high": 1e-1}},
        "algorithm": {"kind": "random", "seed": 1},
        "objective": {"metric": "val_accuracy"},
        "max_trials": 2,
        "max_concurrent_trials": 1,
    }
    r = httpx.post(f"{up.base}/v1/sweeps", json=body, headers=auth(up))
    assert r.status_code == 201, r.text
    sweep_id = r.json()["id"]
    sign_in(page, up)
    page.locator("#nav").get_by_role("link", name="Sweeps").click()
    row = page.locator(f"[data-testid=sweeps] tr[data-sweep='{sweep_id}']")
    expect(row).to_contain_text("lr-log-sweep")
    expect(row).to_contain_text("val_accuracy")
    row.get_by_role("link", name="lr-log-sweep").click()
    expect(page.locator(".job-header h1")).to_contain_text("lr-log-sweep")
    points = page.locator("[data-chart='param-optimizer.lr'] [data-series=val_accuracy]")
    expect(points).not_to_have_attribute("data-points", "0")
    expect(page.locator("[data-chart='param-optimizer.lr']")).to_have_attribute(
        "data-x-scale", "log"
    )


def test_a_finished_jobs_page_downloads_its_model_and_predicts(
    up: UpServer,  # noqa: F811
    page: Any,  # noqa: F811
    console: Any,  # noqa: F811
) -> None:
    console.allow(r"status of 422")  # the wrong instance, on purpose
    body = {"spec": {"dataset": {"source": {"kind": "builtin", "name": "iris"}}, "epochs": 3}}
    job_id = submit(up, body)
    deadline = time.monotonic() + 300
    while (ended := job(up, job_id))["status"] not in ("succeeded", "failed", "canceled"):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert ended["export"]["status"] == "ready", ended
    sign_in(page, up, f"/ui/jobs/{job_id}")
    panel = page.get_by_test_id("model")
    with page.expect_download() as download:
        panel.get_by_test_id("download-model").click()
    expected = httpx.get(f"{up.base}/v1/jobs/{job_id}/model", headers=auth(up)).content
    assert Path(download.value.path()).read_bytes() == expected
    flower = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5,
              "petal length (cm)": 1.4, "petal width (cm)": 0.2}  # fmt: skip
    panel.get_by_test_id("predict-input").fill(json.dumps([flower, flower]))
    panel.get_by_role("button", name="Predict").click()
    rows = panel.get_by_test_id("predictions").locator("tbody tr")
    expect(rows).to_have_count(2)
    answer = httpx.post(f"{up.base}/v1/jobs/{job_id}/predict", json={"instances": [flower]},
                        headers=auth(up)).json()["predictions"][0]  # fmt: skip
    expect(rows.first).to_contain_text(str(answer["label"]))
    panel.get_by_test_id("predict-input").fill('[{"sepal length (cm)": "x"}]')
    panel.get_by_role("button", name="Predict").click()
    expect(panel.get_by_test_id("predict-result")).to_contain_text("instances.0")


def test_the_plan_clears_while_the_spec_is_invalid(
    up: UpServer,  # noqa: F811
    page: Any,  # noqa: F811
    console: Any,  # noqa: F811
) -> None:
    console.allow(r"status of 422")
    sign_in(page, up, "/ui/new")
    editor = page.get_by_label("Job spec (YAML or JSON)")
    editor.fill("dataset:\n  source: {kind: builtin, name: digits}\nepochs: 3\n")
    expect(page.get_by_test_id("valid")).to_be_visible()
    expect(page.get_by_test_id("parameter-count")).to_be_visible()
    editor.fill("dataset:\n  source: {kind: builtin, name: digits}\nepochs: 0\n")
    expect(page.locator('[data-testid=problems] li[data-loc="spec.epochs"]')).to_be_visible()
    expect(page.get_by_test_id("parameter-count")).to_have_count(0)
    expect(page.get_by_test_id("plan-empty")).to_be_visible()
    editor.fill("dataset: [unclosed\n")
    expect(page.get_by_test_id("plan-empty")).to_be_visible()


def test_no_console_or_page_error(console: Any) -> None:  # noqa: F811
    assert console.unexpected() == []
