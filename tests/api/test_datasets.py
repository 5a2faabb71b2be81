"""Dataset uploads on SQLite: each format parsed and reported, dedup, team scope, jobs on uploads.

The file builders here (iris CSV, a text CSV, digits npz, a generated image zip)
are shared with tests/api/test_datasets_hostile.py and tests/worker/test_datasets_train.py.
"""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.db.session import session_factory
from api.settings import Settings
from api.teams.repository import create_api_key, get_or_create_team
from tests.conftest import FakeQueue

# --------------------------------------------------------------------------- files


def iris_csv() -> bytes:
    from sklearn.datasets import load_iris

    bunch = load_iris()
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["sepal_length", "sepal_width", "petal_length", "petal_width", "species"])
    for row, target in zip(bunch.data, bunch.target, strict=True):
        w.writerow([*row.tolist(), bunch.target_names[target]])
    return out.getvalue().encode()


POSITIVE = ["good", "great", "excellent", "lovely", "wonderful", "happy", "superb", "fine"]
NEGATIVE = ["bad", "awful", "terrible", "poor", "horrible", "sad", "dreadful", "nasty"]
FILLER = ["the", "movie", "was", "really", "a", "plot", "and", "acting", "very", "it"]


def text_csv(n: int = 80, seed: int = 0) -> bytes:
    """Short reviews whose sentiment words decide the label, with punctuation and stop words."""
    rng = np.random.default_rng(seed)
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["id", "review", "sentiment"])
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = list(rng.choice(FILLER, 5)) + list(
            rng.choice(POSITIVE if label == "pos" else NEGATIVE, 2)
        )
        rng.shuffle(words)
        w.writerow([i, "  " + " ".join(words).capitalize() + "!!  ", label])
    return out.getvalue().encode()


def digits_npz(n: int = 300, layout: str = "nhw", label_names: bool = False) -> bytes:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images[:n].astype(np.float32)  # (N, 8, 8)
    if layout == "nhwc":
        x = x[..., None]
    elif layout == "flat":
        x = x.reshape(len(x), -1)
    y: Any = d.target[:n]
    if label_names:
        y = np.array([f"digit{v}" for v in y])
    buf = io.BytesIO()
    np.savez_compressed(buf, x=x, y=y)
    return buf.getvalue()


def _pattern(kind: str, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    base = {"stripes_h": (yy // 2) % 2, "stripes_v": (xx // 2) % 2, "checker": (yy + xx) % 2}[kind]
    img = np.clip(base * 200 + rng.integers(0, 40, (h, w)), 0, 255).astype(np.uint8)
    return Image.fromarray(np.stack([img, img // 2, 255 - img], axis=-1), "RGB")


def image_zip(
    per_class: int = 8,
    classes: tuple[str, ...] = ("checker", "stripes_h", "stripes_v"),
    size: tuple[int, int] = (12, 12),
    root: str | None = None,
    sizes: list[tuple[int, int]] | None = None,
    seed: int = 0,
) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        k = 0
        for cls in classes:
            for i in range(per_class):
                s = sizes[k % len(sizes)] if sizes else size
                k += 1
                img = _pattern(cls, s, rng)
                fmt, ext = ("JPEG", "jpg") if i % 4 == 3 else ("PNG", "png")
                data = io.BytesIO()
                img.save(data, fmt)
                prefix = f"{root}/" if root else ""
                zf.writestr(f"{prefix}{cls}/{i:03d}.{ext}", data.getvalue())
        zf.writestr("__MACOSX/._junk", b"junk")
        zf.writestr(f"{root + '/' if root else ''}checker/.DS_Store", b"junk")
    return buf.getvalue()


def upload(
    client: TestClient, data: bytes, fmt: str, filename: str = "upload.bin", **fields: Any
) -> httpx.Response:
    form = {"format": fmt, **{k: str(v) for k, v in fields.items()}}
    r: httpx.Response = client.post("/v1/datasets", data=form, files={"file": (filename, data)})
    return r


def uploaded(client: TestClient, data: bytes, fmt: str, **fields: Any) -> dict[str, Any]:
    r = upload(client, data, fmt, **fields)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def job_on(dataset_id: str, batch_size: int = 16, **spec: Any) -> dict[str, Any]:
    return {
        "spec": {
            "dataset": {
                "source": {"kind": "uploaded", "dataset_id": dataset_id},
                "batch_size": batch_size,
            },
            **spec,
        }
    }


# --------------------------------------------------------------------------- formats


def test_csv_upload_is_validated_and_reported(client: TestClient) -> None:
    data = iris_csv()
    r = upload(client, data, "csv", filename="iris.csv", label_column="species")
    assert r.status_code == 201, r.text
    ds = r.json()
    assert r.headers["location"] == f"/v1/datasets/{ds['id']}"
    assert ds["name"] == "iris.csv" and ds["format"] == "csv"
    assert ds["sha256"] == hashlib.sha256(data).hexdigest() and ds["size_bytes"] == len(data)
    assert (ds["task"], ds["task_inferred"], ds["modality"]) == ("classification", True, "tabular")
    assert (ds["n_samples"], ds["n_features"], ds["n_classes"]) == (150, 4, 3)
    assert ds["image_shape"] is None and ds["target"] is None
    assert ds["classes"] == [
        {"name": "setosa", "count": 50},
        {"name": "versicolor", "count": 50},
        {"name": "virginica", "count": 50},
    ]
    assert ds["feature_names"] == ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    assert ds["options"]["label_column"] == "species" and ds["options"]["text_column"] is None
    assert any("inferred as classification" in n for n in ds["notes"])
    assert client.get(f"/v1/datasets/{ds['id']}").json() == ds


def test_the_same_content_twice_is_the_same_dataset(client: TestClient) -> None:
    data = iris_csv()
    first = uploaded(client, data, "csv", label_column="species", name="iris")
    r = upload(client, data, "csv", label_column="species", name="another name")
    assert r.status_code == 200, r.text
    assert r.json()["id"] == first["id"] and r.json()["name"] == "iris"
    # Other parsing options make another dataset from the same bytes.
    other = uploaded(
        client, data, "csv", label_column="species", feature_columns="petal_length,petal_width"
    )
    assert other["id"] != first["id"] and other["n_features"] == 2
    assert len(client.get("/v1/datasets").json()["items"]) == 2


def test_csv_regression_is_inferred_and_summarised(client: TestClient) -> None:
    rng = np.random.default_rng(0)
    rows = ["a;b;target"] + [
        f"{a:.3f};{b:.3f};{a * 2 + b:.4f}" for a, b in rng.normal(size=(40, 2))
    ]
    ds = uploaded(client, "\n".join(rows).encode(), "csv", label_column="target", delimiter=";")
    assert (ds["task"], ds["n_classes"], ds["classes"]) == ("regression", 0, [])
    assert set(ds["target"]) == {"min", "max", "mean", "std"}
    assert any("inferred as regression" in n for n in ds["notes"])
    # Integer labels with few values are classes unless the task says otherwise.
    rows = ["x,label"] + [f"{i},{i % 3}" for i in range(30)]
    assert uploaded(client, "\n".join(rows).encode(), "csv")["task"] == "classification"
    forced = uploaded(client, "\n".join(rows).encode(), "csv", task="regression")
    assert (forced["task"], forced["task_inferred"]) == ("regression", False)


def test_csv_missing_values_are_imputed_on_request(client: TestClient) -> None:
    rows = ["f1,f2,label", "1,2,a", ",4,a", "3,NA,b", "5,6,b"]
    data = "\n".join(rows).encode()
    r = upload(client, data, "csv")
    assert r.status_code == 422 and "impute=mean" in r.json()["detail"]
    ds = uploaded(client, data, "csv", impute="mean")
    assert ds["n_samples"] == 4
    assert any("2 missing values will be imputed" in n for n in ds["notes"])


def test_text_csv_upload(client: TestClient) -> None:
    ds = uploaded(client, text_csv(), "text_csv", text_column="review", label_column="sentiment")
    assert (ds["task"], ds["modality"], ds["n_samples"], ds["n_features"]) == (
        "classification", "text", 80, 0,
    )  # fmt: skip
    assert ds["classes"] == [{"name": "neg", "count": 40}, {"name": "pos", "count": 40}]
    assert any("ignored columns: id" in n for n in ds["notes"])


@pytest.mark.parametrize(
    ("layout", "image_shape", "n_features"),
    [("nhw", [1, 8, 8], 64), ("nhwc", [1, 8, 8], 64), ("flat", None, 64)],
)
def test_npz_upload(
    client: TestClient, layout: str, image_shape: list[int] | None, n_features: int
) -> None:
    ds = uploaded(client, digits_npz(layout=layout), "npz")
    assert ds["modality"] == ("tabular" if image_shape is None else "image")
    assert (ds["image_shape"], ds["n_features"], ds["n_samples"]) == (image_shape, n_features, 300)
    assert ds["n_classes"] == 10 and sum(c["count"] for c in ds["classes"]) == 300
    assert ds["options"]["layout"] == "auto"


def test_npz_string_labels(client: TestClient) -> None:
    ds = uploaded(client, digits_npz(label_names=True), "npz")
    assert ds["classes"][0]["name"] == "digit0" and ds["task"] == "classification"


def test_image_zip_upload(client: TestClient) -> None:
    ds = uploaded(client, image_zip(), "image_zip", color_mode="greyscale")
    assert (ds["modality"], ds["task"], ds["image_shape"]) == (
        "image",
        "classification",
        [1, 12, 12],
    )
    assert [c["name"] for c in ds["classes"]] == ["checker", "stripes_h", "stripes_v"]
    assert [c["count"] for c in ds["classes"]] == [8, 8, 8]
    assert any("skipped 2" in n for n in ds["notes"])
    # A top folder is stripped; mixed sizes are fine when a size is declared.
    mixed = image_zip(root="photos", sizes=[(12, 12), (16, 10)])
    ds = uploaded(client, mixed, "image_zip", image_size="10,9")
    assert ds["image_shape"] == [3, 10, 9] and ds["options"]["image_size"] == [10, 9]
    assert any("photos" in n for n in ds["notes"])


# --------------------------------------------------------------------------- reads, scope


def _other_team_client(client: TestClient, settings: Settings) -> TestClient:
    with session_factory(settings.resolved_database_url)() as session:
        team = get_or_create_team(session, "other-team")
        _, raw = create_api_key(session, team, "member")
        session.commit()
    return TestClient(client.app, headers={"Authorization": f"Bearer {raw}"})


def test_list_get_delete_and_team_scope(client: TestClient, settings: Settings) -> None:
    a = uploaded(client, iris_csv(), "csv", label_column="species")
    b = uploaded(client, digits_npz(), "npz")
    page = client.get("/v1/datasets", params={"limit": 1}).json()
    assert [d["id"] for d in page["items"]] == [b["id"]] and page["next_cursor"]
    page2 = client.get("/v1/datasets", params={"limit": 1, "cursor": page["next_cursor"]}).json()
    assert [d["id"] for d in page2["items"]] == [a["id"]] and page2["next_cursor"] is None
    assert client.get("/v1/datasets", params={"cursor": "!!"}).status_code == 422

    other = _other_team_client(client, settings)
    assert other.get("/v1/datasets").json()["items"] == []
    for r in (other.get(f"/v1/datasets/{a['id']}"), other.delete(f"/v1/datasets/{a['id']}")):
        assert r.status_code == 404
        assert r.headers["content-type"].startswith("application/problem+json")
    # The other team uploading the same bytes gets its own dataset.
    mine = uploaded(other, digits_npz(), "npz")
    assert mine["id"] != b["id"]

    r = client.delete(f"/v1/datasets/{a['id']}")
    assert r.status_code == 204 and r.content == b""
    assert client.get(f"/v1/datasets/{a['id']}").status_code == 404
    assert client.delete(f"/v1/datasets/{a['id']}").status_code == 404


# --------------------------------------------------------------------------- jobs on uploads


def test_jobs_on_uploads_pass_the_semantic_checks(
    client: TestClient, settings: Settings, fake_queue: FakeQueue
) -> None:
    iris = uploaded(client, iris_csv(), "csv", label_column="species")
    images = uploaded(client, image_zip(), "image_zip")
    text = uploaded(client, text_csv(), "text_csv", text_column="review", label_column="sentiment")

    r = client.post("/v1/jobs", json=job_on("nope"))
    assert r.status_code == 422
    assert [e["loc"] for e in r.json()["errors"]] == ["spec.dataset.source.dataset_id"]
    other = _other_team_client(client, settings)
    r = other.post("/v1/jobs", json=job_on(iris["id"]))
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == "spec.dataset.source.dataset_id"

    r = client.post(
        "/v1/jobs",
        json=job_on(iris["id"], model={"kind": "cnn"}, augmentation={"horizontal_flip": True}),
    )
    assert r.status_code == 422
    assert {"spec.model.kind", "spec.augmentation"} <= {e["loc"] for e in r.json()["errors"]}
    r = client.post("/v1/jobs", json=job_on(text["id"]))  # an mlp cannot read text
    assert r.status_code == 422 and r.json()["errors"][0]["loc"] == "spec.model.kind"
    assert fake_queue.published == []

    ok = [
        job_on(iris["id"], model={"kind": "mlp", "hidden_units": [8]}),
        job_on(
            images["id"], model={"kind": "cnn", "channels": [4]}, augmentation={"zoom_range": 0.1}
        ),
        job_on(text["id"], model={"kind": "text", "embedding_dim": 8, "vocab_size": 100}),
    ]
    for body in ok:
        r = client.post("/v1/jobs", json=body)
        assert r.status_code == 201, r.text
    # The plan of an upload comes from its stored facts.
    r = client.post("/v1/specs/validate", json={"spec": ok[0]["spec"]})
    assert r.status_code == 200, r.text
    plan = r.json()["plan"]
    assert (plan["train_samples"], plan["validation_samples"]) == (120, 30)
    assert plan["parameter_count"] == 4 * 8 + 8 + 8 * 3 + 3
    r = client.post("/v1/specs/validate", json={"spec": ok[2]["spec"]})
    assert r.status_code == 200, r.text
    assert r.json()["plan"]["parameter_count"] == 100 * 8 + 8 * 2 + 2


def test_a_dataset_in_use_cannot_be_deleted(client: TestClient) -> None:
    ds = uploaded(client, iris_csv(), "csv", label_column="species")
    job = client.post("/v1/jobs", json=job_on(ds["id"])).json()
    r = client.delete(f"/v1/datasets/{ds['id']}")
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert job["id"] in r.json()["detail"]
    assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
    assert client.delete(f"/v1/datasets/{ds['id']}").status_code == 204


def test_openapi_names_the_upload_form(client: TestClient) -> None:
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert not [n for n in schemas if n.startswith("Body_")]
    post = doc["paths"]["/v1/datasets"]["post"]
    assert post["operationId"] == "create_dataset" and post["tags"] == ["datasets"]
    body = post["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body == {"$ref": "#/components/schemas/DatasetUpload"}
    for status in ("413", "422", "401"):
        assert "application/problem+json" in post["responses"][status]["content"]
    ops = {
        (path, method): op["operationId"]
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if path.startswith("/v1/datasets")
    }
    assert ops == {
        ("/v1/datasets", "post"): "create_dataset",
        ("/v1/datasets", "get"): "list_datasets",
        ("/v1/datasets/{dataset_id}", "get"): "get_dataset",
        ("/v1/datasets/{dataset_id}", "delete"): "delete_dataset",
    }
    page = schemas["DatasetPage"]["properties"]
    assert set(page) == {"items", "next_cursor"}
