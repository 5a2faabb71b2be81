"""Spec files and --set overrides: YAML-typed values by dotted path."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainforge.client import specfile
from trainforge.client.errors import EXIT_INVALID, CliError


@pytest.mark.parametrize(
    ("expr", "path", "value"),
    [
        ("optimizer.lr=3e-4", ["optimizer", "lr"], 3e-4),
        ("optimizer.lr=1e3", ["optimizer", "lr"], 1000.0),
        ("epochs=20", ["epochs"], 20),
        ("model.hidden_units=[64,32]", ["model", "hidden_units"], [64, 32]),
        ("deterministic=true", ["deterministic"], True),
        ("model.activation=gelu", ["model", "activation"], "gelu"),
        ("name=a=b", ["name"], "a=b"),  # only the first = splits
        ("spec.epochs=3", ["epochs"], 3),  # a leading `spec.` is the same path
        ("early_stopping=null", ["early_stopping"], None),
        ("model.hidden_units.1=16", ["model", "hidden_units", 1], 16),
        ("dataset.source={kind: builtin, name: iris}", ["dataset", "source"],
         {"kind": "builtin", "name": "iris"}),
        ("model.activation='1e3'", ["model", "activation"], "1e3"),  # quoted stays a string
    ],
)  # fmt: skip
def test_parse_set(expr: str, path: list[str | int], value: object) -> None:
    assert specfile.parse_set(expr) == (path, value)


@pytest.mark.parametrize("expr", ["optimizer.lr", "=3", "a..b=1", "a=[1,", " =1"])
def test_malformed_overrides_are_invalid_input(expr: str) -> None:
    with pytest.raises(CliError) as err:
        specfile.parse_set(expr)
    assert err.value.code == EXIT_INVALID and expr.strip() in err.value.message


def test_overrides_create_missing_parents_and_refuse_to_descend_into_values() -> None:
    spec: dict[str, object] = {"epochs": 3, "model": {"kind": "mlp", "hidden_units": [8, 4]}}
    specfile.apply_set(spec, "optimizer.lr=0.1")
    specfile.apply_set(spec, "model.hidden_units.0=32")
    assert spec["optimizer"] == {"lr": 0.1}
    assert spec["model"] == {"kind": "mlp", "hidden_units": [32, 4]}
    with pytest.raises(CliError, match="epochs is not a mapping"):
        specfile.apply_set(spec, "epochs.value=1")
    with pytest.raises(CliError, match=r"model\.hidden_units is a list of 2; no item 5"):
        specfile.apply_set(spec, "model.hidden_units.5=1")


def test_a_file_is_a_bare_spec_or_a_wrapper(tmp_path: Path) -> None:
    bare = tmp_path / "bare.json"
    bare.write_text('{"epochs": 2, "dataset": {"source": {"kind": "builtin", "name": "iris"}}}')
    sub = specfile.load(bare)
    assert sub.spec["epochs"] == 2 and sub.name is None and sub.body() == {"spec": sub.spec}
    wrapped = tmp_path / "wrapped.yaml"
    wrapped.write_text("name: run-1\npriority: 5\nspec:\n  epochs: 4\n")
    sub = specfile.load(wrapped)
    assert sub.body() == {"spec": {"epochs": 4}, "name": "run-1", "priority": 5}


@pytest.mark.parametrize(
    ("text", "message"),
    [("- 1\n- 2\n", "expected a mapping"), ("a: [1,\n", "not valid YAML"),
     ("spec: 3\n", "`spec` must be a mapping"), ("spec: {}\npriority: high\n", "priority")],
)  # fmt: skip
def test_bad_files_are_invalid_input(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(CliError, match=message) as err:
        specfile.load(path)
    assert err.value.code == EXIT_INVALID
    with pytest.raises(CliError, match="cannot read"):
        specfile.load(tmp_path / "missing.yaml")


def test_the_idempotency_key_follows_file_overrides_name_and_priority(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("epochs: 2\n")

    def key(sets: list[str], name: str | None = None, nonce: str = "") -> str:
        sub = specfile.load(path)
        specfile.apply_overrides(sub, sets)
        sub.name = name
        return sub.idempotency_key(nonce)

    assert key(["epochs=3"]) == key(["epochs=3"])
    assert len({key([]), key(["epochs=3"]), key(["epochs=3"], "n"), key([], nonce="x")}) == 4
    before = key([])
    path.write_text("epochs: 5\n")
    assert key([]) != before
