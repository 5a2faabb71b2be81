"""The job page of a succeeded classification job: its report as a heatmap and a chart per
extra metric (issue 24), in the real Chromium of tests/e2e/test_ui.py."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.e2e.test_ui import (  # noqa: F401 -- fixtures
    auth,
    browser,
    console,
    expect,
    job,
    page,
    sign_in,
    submit,
    up,
)
from tests.procs import UpServer

pytestmark = pytest.mark.e2e


def test_the_job_page_shows_the_report_heatmap_and_extra_metric_charts(
    up: UpServer,  # noqa: F811
    page: Any,  # noqa: F811
) -> None:
    body = {
        "dataset": {"source": {"kind": "builtin", "name": "wine"}, "batch_size": 16},
        "model": {"kind": "mlp", "hidden_units": [16]},
        "epochs": 3,
        "metrics": ["f1_macro", "auroc"],
        "checkpointing": {"monitor": "val_f1_macro"},
    }
    job_id = submit(up, {"name": "ui-report", "spec": body})
    deadline = time.monotonic() + 600
    while job(up, job_id)["status"] not in ("succeeded", "failed", "canceled"):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert job(up, job_id)["status"] == "succeeded"
    report = httpx.get(f"{up.base}/v1/jobs/{job_id}/report", headers=auth(up)).json()
    sign_in(page, up, f"/ui/jobs/{job_id}")
    heatmap = page.get_by_test_id("confusion-matrix")
    expect(heatmap).to_be_visible()
    expect(heatmap.locator("thead th")).to_have_count(4)  # the corner, then 3 classes
    counts = heatmap.locator("td.cm-cell").evaluate_all("cells => cells.map(c => c.dataset.count)")
    assert counts == [str(n) for row in report["confusion_matrix"] for n in row]
    expect(page.get_by_test_id("per-class")).to_contain_text("class_2")
    for name in ("f1_macro", "auroc"):
        chart = page.locator(f"[data-chart={name}] [data-series=val_{name}]")
        expect(chart).to_have_attribute("data-points", "3")


def test_a_warm_started_jobs_page_links_its_source(up: UpServer, page: Any) -> None:  # noqa: F811
    source = submit(up, {"spec": {"dataset": {"source": {"kind": "builtin", "name": "iris"}},
                                  "epochs": 1}})  # fmt: skip
    deadline = time.monotonic() + 600
    while job(up, source)["status"] not in ("succeeded", "failed", "canceled"):
        assert time.monotonic() < deadline
        time.sleep(0.5)
    spec = {"dataset": {"source": {"kind": "builtin", "name": "iris"}}, "epochs": 1,
            "warm_start": {"job_id": source, "checkpoint": "latest"}}  # fmt: skip
    tuned = submit(up, {"spec": spec})
    sign_in(page, up, f"/ui/jobs/{tuned}")
    link = page.get_by_test_id("warm-start-source")
    expect(link).to_have_attribute("href", f"/ui/jobs/{source}")
