"""The spec is importable without torch (the API relies on it); every process that changes a
job's status has the webhook outbox wired (the store imports no domain package)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.e2e  # fresh interpreters


def test_importing_the_api_and_the_spec_does_not_import_torch() -> None:
    code = (
        "import sys, ml.spec, ml.checks, ml.plan, api.app; "
        "bad = [m for m in ('torch', 'worker') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


@pytest.mark.parametrize("entry", ["api.app", "worker.tasks", "worker.reconciler"])
def test_every_process_entry_wires_the_webhook_outbox_to_status_changes(entry: str) -> None:
    code = (
        f"import {entry}; from api.ledger import repository as jobs; "
        "from api.webhooks.repository import enqueue_job_event; "
        "assert jobs._OBSERVERS == [enqueue_job_event], jobs._OBSERVERS"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_a_worker_trains_and_exports_builtin_data_without_importing_scikit_learn() -> None:
    """Importing scikit-learn costs a process ~1.2 s of CPU (SciPy, pandas): a worker's
    start and its jobs on the bundled and synthetic data do without it
    (ml/sklearn_numbers.py computes the same arrays). Optuna (~0.2 s) waits for the
    first trial a worker samples or judges."""
    code = """
import sys
import worker.reconciler, worker.runner, worker.tasks
import ml
from ml.checks import builtin_info
from ml.export import builtin_names
from ml.spec import JobSpec

late = [m for m in ("sklearn", "optuna") if m in sys.modules]
assert not late, f"imported at start: {late}"
synthetic = {"n_samples": 200, "n_classes": 3}
for name in ("digits", "iris", "synthetic"):
    source = {"kind": "builtin", "name": name, "synthetic": synthetic}
    spec = JobSpec.model_validate({"dataset": {"source": source}, "epochs": 1})
    ml.train(spec)
    builtin_names(spec.dataset.source, builtin_info(spec.dataset.source))
assert "sklearn" not in sys.modules, "imported by a job"
"""
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)
