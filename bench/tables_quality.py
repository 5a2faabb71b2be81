"""A real mixed-type table: an MLP job vs scikit-learn pipelines on the same splits (issue 29).

The data is ``penguins.csv`` as the ``palmerpenguins`` PyPI package ships it (344
penguins: species from island and sex (strings), year (an integer read as a category),
four measurements with missing values). It is read by the upload parser
(``api.datasets.tabular.parse_csv``, ``impute=mean``) and trained with ``ml.train`` on
the engine's own seeded, stratified split; the references are fitted on the same
training rows, from the raw cells:

- ``lr``:  ColumnTransformer(SimpleImputer(mean) + StandardScaler on the numbers,
  OneHotEncoder(handle_unknown="ignore") on the categories) + LogisticRegression;
- ``hgb``: the same columns (ordinal categories) + HistGradientBoostingClassifier.

Prints validation accuracy per seed and the mean of each; the goal is the MLP within
1 percentage point of the better reference.

    .venv/bin/python bench/tables_quality.py [--seeds 5] [--epochs 60]
"""

from __future__ import annotations

import argparse
import csv
import importlib.resources
import io
import statistics

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from api.datasets import codec
from api.datasets.schemas import DatasetOptions
from api.datasets.table import parse_csv
from ml.data import LoadedDataset, split_indices
from ml.encoding import TableColumns
from ml.engine import train
from ml.spec import JobSpec


def penguins() -> bytes:
    return (importlib.resources.files("palmerpenguins") / "data" / "penguins.csv").read_bytes()


def loaded(data: bytes) -> LoadedDataset:
    opts = DatasetOptions(task="auto", label_column="species", delimiter=",", impute="mean")
    parsed = parse_csv(data, opts)
    info = codec.dataset_info(codec.metadata(parsed))
    table = TableColumns(parsed.columns or [], parsed.feature_names or [], "mean")
    return LoadedDataset(parsed.x.astype(np.float32), parsed.labels.y, info, table)


def references(data: bytes, train: np.ndarray, val: np.ndarray, y: np.ndarray) -> dict[str, float]:
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    nums = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
    cats = ["island", "sex", "year"]
    x = np.array(
        [[float(r[c]) if r[c] != "NA" else np.nan for c in nums]
         + [r[c] if r[c] != "NA" else np.nan for c in cats] for r in rows],
        dtype=object,
    )  # fmt: skip
    num_idx, cat_idx = list(range(4)), list(range(4, 7))
    numbers = make_pipeline(SimpleImputer(strategy="mean"), StandardScaler())
    lr = make_pipeline(
        ColumnTransformer([("num", numbers, num_idx),
                           ("cat", OneHotEncoder(handle_unknown="ignore"), cat_idx)]),
        LogisticRegression(max_iter=2000),
    )  # fmt: skip
    hgb = make_pipeline(
        ColumnTransformer([("num", "passthrough", num_idx),
                           ("cat", OrdinalEncoder(handle_unknown="use_encoded_value",
                                                  unknown_value=-1), cat_idx)]),
        HistGradientBoostingClassifier(random_state=0),
    )  # fmt: skip
    out = {}
    for name, model in (("lr", lr), ("hgb", hgb)):
        model.fit(x[train], y[train])
        out[name] = float((model.predict(x[val]) == y[val]).mean())
    return out


def mlp_accuracy(ds: LoadedDataset, seed: int, epochs: int) -> float:
    spec = JobSpec.model_validate({
        "dataset": {"source": {"kind": "uploaded", "dataset_id": "penguins"},
                    "validation_split": 0.2, "batch_size": 32,
                    "preprocessing": {"normalization": "standard"}},
        "model": {"kind": "mlp", "hidden_units": [32]},
        "optimizer": {"kind": "adam", "lr": 0.01},
        "epochs": epochs, "seed": seed,
    })  # fmt: skip
    result = train(spec, dataset=ds)
    return float(result.final_metrics["val_accuracy"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=60)
    args = ap.parse_args()
    data = penguins()
    ds = loaded(data)
    y = np.asarray(ds.y)
    scores: dict[str, list[float]] = {"mlp": [], "lr": [], "hgb": []}
    for seed in range(args.seeds):
        train_rows, val_rows = split_indices(ds, 0.2, seed)
        ref = references(data, train_rows, val_rows, y)
        mlp = mlp_accuracy(ds, seed, args.epochs)
        for k, v in (("mlp", mlp), *ref.items()):
            scores[k].append(v)
        print(f"seed {seed}: val rows {len(val_rows)}  mlp {mlp:.4f}  lr {ref['lr']:.4f}  "
              f"hgb {ref['hgb']:.4f}")  # fmt: skip
    means = {k: statistics.mean(v) for k, v in scores.items()}
    best = max(means["lr"], means["hgb"])
    print("mean: " + "  ".join(f"{k} {v:.4f}" for k, v in means.items()))
    print(f"mlp - best reference: {100 * (means['mlp'] - best):+.2f} pp (goal >= -1 pp)")


if __name__ == "__main__":
    main()
