"""Augmentation geometry: known images land where they should, and the batched transform
equals scipy.ndimage.affine_transform (what Keras' ImageDataGenerator runs) per sample."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from ml.augment import Transform, apply_transform, augment, is_active
from ml.augment import random_transform as draw
from ml.checks import DatasetInfo
from ml.data import LoadedDataset, prepare
from ml.spec import AugmentationSpec, JobSpec
from ml.trainer import Trainer

NEAREST = AugmentationSpec(fill_mode="nearest")


def params(n: int = 1, **values) -> Transform:
    t = Transform.identity(n)
    for name, v in values.items():
        setattr(
            t,
            name,
            torch.as_tensor(v, dtype=torch.bool if "flip" in name else torch.float32)
            .expand(n)
            .clone(),
        )
    return t


def image(h: int = 8, w: int = 8, c: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.randn(1, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_identity_is_exact():
    x = image(7, 5, 3)
    assert torch.allclose(apply_transform(x, params(), NEAREST), x, atol=1e-6)


def test_rotation_by_90_degrees_is_rot90_counter_clockwise():
    x = image(8, 8)
    out = apply_transform(x, params(theta=90.0), NEAREST)
    assert torch.allclose(out, torch.rot90(x, 1, dims=(-2, -1)), atol=1e-5)
    out = apply_transform(x, params(theta=-90.0), NEAREST)
    assert torch.allclose(out, torch.rot90(x, -1, dims=(-2, -1)), atol=1e-5)


def test_shift_moves_content_right_and_down_with_fill_modes():
    x = image(6, 8)
    right = apply_transform(x, params(shift_x=2.0), NEAREST)
    assert torch.allclose(right[..., 2:], x[..., :-2], atol=1e-6)
    assert torch.allclose(right[..., :2], x[..., :1].expand(-1, -1, -1, 2), atol=1e-6)  # nearest
    down = apply_transform(
        x, params(shift_y=1.0), AugmentationSpec(fill_mode="constant", cval=-3.0)
    )
    assert torch.allclose(down[..., 1:, :], x[..., :-1, :], atol=1e-6)
    assert torch.allclose(down[..., 0, :], torch.full((8,), -3.0))
    refl = apply_transform(x, params(shift_x=2.0), AugmentationSpec(fill_mode="reflect"))
    # scipy 'reflect' (d c b a | a b c d): column -1 is column 0, column -2 is column 1
    assert torch.allclose(refl[..., 0], x[..., 1], atol=1e-6)
    assert torch.allclose(refl[..., 1], x[..., 0], atol=1e-6)


def test_flips():
    x = image(5, 7, 2)
    assert torch.allclose(apply_transform(x, params(flip_h=True), NEAREST), x.flip(-1), atol=1e-6)
    assert torch.allclose(apply_transform(x, params(flip_v=True), NEAREST), x.flip(-2), atol=1e-6)


def test_zoom_on_a_ramp():
    # A linear ramp is reproduced exactly by bilinear sampling: zoom z samples the input at
    # centre + z·(p - centre), so z = 0.5 magnifies 2x (Keras: values < 1 zoom in).
    h, w = 9, 11
    cols = torch.arange(w, dtype=torch.float32).expand(h, w)
    rows = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
    x = torch.stack([cols, rows])[None]
    out = apply_transform(x, params(zoom_x=0.5, zoom_y=0.25), NEAREST)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    assert torch.allclose(out[0, 0], cx + 0.5 * (cols - cx), atol=1e-5)
    assert torch.allclose(out[0, 1], cy + 0.25 * (rows - cy), atol=1e-5)


def keras_matrix(t: Transform, i: int) -> np.ndarray:
    """Keras apply_affine_transform's matrix, rebuilt with numpy in (x = col, y = row)."""
    th, sh = np.deg2rad(t.theta[i].item()), np.deg2rad(t.shear[i].item())
    rotation = np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]])
    # Keras samples p + (tx, ty); our shift says where the content goes, hence the minus.
    shift = np.array([[1, 0, -t.shift_x[i].item()], [0, 1, -t.shift_y[i].item()], [0, 0, 1]])
    shear = np.array([[1, -np.sin(sh), 0], [0, np.cos(sh), 0], [0, 0, 1]])
    zoom = np.diag([t.zoom_x[i].item(), t.zoom_y[i].item(), 1.0])
    # Keras flips after the affine transform: out(p) = affine(flip(p)).
    flip = np.diag([-1.0 if t.flip_h[i] else 1.0, -1.0 if t.flip_v[i] else 1.0, 1.0])
    return rotation @ shift @ shear @ zoom @ flip


def scipy_reference(
    x: np.ndarray, t: Transform, i: int, mode: str, cval: float = 0.0
) -> np.ndarray:
    """What Keras runs for sample i: scipy, order 1, the matrix about the image centre."""
    m = keras_matrix(t, i)
    _, h, w = x.shape
    p = np.array([[0, 1], [1, 0]])  # (x, y) <-> (row, col)
    a, shift = p @ m[:2, :2] @ p, p @ m[:2, 2]
    centre = np.array([(h - 1) / 2, (w - 1) / 2])
    offset = shift - a @ centre + centre
    return np.stack([ndimage.affine_transform(ch, a, offset, order=1, mode=mode, cval=cval)
                     for ch in x])  # fmt: skip


@pytest.mark.parametrize(
    ("fill_mode", "scipy_mode"),
    [("nearest", "nearest"), ("reflect", "reflect"), ("constant", "constant")],
)
def test_batched_transform_equals_scipy_per_sample(fill_mode, scipy_mode):
    spec = AugmentationSpec(rotation_range=40, width_shift_range=0.2, height_shift_range=0.3,
                            shear_range=20, zoom_range=(0.7, 1.4), horizontal_flip=True,
                            vertical_flip=True, fill_mode=fill_mode, cval=0.5)  # fmt: skip
    torch.manual_seed(0)
    x = torch.randn(16, 2, 10, 12, dtype=torch.float64).float()
    t = draw(spec, 16, 10, 12, torch.device("cpu"))
    out = apply_transform(x, t, spec)
    for i in range(16):
        ref = scipy_reference(x[i].double().numpy(), t, i, scipy_mode, cval=0.5)
        np.testing.assert_allclose(out[i].numpy(), ref, atol=2e-4)


def test_constant_writes_exactly_cval_outside_the_image():
    # Keras (scipy mode='constant'): a sample beyond the outermost pixel centres is cval,
    # never a blend of the edge pixel with cval (that is scipy's 'grid-constant').
    spec = AugmentationSpec(fill_mode="constant", cval=10.0)
    x = image(12, 12)
    out = apply_transform(x, params(shift_x=0.5, theta=17.0), spec)
    ref = scipy_reference(x[0].double().numpy(), params(shift_x=0.5, theta=17.0), 0, "constant",
                          cval=10.0)  # fmt: skip
    np.testing.assert_allclose(out[0].numpy(), ref, atol=2e-4)
    half = apply_transform(x, params(shift_x=0.5), spec)
    assert torch.equal(half[..., 0], torch.full_like(half[..., 0], 10.0))
    assert torch.allclose(half[..., 1:], (x[..., 1:] + x[..., :-1]) / 2, atol=1e-5)


def test_random_parameters_follow_keras_ranges():
    spec = AugmentationSpec(rotation_range=30, width_shift_range=0.1, height_shift_range=0.2,
                            shear_range=10, zoom_range=0.25, horizontal_flip=True)  # fmt: skip
    torch.manual_seed(0)
    t = draw(spec, 20000, 8, 10, torch.device("cpu"))
    assert t.theta.abs().max() <= 30 and t.theta.abs().max() > 29.5
    assert t.shift_x.abs().max() <= 0.1 * 10 and t.shift_y.abs().max() <= 0.2 * 8
    assert t.shear.abs().max() <= 10
    for z in (t.zoom_x, t.zoom_y):
        assert z.min() >= 0.75 and z.max() <= 1.25
    assert not torch.equal(t.zoom_x, t.zoom_y)  # drawn independently, as Keras does
    assert t.flip_h.float().mean().item() == pytest.approx(0.5, abs=0.02)
    assert not t.flip_v.any()
    assert t.theta.std().item() == pytest.approx(30 / math.sqrt(3), rel=0.03)


def test_each_sample_gets_its_own_transform_and_a_batch_is_one_call():
    spec = AugmentationSpec(rotation_range=90)
    x = image(8, 8).expand(4, -1, -1, -1).contiguous()
    torch.manual_seed(1)
    out = augment(x, spec)
    assert out.shape == x.shape
    assert not torch.allclose(out[0], out[1])


def test_is_active():
    assert not is_active(None)
    assert not is_active(AugmentationSpec())
    assert not is_active(AugmentationSpec(zoom_range=(1.0, 1.0)))
    assert is_active(AugmentationSpec(zoom_range=0.1))
    assert is_active(AugmentationSpec(vertical_flip=True))


def test_augmentation_is_for_training_batches_only():
    spec = JobSpec.model_validate(
        {"dataset": {"source": {"kind": "builtin", "name": "digits"}},
         "model": {"kind": "cnn", "channels": [4]},
         "augmentation": {"rotation_range": 90, "horizontal_flip": True}}
    )  # fmt: skip
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 1, 8, 8)).astype(np.float32)
    info = DatasetInfo("classification", "image", 40, 64, (1, 8, 8), 2)
    cpu = torch.device("cpu")
    trainer = Trainer(spec, prepare(spec, LoadedDataset(x, rng.integers(0, 2, 40), info), cpu), cpu)
    trainer.model.eval()
    with torch.no_grad():
        out = trainer.model(trainer.data.x_val)
    expected = torch.nn.functional.cross_entropy(out, trainer.data.y_val).item()
    assert trainer.evaluate()["val_loss"] == pytest.approx(expected, rel=1e-6)
    assert trainer.evaluate() == trainer.evaluate()
