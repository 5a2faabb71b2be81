"""`trainforge validate` / `submit --dry-run` print the plan's layer table (issue 23)."""

from __future__ import annotations

import pytest

from trainforge.client.jobs_cmd import _print_plan


def test_the_plan_prints_one_line_per_layer(capsys: pytest.CaptureFixture[str]) -> None:
    _print_plan({
        "spec": {"epochs": 1}, "spec_version": "1",
        "plan": {"parameter_count": 330, "layers": [
            {"index": 0, "id": "stem", "op": "conv2d", "output_shape": [16, 8, 8],
             "parameter_count": 160},
            {"index": 1, "id": "head", "op": "dense", "output_shape": [10],
             "parameter_count": 170},
        ]},
    })  # fmt: skip
    out = capsys.readouterr().out
    lines = [line.split() for line in out.splitlines() if line.startswith("#  ")]
    assert lines == [["#", "0", "stem", "conv2d", "16x8x8", "160"],
                     ["#", "1", "head", "dense", "10", "170"]]  # fmt: skip
