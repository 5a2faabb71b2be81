"""Unknown spec fields one edit away get a suggestion; a builtin source omits unused options."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ml.spec import JobSpec
from ml.spec_base import closest_field, one_edit_apart

DIGITS = {"source": {"kind": "builtin", "name": "digits"}}


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("epoch", "epochs", True),  # insertion
        ("epochss", "epochs", True),  # deletion
        ("epocks", "epochs", True),  # substitution
        ("bacth_size", "batch_size", True),  # adjacent swap
        ("epochs", "epochs", False),  # the same name is not a typo
        ("epo", "epochs", False),
        ("seed", "name", False),
    ],
)
def test_one_edit_apart(a: str, b: str, expected: bool) -> None:
    assert one_edit_apart(a, b) is expected
    assert one_edit_apart(b, a) is expected


def test_closest_field_needs_exactly_one_candidate() -> None:
    assert closest_field("Epochs", ["epochs", "seed"]) == "epochs"
    assert closest_field("l3", ["l1", "l2"]) is None  # ambiguous: no guess
    assert closest_field("learning_rate", ["lr"]) is None


def errors(body: dict[str, object]) -> dict[tuple[object, ...], tuple[str, str]]:
    with pytest.raises(ValidationError) as exc:
        JobSpec.model_validate(body)
    return {tuple(e["loc"]): (e["type"], e["msg"]) for e in exc.value.errors()}


def test_unknown_fields_one_edit_away_say_which_field_was_meant() -> None:
    found = errors({
        "dataset": {**DIGITS, "bacth_size": 8},
        "optimizer": {"kind": "sgd", "lrr": 0.1},
        "epoch": 3,
        "colour": "blue",
        "seed": "x",
    })  # fmt: skip
    assert found[("epoch",)] == (
        "extra_forbidden",
        "Extra inputs are not permitted; did you mean `epochs`?",
    )
    assert found[("dataset", "bacth_size")][1].endswith("did you mean `batch_size`?")
    assert found[("optimizer", "sgd", "lrr")][1].endswith("did you mean `lr`?")
    assert found[("colour",)] == ("extra_forbidden", "Extra inputs are not permitted")
    assert found[("seed",)][0] == "int_parsing"  # other problems are still all listed


def test_builtin_source_omits_synthetic_options_unless_synthetic() -> None:
    digits = JobSpec.model_validate({"dataset": DIGITS}).model_dump(mode="json")
    assert digits["dataset"]["source"] == {"kind": "builtin", "name": "digits"}
    assert JobSpec.model_validate(digits).model_dump(mode="json") == digits  # round trip
    synthetic = JobSpec.model_validate(
        {"dataset": {"source": {"kind": "builtin", "name": "synthetic"}}}
    ).model_dump(mode="json")
    assert synthetic["dataset"]["source"]["synthetic"]["n_classes"] == 2
