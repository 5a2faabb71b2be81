"""A Python client generated from the committed openapi.json (openapi-python-client,
``--fail-on-warning``) drives a live ``trainforge up`` with its typed models."""

from __future__ import annotations

import hashlib
import importlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from tests.conftest import REPO
from tests.procs import UpServer, trainforge_up

pytestmark = pytest.mark.e2e

OPENAPI = REPO / "openapi.json"
PACKAGE = "trainforge_client"
EPOCHS = 3


Live = UpServer


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpServer]:
    """`trainforge up` as a user starts it."""
    with trainforge_up(tmp_path_factory.mktemp("up")) as up:
        yield up


@pytest.fixture(scope="module")
def tf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """The generated package, imported from a temporary folder on sys.path."""
    out = tmp_path_factory.mktemp("client")
    config = out / "config.json"  # no post hooks: nothing but the generator itself runs
    config.write_text(json.dumps({"post_hooks": [], "package_name_override": PACKAGE}))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(OPENAPI),
            "--meta",
            "none",
            "--output-path",
            str(out / PACKAGE),
            "--config",
            str(config),
            "--fail-on-warning",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (
        "openapi-python-client could not generate a clean client from openapi.json "
        "(is the `dev` extra installed?):\n" + result.stdout + result.stderr
    )
    sys.path.insert(0, str(out))
    importlib.invalidate_caches()
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(out))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def _module(name: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.{name}")


def _operation_ids() -> set[str]:
    doc = json.loads(OPENAPI.read_text(encoding="utf-8"))
    return {op["operationId"] for item in doc["paths"].values() for op in item.values()}


@pytest.fixture(scope="module")
def client(tf: ModuleType, live: Live) -> Any:
    return tf.AuthenticatedClient(
        base_url=live.base, token=live.key, raise_on_unexpected_status=True
    )


@pytest.fixture(scope="module")
def finished_job(client: Any, live: Live) -> Any:
    """An iris job submitted and followed to its end with the typed client."""
    m = _module("models")
    create_job, get_job = _module("api.jobs.create_job"), _module("api.jobs.get_job")
    body = m.JobCreate(
        name="contract-iris",
        spec=m.JobSpec(
            dataset=m.DatasetSpec(source=m.BuiltinSource(name=m.BuiltinName.IRIS), batch_size=16),
            model=m.MLPModel(hidden_units=[16], activation=m.Activation.RELU),
            optimizer=m.SGDOptimizer(lr=0.1, momentum=0.9),
            schedule=m.CosineSchedule(),
            epochs=EPOCHS,
            seed=0,
        ),
    )
    created = create_job.sync_detailed(client=client, body=body)
    assert created.status_code == 201, created.content
    job = created.parsed
    assert isinstance(job, m.JobRead) and job.status == m.JobStatus.QUEUED
    # The resolved spec comes back as typed variants, defaults filled in.
    assert isinstance(job.spec.optimizer, m.SGDOptimizer) and job.spec.optimizer.momentum == 0.9
    assert isinstance(job.spec.init, m.FrameworkDefaultInit)
    assert isinstance(job.spec.dataset.source, m.BuiltinSource)
    deadline = time.monotonic() + 180
    while job.status not in (m.JobStatus.SUCCEEDED, m.JobStatus.FAILED, m.JobStatus.CANCELED):
        assert time.monotonic() < deadline, f"job still {job.status}\n{live.log.read_text()}"
        time.sleep(0.5)
        job = get_job.sync(job_id=job.id, client=client)
        assert isinstance(job, m.JobRead)
    assert job.status == m.JobStatus.SUCCEEDED, (job.error, live.log.read_text()[-3000:])
    return job


def test_submit_poll_and_read_metrics_with_the_generated_client(
    client: Any, finished_job: Any
) -> None:
    m = _module("models")
    get_job_metrics = _module("api.jobs.get_job_metrics")
    assert finished_job.status_reason == m.StatusReason.COMPLETED
    assert finished_job.progress.epoch == EPOCHS
    metrics = get_job_metrics.sync(
        job_id=finished_job.id, client=client, name=["val_accuracy", "loss"]
    )
    assert isinstance(metrics, m.MetricsRead)
    series = {s.name: s.points for s in metrics.series}
    assert set(series) == {"val_accuracy", "loss"}
    for points in series.values():
        assert [p.epoch for p in points] == list(range(EPOCHS))
        assert all(isinstance(p, m.MetricValue) for p in points)
    assert isinstance(series["val_accuracy"][-1].value, float)
    assert series["val_accuracy"][-1].value > 0.5  # iris, 3 epochs of SGD with momentum


def test_errors_parse_as_problems(tf: ModuleType, live: Live) -> None:
    m = _module("models")
    create_job, get_job = _module("api.jobs.create_job"), _module("api.jobs.get_job")
    anonymous = tf.Client(base_url=live.base)
    r = get_job.sync_detailed(job_id="nope", client=anonymous)
    assert r.status_code == 401 and isinstance(r.parsed, m.Problem) and r.parsed.status == 401
    keyed = tf.AuthenticatedClient(base_url=live.base, token=live.key)
    r = get_job.sync_detailed(job_id="nope", client=keyed)
    assert r.status_code == 404 and isinstance(r.parsed, m.Problem)
    bad = m.JobCreate(
        spec=m.JobSpec(
            dataset=m.DatasetSpec(source=m.BuiltinSource(name=m.BuiltinName.IRIS)),
            optimizer=m.AdamOptimizer(lr=-1.0),
        )
    )
    r = create_job.sync_detailed(client=keyed, body=bad)
    assert r.status_code == 422 and isinstance(r.parsed, m.Problem)
    assert "spec.optimizer.lr" in [e.loc for e in r.parsed.errors]


def test_job_spec_schema_through_the_generated_client(client: Any) -> None:
    m = _module("models")
    get_job_spec_schema = _module("api.specs.get_job_spec_schema")
    from ml.spec import SPEC_VERSION

    schema = get_job_spec_schema.sync(client=client)
    assert isinstance(schema, m.JobSpecSchemaRead) and schema.spec_version == SPEC_VERSION
    assert schema.json_schema["title"] == "JobSpec"


def test_download_a_checkpoint_with_the_generated_client(client: Any, finished_job: Any) -> None:
    missing = [
        op for op in ("list_checkpoints", "download_checkpoint") if op not in _operation_ids()
    ]
    if missing:
        pytest.skip(
            f"openapi.json has no operation {' or '.join(missing)} yet: the checkpoint routes "
            "are not in the contract (run `make openapi` once they land)"
        )
    list_checkpoints = _module("api.jobs.list_checkpoints")
    download_checkpoint = _module("api.jobs.download_checkpoint")
    page = list_checkpoints.sync(job_id=finished_job.id, client=client)
    assert page.items, "a finished job keeps at least one checkpoint"
    best = next((c for c in page.items if c.is_best), page.items[-1])
    r = download_checkpoint.sync_detailed(
        job_id=finished_job.id, checkpoint_id=best.id, client=client
    )
    assert r.status_code == 200
    data = r.content
    assert len(data) == best.size_bytes and hashlib.sha256(data).hexdigest() == best.sha256
    from safetensors.numpy import load

    assert load(data), "the checkpoint holds tensors"


def test_a_graph_spec_validates_with_the_generated_client(client: Any) -> None:
    """Layers are typed variants on `op`; the plan's layers come back typed and add up."""
    m = _module("models")
    validate = _module("api.specs.validate_job_spec")
    spec = m.JobSpec(
        dataset=m.DatasetSpec(source=m.BuiltinSource(name=m.BuiltinName.DIGITS)),
        model=m.GraphModel(
            layers=[
                m.Conv2DLayer(filters=8, padding=m.Padding.SAME, id="stem"),
                m.BatchNormLayer(),
                m.ActivationLayer(fn=m.Activation.RELU),
                m.AddLayer(inputs=["stem", -1]),
                m.GlobalAvgPoolLayer(),
                m.DenseLayer(units=16, init=m.InitName.HE_NORMAL, l2=1e-4),
            ]
        ),
        epochs=1,
    )
    result = validate.sync(client=client, body=m.SpecValidateRequest(spec=spec))
    assert isinstance(result, m.SpecValidation)
    assert isinstance(result.spec.model, m.GraphModel)
    assert isinstance(result.spec.model.layers[0], m.Conv2DLayer)
    layers = result.plan.layers
    assert [la.op for la in layers] == ["conv2d", "batch_norm", "activation", "add",
                                        "global_avg_pool", "dense", "dense"]  # fmt: skip
    assert layers[0].output_shape == [8, 8, 8] and layers[-1].id == "head"
    assert sum(la.parameter_count for la in layers) == result.plan.parameter_count
