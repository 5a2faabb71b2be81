"""Which specs pack together (ml.pack_key): numbers that leave shapes alone are out of the key,
everything else is in it; features the packed engine does not vectorise are blockers."""

from __future__ import annotations

import pytest

from ml.pack import PackMember, train_pack
from ml.pack_key import pack_blocker, pack_key
from ml.spec import JobSpec

BASE = {"dataset": {"source": {"kind": "builtin", "name": "digits"}}, "model": {"kind": "mlp"}}


def spec(**parts) -> JobSpec:
    return JobSpec.model_validate({**BASE, **parts})


SAME_KEY = [
    {"optimizer": {"kind": "adam", "lr": 0.01, "beta1": 0.8, "beta2": 0.99, "eps": 1e-8}},
    {"regularization": {"l1": 1e-4, "l2": 1e-3, "weight_decay": 0.1, "label_smoothing": 0.1}},
    {"seed": 7},
    {"init": {"kind": "random_uniform", "scale": 0.5}},
    {"early_stopping": {"patience": 2}, "checkpointing": {"every_n_epochs": 2}},
    {"metrics": ["f1_macro"]},
    {"regularization": {"dropout": 0.2}},  # a dropout layer or none: ml.pack_net aligns them
]
OTHER_KEY = [
    {"model": {"kind": "mlp", "hidden_units": [64]}},
    {"dataset": {"source": {"kind": "builtin", "name": "digits"}, "batch_size": 64}},
    {"epochs": 3},
    {"optimizer": {"kind": "adamw"}},
    {"schedule": {"kind": "cosine"}},
    {"clipping": {"kind": "global_norm"}},
    {"dataset": {"source": {"kind": "builtin", "name": "wine"}}},
    {"resources": {"device": "cpu"}},
]


@pytest.mark.parametrize("parts", SAME_KEY)
def test_numbers_that_leave_shapes_alone_are_out_of_the_key(parts):
    assert pack_key(spec(**parts)) == pack_key(spec())


@pytest.mark.parametrize("parts", OTHER_KEY)
def test_everything_else_is_in_the_key(parts):
    assert pack_key(spec(**parts)) != pack_key(spec())


def test_numbers_inside_kinds_are_out_of_the_key():
    a = spec(clipping={"kind": "norm", "max_norm": 1.0}, schedule={"kind": "step_decay"},
             regularization={"dropout": 0.1})  # fmt: skip
    b = spec(clipping={"kind": "norm", "max_norm": 5.0},
             schedule={"kind": "step_decay", "decay_rate": 0.1, "decay_step": 2,
                       "warmup": {"steps": 3}}, regularization={"dropout": 0.4})  # fmt: skip
    assert pack_key(a) == pack_key(b)


BLOCKED = [
    ({"optimizer": {"kind": "rmsprop"}}, "rmsprop"),
    ({"resources": {"precision": "bf16"}}, "precision"),
    ({"resources": {"compile": True}}, "compile"),
    ({"augmentation": {"horizontal_flip": True}}, "augmentation"),
    ({"model": {"kind": "resnet"}}, "resnet"),
    ({"warm_start": {"job_id": "j1"}}, "warm_start"),
    ({"loss": {"kind": "cross_entropy", "class_weight": "balanced"}}, "class_weight"),
    ({"model": {"kind": "graph", "layers": [{"op": "dense", "units": 4, "id": "a"},
      {"op": "dense", "units": 4}, {"op": "add", "inputs": ["a", -1]}]}}, "add"),
]  # fmt: skip


@pytest.mark.parametrize(("parts", "word"), BLOCKED)
def test_blockers_say_why(parts, word):
    reason = pack_blocker(spec(**parts))
    assert reason is not None and word in reason


def test_packable_kinds_have_no_blocker():
    assert pack_blocker(spec()) is None
    assert pack_blocker(spec(model={"kind": "cnn"}, optimizer={"kind": "sgd"})) is None
    graph = {"kind": "graph", "layers": [{"op": "flatten"}, {"op": "dense", "units": 8,
             "activation": "relu"}, {"op": "dropout", "rate": 0.1}]}  # fmt: skip
    assert pack_blocker(spec(model=graph)) is None


def test_train_pack_refuses_what_is_not_one_pack():
    with pytest.raises(ValueError, match="pack_key"):
        train_pack([PackMember("a", spec()), PackMember("b", spec(epochs=2))])
    with pytest.raises(ValueError, match="rmsprop"):
        blocked = spec(optimizer={"kind": "rmsprop"})
        train_pack([PackMember("a", blocked), PackMember("b", blocked)])
