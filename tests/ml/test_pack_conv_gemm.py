"""The members' first convolution as one GEMM (``ml.pack_net._conv_as_one_gemm``) against
PyTorch's own convolution of each member, forward and gradients, over the geometries the
graph spec can give it: PyTorch's `same` (odd and even kernels: the odd pixel after),
`valid`, explicit padding, strides, dilation, with and without bias, 1 and 3 channels."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ml.pack_net import _conv_as_one_gemm, _gemm_conv_pays

M, B, C_OUT = 3, 5, 4

GEOMETRIES = [
    # (in channels, kernel, stride, padding, dilation, bias, input H x W)
    (1, 3, 1, "same", 1, True, (8, 8)),
    (1, 2, 1, "same", 1, True, (8, 8)),  # even kernel: PyTorch pads 0 before, 1 after
    (3, (3, 2), 1, "same", (2, 1), False, (9, 7)),
    (1, 3, 1, "valid", 2, True, (8, 8)),
    (3, 3, 2, 1, 1, True, (9, 8)),
    (1, (1, 3), (2, 1), 0, 1, False, (6, 5)),
]


@pytest.mark.parametrize(("c_in", "k", "stride", "padding", "dilation", "bias", "hw"), GEOMETRIES)
def test_one_gemm_is_each_members_convolution(c_in, k, stride, padding, dilation, bias, hw):
    torch.manual_seed(0)
    convs = [nn.Conv2d(c_in, C_OUT, k, stride, padding, dilation, bias=bias) for _ in range(M)]
    w = torch.stack([c.weight.detach() for c in convs]).requires_grad_()
    b = torch.stack([c.bias.detach() for c in convs]).requires_grad_() if bias else None
    x = torch.randn(B, c_in, *hw)
    assert _gemm_conv_pays(x, w)

    y = _conv_as_one_gemm(x, w, b, convs[0])
    refs = [c(x) for c in convs]
    assert y.shape == (B, M * C_OUT, *refs[0].shape[2:])
    assert y.is_contiguous(memory_format=torch.channels_last)
    for i, ref in enumerate(refs):
        torch.testing.assert_close(y[:, i * C_OUT : (i + 1) * C_OUT], ref, rtol=1e-5, atol=1e-6)

    upstream = torch.randn_like(y)
    y.backward(upstream)  # type: ignore[no-untyped-call]
    for i, (conv, ref) in enumerate(zip(convs, refs, strict=True)):
        ref.backward(upstream[:, i * C_OUT : (i + 1) * C_OUT])  # type: ignore[no-untyped-call]
        assert w.grad is not None and conv.weight.grad is not None
        torch.testing.assert_close(w.grad[i], conv.weight.grad, rtol=1e-5, atol=1e-5)
        if b is not None:
            assert b.grad is not None and conv.bias is not None and conv.bias.grad is not None
            torch.testing.assert_close(b.grad[i], conv.bias.grad, rtol=1e-5, atol=1e-5)


def test_wide_patches_keep_the_grouped_convolution():
    """A patch wider than the bound (5x5 over 3 channels: 75) stays a direct convolution:
    its patches would cost 75x the input."""
    x = torch.randn(B, 3, 8, 8)
    assert not _gemm_conv_pays(x, torch.randn(M, C_OUT, 3, 5, 5))
    assert _gemm_conv_pays(x, torch.randn(M, C_OUT, 3, 3, 3))
