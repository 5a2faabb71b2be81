"""Image augmentation with Keras ImageDataGenerator meanings, batched on the device.

Every sample gets its own random transform, but the whole batch is resampled by
one ``affine_grid`` + ``grid_sample`` call (bilinear, Keras' interpolation
order 1): no per-sample Python loop, no host round trip.

Parameters are drawn as Keras ``get_random_transform`` draws them:
rotation θ ~ U(±rotation_range) degrees; shifts ~ U(±range) · side in pixels;
shear ~ U(±shear_range) degrees; zoom zx, zy ~ U(lower, upper) independently
(a number z means [1 - z, 1 + z]); each flip with probability 1/2.

The matrix is Keras' ``apply_affine_transform`` one, mapping an output pixel to
the input pixel it samples, in (x = column, y = row) coordinates about the
image centre: M = R(θ) · T(shift) · Shear · Zoom, flips applied last. Hence, as
in Keras, zoom > 1 zooms *out* (content shrinks), a positive angle turns the
content counter-clockwise as displayed (row 0 on top). One deliberate
difference: Keras (since its x/y swap fix) shifts along the width by
``height_shift_range`` and vice versa; here width_shift_range moves content
horizontally and height_shift_range vertically, as documented.

fill_mode: nearest → grid_sample 'border'; reflect → 'reflection' (about the
pixel edges, = scipy 'reflect'); constant → exactly ``cval`` wherever the sample
falls beyond the outermost pixel centres, and plain bilinear inside them (scipy
``mode='constant'``, what Keras runs; not 'grid-constant', which would blend the
edge pixel with cval).
Normalization has already been applied, so ``cval`` is in normalized units.

No step builds a tensor from Python data on the device (each would be a host to
device copy, and a synchronisation, per step): the constant coordinate scaling is
cached per (shape, device, dtype), and scalars go to kernels as Python numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import lru_cache

import torch
from torch import Tensor
from torch.nn import functional as F

from ml.spec import AugmentationSpec

_PADDING = {"nearest": "border", "reflect": "reflection", "constant": "border"}


@dataclass
class Transform:
    """Per-sample parameters, each a tensor of shape (N,)."""

    theta: Tensor  # degrees, counter-clockwise as displayed
    shift_x: Tensor  # pixels, content moves right when > 0
    shift_y: Tensor  # pixels, content moves down when > 0
    shear: Tensor  # degrees
    zoom_x: Tensor  # sampling scale: > 1 zooms out
    zoom_y: Tensor
    flip_h: Tensor  # bool
    flip_v: Tensor  # bool

    def to(self, device: torch.device | str) -> Transform:
        return Transform(*(getattr(self, f.name).to(device) for f in fields(self)))

    @staticmethod
    def identity(n: int, device: torch.device | str = "cpu") -> Transform:
        z = torch.zeros(n, device=device)
        o = torch.ones(n, device=device)
        f = torch.zeros(n, dtype=torch.bool, device=device)
        return Transform(z, z, z, z, o, o, f, f)


def is_active(spec: AugmentationSpec | None) -> bool:
    if spec is None:
        return False
    zoom = spec.zoom_range
    return bool(
        spec.rotation_range
        or spec.width_shift_range
        or spec.height_shift_range
        or spec.shear_range
        or (zoom != (1.0, 1.0) if isinstance(zoom, tuple) else zoom)
        or spec.horizontal_flip
        or spec.vertical_flip
    )


def zoom_bounds(spec: AugmentationSpec) -> tuple[float, float]:
    z = spec.zoom_range
    return (float(z[0]), float(z[1])) if isinstance(z, tuple) else (1.0 - z, 1.0 + z)


def random_transform(
    spec: AugmentationSpec, n: int, h: int, w: int, device: torch.device
) -> Transform:
    """Draw one transform per sample from the default generator of ``device``."""

    def sym(r: float, scale: float = 1.0) -> Tensor:  # U(-r, r) · scale
        return (torch.rand(n, device=device) * 2 - 1) * (r * scale)

    lo, hi = zoom_bounds(spec)
    return Transform(
        theta=sym(spec.rotation_range),
        shift_x=sym(spec.width_shift_range, w),
        shift_y=sym(spec.height_shift_range, h),
        shear=sym(spec.shear_range),
        zoom_x=lo + (hi - lo) * torch.rand(n, device=device),
        zoom_y=lo + (hi - lo) * torch.rand(n, device=device),
        flip_h=(torch.rand(n, device=device) < 0.5) & spec.horizontal_flip,
        flip_v=(torch.rand(n, device=device) < 0.5) & spec.vertical_flip,
    )


def slice_transform(t: Transform, lo: int, hi: int) -> Transform:
    """Samples ``lo:hi`` of a batch's transforms (a data-parallel rank's rows)."""
    return Transform(*(getattr(t, f.name)[lo:hi] for f in fields(t)))


def pixel_matrices(t: Transform) -> Tensor:
    """(N, 2, 3) matrices mapping centred output pixel (x, y) to centred input pixel.

    M = R(θ) · T(-shift) · Shear · Zoom · Flip in closed form (a dozen elementwise
    kernels instead of five batched 3x3 products): R(θ)·Shear(s) is
    [[cos θ, -sin(θ+s)], [sin θ, cos(θ+s)]], zoom and flip scale its columns, and the
    shift, which comes after the rotation, is rotated. Output pixel p samples input
    p - shift, so the content moves by +shift.
    """
    th = torch.deg2rad(t.theta)
    th_sh = th + torch.deg2rad(t.shear)
    cos, sin = torch.cos(th), torch.sin(th)
    col0 = t.zoom_x * (1 - 2 * t.flip_h.to(th.dtype))
    col1 = t.zoom_y * (1 - 2 * t.flip_v.to(th.dtype))
    row0 = (cos * col0, -torch.sin(th_sh) * col1, sin * t.shift_y - cos * t.shift_x)
    row1 = (sin * col0, torch.cos(th_sh) * col1, -(sin * t.shift_x + cos * t.shift_y))
    return torch.stack((torch.stack(row0, -1), torch.stack(row1, -1)), 1)


def apply_transform(x: Tensor, t: Transform, spec: AugmentationSpec) -> Tensor:
    """Resample the batch ``x`` (N, C, H, W) through the per-sample transforms ``t``."""
    n, c, h, w = x.shape
    m = pixel_matrices(t.to(x.device))
    to_unit = _to_unit(h, w, m.device, m.dtype)
    grid = F.affine_grid((m * to_unit).to(x.dtype), [n, c, h, w], align_corners=False)
    out = F.grid_sample(x, grid, padding_mode=_PADDING[spec.fill_mode], align_corners=False)
    if spec.fill_mode == "constant":
        return out.masked_fill(~_inside(grid, h, w)[:, None], spec.cval)
    return out


@lru_cache(maxsize=64)
def _to_unit(h: int, w: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Centred pixels -> normalized [-1, 1] coordinates (align_corners=False): x_px = u · W/2,
    so theta = S⁻¹ · M · S with S = diag(W/2, H/2), and the offset is divided by S.
    Built once per image shape and device (a fresh one per step would be a host copy), and
    filled from Python numbers on the device: not even the first step copies from the host."""
    out = torch.empty(6, dtype=dtype, device=device)
    for i, value in enumerate((1.0, h / w, 2 / w, w / h, 1.0, 2 / h)):
        out[i] = value
    return out.view(2, 3)


def _inside(grid: Tensor, h: int, w: int) -> Tensor:
    """(N, H, W): whether each sample lies within the outermost pixel centres, where scipy's
    mode='constant' interpolates; beyond them it writes cval. The tolerance absorbs the
    grid's rounding, so that a sample exactly on an edge centre (an integer shift, a
    quarter turn) counts as inside, as it does in scipy's exact arithmetic."""
    tol = 8 * torch.finfo(grid.dtype).eps * max(h, w)
    u, v = grid.unbind(-1)
    px = ((u + 1) * w - 1) / 2  # align_corners=False: u = -1 is the left pixel edge
    py = ((v + 1) * h - 1) / 2
    return (px >= -tol) & (px <= w - 1 + tol) & (py >= -tol) & (py <= h - 1 + tol)


def augment(x: Tensor, spec: AugmentationSpec) -> Tensor:
    """A randomly transformed copy of the training batch ``x`` (N, C, H, W)."""
    n, _, h, w = x.shape
    return apply_transform(x, random_transform(spec, n, h, w, x.device), spec)
