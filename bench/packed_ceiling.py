"""The ceiling of packing on this machine (issue 26's 64-trial row): the bare arithmetic of
the packed program against the bare solo loop, with no engine around either.

- ``solo``: the digits MLP ([128, 64], batch 32, Adam with fused=True) written out by hand,
  trained one trial after another: forward, cross entropy, backward, optimizer step. No
  metrics, validation, checkpoints or bookkeeping of any kind.
- ``packed``: the same trials as one batched program written out by hand, the layout the
  pack engine uses (kernels stacked ``(M, in, out)``, ``baddbmm``), the members' losses
  summed for one backward, and ONE fused Adam call over the whole stacks (one learning
  rate for all: cheaper than any real pack, whose members each keep their own numbers).

Neither arm does anything a real job can skip less of, so ``solo / packed`` here bounds
from above what ``bench/packed_sweeps.py`` (the engine, with its per-trial metrics,
validation and checkpoints) can show on this machine. Arms are interleaved, ``--repeats``
times; medians of process CPU time (one intra-op thread: the work done).

The process's glibc allocator is set to keep freed blocks under 32 MB in its heap
(``mallopt``), the packed arm's most favourable setting: with glibc's defaults a bare
packed step re-faults its fresh multi-megabyte activations from the kernel each time (~1.6x
slower here). The engine's own runs do not need this: its allocation pattern lets glibc's
adaptive threshold settle (measured: no difference with the setting, 2026-12-07).

Then, where the packed arm's time goes: a 512^3 GEMM (this core's large-GEMM rate), the
batched GEMM of the first layer (64 members, 32x64x128 each: one of the step's five large
GEMMs) and one fused Adam step over the whole stacks, each timed with its operands hot (the
same call repeated) and cold (32 MB touched between calls, as a step's other work evicts
them: 64 members' weights, gradients and moments are ~17 MB, a solo trial's ~280 kB).

    .venv/bin/python bench/packed_ceiling.py [--trials 64] [--epochs 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import itertools
import os
import statistics
import time

import torch
from sklearn.datasets import load_digits
from torch import Tensor, nn
from torch.nn import functional as F

WIDTHS = [64, 128, 64, 10]
BATCH = 32


def data() -> tuple[Tensor, Tensor]:
    x, y = load_digits(return_X_y=True)
    xt = torch.tensor(x, dtype=torch.float32)
    xt = (xt - xt.mean(0)) / (xt.std(0) + 1e-6)
    n = int(len(xt) * 0.8)
    return xt[:n].contiguous(), torch.tensor(y[:n], dtype=torch.long)


def solo_arm(x: Tensor, y: Tensor, lrs: list[float], epochs: int) -> float:
    start = time.process_time()
    for i, lr in enumerate(lrs):
        torch.manual_seed(i)
        layers: list[nn.Module] = []
        for a, b in itertools.pairwise(WIDTHS):
            layers += [nn.Linear(a, b), nn.ReLU()]
        model = nn.Sequential(*layers[:-1])
        params = list(model.parameters())
        opt = torch.optim.Adam(params, lr=lr, fused=True)
        for epoch in range(epochs):
            order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
            for lo in range(0, len(x), BATCH):
                idx = order[lo : lo + BATCH]
                loss = F.cross_entropy(model(x.index_select(0, idx)), y.index_select(0, idx))
                for p in params:
                    p.grad = None
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
    return time.process_time() - start


def packed_arm(x: Tensor, y: Tensor, lrs: list[float], epochs: int) -> float:
    start = time.process_time()
    m = len(lrs)
    torch.manual_seed(0)
    ws = [(torch.randn(m, a, b) * a**-0.5).requires_grad_() for a, b in itertools.pairwise(WIDTHS)]
    bs = [torch.zeros(m, b).requires_grad_() for b in WIDTHS[1:]]
    params = ws + bs
    avg = [torch.zeros_like(p) for p in params]
    sq = [torch.zeros_like(p) for p in params]
    steps = [torch.zeros(()) for _ in params]
    for epoch in range(epochs):
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        for lo in range(0, len(x), BATCH):
            idx = order[lo : lo + BATCH]
            xb, yb = x.index_select(0, idx), y.index_select(0, idx)
            h = xb.unsqueeze(0).expand(m, *xb.shape)
            for k, (w, b) in enumerate(zip(ws, bs, strict=True)):
                h = torch.baddbmm(b.unsqueeze(1), h, w)
                if k < len(ws) - 1:
                    h = h.relu()
            logp = h.log_softmax(-1)
            loss = -logp.gather(-1, yb.expand(m, -1).unsqueeze(-1)).mean()
            for p in params:
                p.grad = None
            (loss * m).backward()  # type: ignore[no-untyped-call]
            with torch.no_grad():
                for s in steps:
                    s.add_(1)
                torch._fused_adam_(
                    [p.detach() for p in params], [p.grad for p in params], avg, sq, [], steps,
                    lr=lrs[0], beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-8,
                    amsgrad=False, maximize=False,
                )  # fmt: skip
    return time.process_time() - start


def hot_and_cold(trials: int, repeats: int = 60) -> None:
    """Median ms of one batched GEMM and one fused Adam step, operands hot and cold."""
    big = torch.randn(512, 512)
    a, w = torch.randn(trials, BATCH, WIDTHS[0]), torch.randn(trials, WIDTHS[0], WIDTHS[1])
    flops = {"512^3 GEMM": 2 * 512**3, "batched GEMM, first layer": 2 * a.numel() * WIDTHS[1]}
    sizes = [a * b + b for a, b in itertools.pairwise(WIDTHS)]
    ps, gs, avg, sq = ([torch.randn(trials * n) for n in sizes] for _ in range(4))
    steps = [torch.zeros(()) for _ in sizes]
    evict = torch.zeros(8 << 20)  # 32 MB, the L3 of this kind of host

    def adam() -> None:
        torch._fused_adam_(
            ps, gs, avg, sq, [], steps, lr=1e-3, beta1=0.9, beta2=0.999, weight_decay=0.0,
            eps=1e-8, amsgrad=False, maximize=False,
        )  # fmt: skip

    cases = {
        "512^3 GEMM": lambda: torch.mm(big, big),
        "batched GEMM, first layer": lambda: torch.bmm(a, w),
        "fused Adam, all stacks": adam,
    }
    for name, fn in cases.items():
        times: dict[str, list[float]] = {"hot": [], "cold": []}
        for i in range(repeats):
            mode = "cold" if i % 2 else "hot"
            if mode == "cold":
                evict.add_(1.0)
            else:
                fn()
            start = time.perf_counter()
            fn()
            times[mode].append(time.perf_counter() - start)
        hot, cold = (statistics.median(times[k]) * 1e3 for k in ("hot", "cold"))
        rate = ""
        if name in flops:
            rate = f", {flops[name] / hot / 1e6:5.1f} / {flops[name] / cold / 1e6:5.1f} GFLOP/s"
        print(f"{name:26s} hot {hot:6.3f} ms, cold {cold:6.3f} ms{rate}")


def favour_large_blocks() -> bool:
    """glibc: serve blocks under 32 MB from the heap, keep up to 256 MB of free heap."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 32 << 20)) and bool(
            libc.mallopt(m_trim_threshold, 256 << 20)
        )
    except (OSError, AttributeError):
        return False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tuned = favour_large_blocks()
    x, y = data()
    lrs = [1e-3 * (1 + i % 8) for i in range(args.trials)]
    print(f"torch {torch.__version__}, 1 thread, {args.trials} trials x {args.epochs} epochs, "
          f"allocator tuned: {tuned}, load average {os.getloadavg()}")  # fmt: skip
    solo_arm(x, y, lrs[:2], 1), packed_arm(x, y, lrs, 1)  # warm-up
    solo, packed = [], []
    for _ in range(args.repeats):
        solo.append(solo_arm(x, y, lrs, args.epochs))
        packed.append(packed_arm(x, y, lrs, args.epochs))
    s, p = statistics.median(solo), statistics.median(packed)
    steps = args.trials * args.epochs * -(-len(x) // BATCH)
    print(f"solo   {s:6.2f} s CPU ({s / steps * 1e6:6.1f} us per trial-step)")
    print(f"packed {p:6.2f} s CPU ({p / steps * 1e6:6.1f} us per trial-step)")
    print(f"ceiling: solo / packed = {s / p:.2f}x (the engine's row can show at most this)")
    print(f"per repeat: {', '.join(f'{a / b:.2f}x' for a, b in zip(solo, packed, strict=True))}")
    hot_and_cold(args.trials)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
