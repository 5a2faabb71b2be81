"""Column encodings fitted on a training split equal scikit-learn's on the same rows (issue 29).

The table goes through the real upload parser (stored form: category indices, days, NaN
for missing); scikit-learn gets the raw strings and numbers of the same cells.
"""

from __future__ import annotations

import csv
import io
import math
from datetime import date
from typing import Any

import numpy as np
import pytest
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

from api.datasets.schemas import DatasetOptions
from api.datasets.table import parse_csv
from ml.column_spec import ColumnSpec
from ml.encoding import EncodingError, date_parts, fit_table

pytestmark = pytest.mark.unit


def table(n: int = 120) -> bytes:
    rng = np.random.default_rng(1)
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["city", "income", "joined", "label"])
    for i in range(n):
        city = ["Oslo", "Lima", "Pune", "Kyiv"][i % 4] if i % 11 else ""
        if i >= n - 10:
            city = "Rome"  # only in the last rows: unseen when those are not in training
        income = "" if i % 7 == 0 else f"{rng.normal(50, 10):.3f}"
        joined = "" if i % 13 == 0 else str(date(2010 + i % 9, 1 + i % 12, 1 + i % 28))
        w.writerow([city, income, joined, "ab"[i % 2]])
    return out.getvalue().encode()


def parsed_and_raw() -> tuple[Any, list[dict[str, str]]]:
    data = table()
    opts = DatasetOptions(task="auto", label_column="label", delimiter=",", impute="mean")
    parsed = parse_csv(data, opts)
    raw = list(csv.DictReader(io.StringIO(data.decode())))
    return parsed, raw


TRAIN = np.arange(0, 110)  # the "Rome" rows (110..119) are never trained on


def fit(parsed: Any, **specs: ColumnSpec) -> Any:
    return fit_table(parsed.x[TRAIN], parsed.columns, parsed.feature_names, specs, "mean")


def raw_column(raw: list[dict[str, str]], name: str) -> np.ndarray:
    return np.array([r[name] if r[name] else np.nan for r in raw], dtype=object).reshape(-1, 1)


def test_one_hot_equals_scikit_learn_with_unknowns_and_missing() -> None:
    parsed, raw = parsed_and_raw()
    enc = fit(parsed, income=ColumnSpec(type="ignore"), joined=ColumnSpec(type="ignore"))
    ours = enc.transform(parsed.x)
    cities = raw_column(raw, "city")
    ref = OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(cities[TRAIN])
    assert enc.columns[0].labels == [str(c) for c in ref.categories_[0][:-1]]  # nan last
    np.testing.assert_array_equal(ours, ref.transform(cities))
    assert ours[-1].sum() == 0  # 'Rome': unseen in training, all zeros


def test_ordinal_equals_scikit_learn() -> None:
    parsed, raw = parsed_and_raw()
    spec = {"city": ColumnSpec(encoding="ordinal"), "income": ColumnSpec(type="ignore"),
            "joined": ColumnSpec(type="ignore")}  # fmt: skip
    ours = fit(parsed, **spec).transform(parsed.x)[:, 0]
    cities = raw_column(raw, "city")
    k = 4  # training categories; a missing cell is a category of its own, the last
    ref = OrdinalEncoder(
        handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=k
    ).fit(cities[TRAIN])
    np.testing.assert_array_equal(ours, ref.transform(cities)[:, 0])
    assert ours[-1] == -1 and set(ours[TRAIN]) == {0, 1, 2, 3, 4}


@pytest.mark.parametrize("how", ["mean", "median", "constant"])
def test_imputation_equals_simple_imputer_with_indicator(how: str) -> None:
    parsed, raw = parsed_and_raw()
    spec = ColumnSpec(impute=how, fill_value=-3.5, missing_indicator=True)  # type: ignore[arg-type]
    enc = fit(parsed, income=spec, city=ColumnSpec(type="ignore"), joined=ColumnSpec(type="ignore"))
    ours = enc.transform(parsed.x)
    income = np.array([float(r["income"]) if r["income"] else np.nan for r in raw])[:, None]
    ref = SimpleImputer(strategy=how, fill_value=-3.5, add_indicator=True).fit(income[TRAIN])
    np.testing.assert_allclose(ours, ref.transform(income), rtol=1e-6)  # float32 storage


def test_dates_become_documented_parts() -> None:
    days = np.array([(date(2024, 2, 29) - date(1970, 1, 1)).days], dtype=np.float64)
    year, ms, mc, ws, wc, ys, yc = date_parts(days)[0]
    tau = 2 * math.pi
    assert year == 2024
    assert (ms, mc) == pytest.approx((math.sin(tau * 1 / 12), math.cos(tau * 1 / 12)))
    assert (ws, wc) == pytest.approx((math.sin(tau * 3 / 7), math.cos(tau * 3 / 7)))  # Thursday
    assert (ys, yc) == pytest.approx((math.sin(tau * 59 / 365.25), math.cos(tau * 59 / 365.25)))


def test_defaults_widths_and_scaling_mask() -> None:
    parsed, _ = parsed_and_raw()
    enc = fit(parsed, joined=ColumnSpec(missing_indicator=True))
    # city one-hot (4 + missing), income, joined date parts (7) + indicator
    assert enc.width == 5 + 1 + 8
    assert enc.scalable().tolist() == [False] * 5 + [True] + [True] + [False] * 7
    x = enc.transform(parsed.x)
    assert np.isfinite(x).all()


def test_embedding_indices_and_errors() -> None:
    parsed, _ = parsed_and_raw()
    enc = fit(parsed, city=ColumnSpec(encoding="embedding", embedding_dim=3))
    codes = enc.transform(parsed.x)[:, 0]
    assert set(codes[TRAIN]) == {1, 2, 3, 4, 5} and codes[-1] == 0  # 5 = missing, 0 = unseen
    assert enc.embeddings() == [(0, 6, 3)]
    with pytest.raises(EncodingError, match="no column 'town'"):
        fit(parsed, town=ColumnSpec(type="ignore"))
    with pytest.raises(EncodingError, match="cannot be used as number"):
        fit(parsed, city=ColumnSpec(type="number"))
    none = fit(parsed, income=ColumnSpec(impute="none"))
    with pytest.raises(EncodingError, match=r"dataset\.columns\.income\.impute"):
        none.transform(parsed.x)
