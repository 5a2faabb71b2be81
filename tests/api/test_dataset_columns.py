"""CSV uploads with typed columns (issue 29): inference, overrides, every problem at once,
the format inferred, hostile shapes bounded."""

from __future__ import annotations

import codecs
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.datasets.errors import DatasetRejected
from api.datasets.schemas import ColumnType, DatasetOptions
from api.datasets.table import parse_csv
from tests.api.test_datasets import upload, uploaded

pytestmark = pytest.mark.unit


def mixed_csv(n: int = 60, holes: bool = True) -> bytes:
    """String, boolean, date, integer-category and numeric columns, some cells missing."""
    rng = np.random.default_rng(0)
    lines = ["id,city,member,joined,rooms,income,label"]
    for i in range(n):
        city = ["Oslo", "Lima", "Pune"][i % 3] if not (holes and i == 4) else ""
        member = ["yes", "no", "Yes"][i % 3]
        joined = f"20{10 + i % 9:02d}-0{1 + i % 9}-1{i % 10}"
        rooms = str(1 + i % 4)
        income = f"{rng.normal(50, 10):.2f}" if not (holes and i in (3, 7)) else "NA"
        lines.append(f"u{i:04d},{city},{member},{joined},{rooms},{income},{'ab'[i % 2]}")
    return ("\n".join(lines) + "\n").encode()


def opts(**kw: Any) -> DatasetOptions:
    base: dict[str, Any] = {"task": "auto", "label_column": "label", "delimiter": ","}
    return DatasetOptions(**(base | kw))


def types(parsed: Any) -> dict[str, str]:
    return {c["name"]: c["type"] for c in parsed.columns}


def test_every_column_gets_a_type_and_its_counts() -> None:
    parsed = parse_csv(mixed_csv(), opts(impute="mean"))
    assert types(parsed) == {
        "id": "identifier", "city": "categorical", "member": "boolean", "joined": "date",
        "rooms": "categorical", "income": "number",
    }  # fmt: skip
    by = {c["name"]: c for c in parsed.columns}
    assert by["city"]["categories"] == ["Lima", "Oslo", "Pune"] and by["city"]["missing"] == 1
    assert by["member"]["categories"] == ["false", "true"] and by["income"]["missing"] == 2
    assert parsed.feature_names == ["city", "member", "joined", "rooms", "income"]
    x = parsed.x
    # Stored as one float per row: category index, 0/1, days since the epoch, the number.
    assert x[0, 0] == 1 and np.isnan(x[4, 0]) and x[1, 0] == 0  # Oslo, missing, Lima
    assert x[0, 1] == 1 and x[1, 1] == 0 and x[2, 1] == 1  # yes, no, Yes
    assert x[0, 2] == np.datetime64("2010-01-10").astype(int)  # days since 1970-01-01
    assert np.isnan(x[3, 4]) and any("identifier" in n for n in parsed.notes)


def test_a_missing_number_names_the_option_that_accepts_it() -> None:
    with pytest.raises(DatasetRejected) as err:
        parse_csv(mixed_csv(), opts())
    (issue,) = err.value.issues
    assert issue.type == "missing_value" and "income" in issue.msg and "impute=mean" in issue.msg
    # A missing category is a category of its own: no error for 'city'.


def test_overrides_set_types() -> None:
    cols = {"rooms": ColumnType.number, "id": ColumnType.ignore, "city": ColumnType.ignore}
    parsed = parse_csv(mixed_csv(), opts(impute="median", columns=cols))
    assert types(parsed)["rooms"] == "number" and types(parsed)["id"] == "ignore"
    assert parsed.feature_names == ["member", "joined", "rooms", "income"]


def test_every_problem_is_listed_at_once() -> None:
    rows = ["f,g,when,h,label", "1,x,2020-01-01,1.5,a", "2,x,2020-13-45,,a", "3"]
    rows += ["abc,y,2020-01-03,2.5,b", "4,y,2020-01-04,1,b", "5,y,2020-01-05,2,b"]
    with pytest.raises(DatasetRejected) as err:
        parse_csv("\n".join(rows).encode(), opts(columns={"nope": ColumnType.number}))
    kinds = {i.type for i in err.value.issues}
    assert {"missing_column", "ragged_row"} <= kinds
    rows.pop(3)  # the ragged row: then the cell problems all come together
    with pytest.raises(DatasetRejected) as err:
        parse_csv("\n".join(rows).encode(), opts())
    kinds = {i.type for i in err.value.issues}
    assert kinds == {"feature_not_numeric", "feature_not_date", "missing_value"}
    assert "columns=f:categorical" in next(
        i.msg for i in err.value.issues if i.type == "feature_not_numeric"
    )


def test_hostile_tables_are_bounded() -> None:
    n = 50_000  # distinct per row: an identifier, left out, not 50,000 categories
    body = "\n".join(f"s{i},{i % 2},{i % 7}" for i in range(n))
    parsed = parse_csv(f"key,label,f\n{body}\n".encode(), opts())
    assert types(parsed)["key"] == "identifier" and "categories" not in parsed.columns[0]
    many = "\n".join(f"v{i % 20_000}x,{i % 2},1" for i in range(40_000))  # > MAX_CATEGORIES
    parsed = parse_csv(f"c,label,f\n{many}\n".encode(), opts())
    assert types(parsed)["c"] == "ignore" and "categories" in parsed.columns[0]["note"]
    wide = ",".join(f"c{i}" for i in range(10_000))
    cells = "\n".join(",".join(["1"] * 9_999 + [str(k % 2)]) for k in range(4))
    assert parse_csv(f"{wide}\n{cells}\n".encode(), opts(label_column="c9999")).x.shape == (
        4,
        9_999,
    )
    with pytest.raises(DatasetRejected) as err:  # a 1.1 MB cell
        parse_csv(f"t,label\n{'x' * 1_100_000},a\nb,b\n".encode(), opts())
    assert err.value.issues[0].type == "cell_too_long"


def test_encodings_bom_and_utf16() -> None:
    text = "f,label\n1,a\n2,a\n3,b\n4,b\n"
    for data in (codecs.BOM_UTF8 + text.encode(), text.encode("utf-16")):
        assert parse_csv(data, opts()).feature_names == ["f"]
    with pytest.raises(DatasetRejected) as err:
        parse_csv("f,label\n1,é\n".encode("latin-1"), opts())
    assert err.value.issues[0].type == "not_utf8"


def test_upload_answers_columns_and_infers_the_format(client: TestClient) -> None:
    r = client.post(
        "/v1/datasets",
        data={"impute": "mean", "columns": "id=ignore,rooms=number"},
        files={"file": ("people.csv", mixed_csv())},
    )
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["format"] == "csv" and ds["options"]["columns"] == {"id": "ignore", "rooms": "number"}
    assert [(c["name"], c["type"]) for c in ds["columns"]][:4] == [
        ("id", "ignore"), ("city", "categorical"), ("member", "boolean"), ("joined", "date"),
    ]  # fmt: skip
    semicolons = mixed_csv().replace(b",", b";")
    ds = uploaded(client, semicolons, "csv", filename="p.csv", impute="mean")
    assert ds["options"]["delimiter"] == ";"
    bad = upload(client, mixed_csv(), "csv", columns="rooms=colour")
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"] == "columns"


def test_spec_columns_that_do_not_fit_the_upload_are_a_422(client: TestClient) -> None:
    ds = uploaded(client, mixed_csv(), "csv", impute="mean")
    columns = {
        "town": {"type": "ignore"},
        "city": {"type": "number"},
        "member": {"encoding": "date_parts"},
        "joined": {"encoding": "one_hot"},
        "rooms": {"impute": "mean"},
        "id": {"type": "categorical"},
        "income": {"impute": "median", "missing_indicator": True},
    }
    spec = {"dataset": {"source": {"kind": "uploaded", "dataset_id": ds["id"]},
                        "columns": columns}}  # fmt: skip
    r = client.post("/v1/specs/validate", json={"spec": spec})
    assert r.status_code == 422, r.text
    found = {e["loc"]: e["type"] for e in r.json()["errors"]}
    assert found == {
        "spec.dataset.columns.town": "unknown_column",
        "spec.dataset.columns.city.type": "column_type",
        "spec.dataset.columns.member.encoding": "column_encoding",
        "spec.dataset.columns.joined.encoding": "column_encoding",
        "spec.dataset.columns.rooms.impute": "column_impute",
        "spec.dataset.columns.id.type": "column_not_stored",
    }
    ok = {"income": {"impute": "median", "missing_indicator": True}, "id": {"type": "ignore"}}
    spec["dataset"]["columns"] = ok  # type: ignore[index]
    assert client.post("/v1/specs/validate", json={"spec": spec}).status_code == 200


def test_the_plan_counts_the_encoded_inputs(client: TestClient) -> None:
    ds = uploaded(client, mixed_csv(), "csv", impute="mean")
    spec: dict[str, Any] = {
        "dataset": {"source": {"kind": "uploaded", "dataset_id": ds["id"]}},
        "model": {"kind": "mlp", "hidden_units": [4]},
    }
    r = client.post("/v1/specs/validate", json={"spec": spec})
    assert r.status_code == 200, r.text
    # city 3 + missing, member 2, joined 7 date parts, rooms 4, income 1 = 18 inputs
    assert r.json()["plan"]["parameter_count"] == 18 * 4 + 4 + 4 * 2 + 2
    spec["dataset"]["columns"] = {"city": {"encoding": "embedding", "embedding_dim": 3},
                                  "joined": {"encoding": "date_number"}}  # fmt: skip
    r = client.post("/v1/specs/validate", json={"spec": spec})
    assert r.json()["plan"]["parameter_count"] == (3 + 2 + 1 + 4 + 1) * 4 + 4 + 4 * 2 + 2
