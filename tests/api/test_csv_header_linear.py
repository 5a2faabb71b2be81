"""The CSV header checks are linear in the number of columns (issue 18, item 8).

100,000 columns (the maximum) with every one named in ``feature_columns``: the
duplicate check and the column lookups used to compare every name with every
other (O(columns^2), 19-30 s of API CPU). The parse runs in a child process
whose CPU time is capped at 20 s -- about ten times what the linear checks
need, so a quadratic check is killed and the test fails.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.e2e

CHILD = """
import resource
resource.setrlimit(resource.RLIMIT_CPU, (20, 20))
from api.datasets.table import parse_csv
from api.datasets.schemas import DatasetOptions
n = 100_000
names = [f"c{i}" for i in range(n - 1)]
rows = [",".join(names + ["label"])] + [",".join(["1"] * (n - 1) + [str(k % 2)]) for k in range(4)]
opts = DatasetOptions(task="classification", label_column="label", feature_columns=names,
                      delimiter=",", impute="none")
parsed = parse_csv("\\n".join(rows).encode(), opts)
print(parsed.x.shape)
"""


def test_a_100000_column_header_is_checked_in_linear_time() -> None:
    out = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "(4, 99999)"
