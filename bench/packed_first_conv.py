"""The packed CNN's first convolution as one GEMM (``ml.pack_net._conv_as_one_gemm``) against
the grouped convolution it replaced, on ``bench/packed_sweeps.py``'s cnn16 case (16 digits-CNN
trials, cnn [16, 32] with batch norm, batch 32, Adam), one intra-op thread.

Three arms interleaved ``--repeats`` times in one process: the solo runs, then the pack
with the first convolution grouped (what packs did before) and the pack with it as one GEMM
(what they do now), in alternating order. Medians of process CPU time; the ratios; and each
packed arm's largest distance to the solo runs' final val_accuracy (the documented
tolerance: one seed-to-seed s.d., 0.0096).

    .venv/bin/python bench/packed_first_conv.py [--repeats 5] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics

import torch
from packed_sweeps import packed_arm, solo_arm, specs

import ml.pack_net


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    trials = specs("cnn16", args.epochs, "cpu")
    gemm_pays = ml.pack_net._gemm_conv_pays
    print(f"torch {torch.__version__}, 1 thread, load average {os.getloadavg()}")
    cpu: dict[str, list[float]] = {"solo": [], "grouped": [], "gemm": []}
    worst = {"grouped": 0.0, "gemm": 0.0}
    for r in range(args.repeats):
        (t, _), solo_acc = solo_arm(trials)
        cpu["solo"].append(t)
        for arm in ("grouped", "gemm") if r % 2 == 0 else ("gemm", "grouped"):  # ABBA
            ml.pack_net._gemm_conv_pays = gemm_pays if arm == "gemm" else (lambda x, w: False)
            (t, _), acc = packed_arm(trials)
            cpu[arm].append(t)
            worst[arm] = max(worst[arm], *(abs(a - b) for a, b in zip(acc, solo_acc, strict=True)))
        ml.pack_net._gemm_conv_pays = gemm_pays
        print("  CPU s:", {k: round(v[-1], 2) for k, v in cpu.items()}, flush=True)
    s, g, m = (statistics.median(cpu[k]) for k in ("solo", "grouped", "gemm"))
    print(f"medians: solo {s:.2f} s, packed grouped {g:.2f} s, packed gemm {m:.2f} s")
    print(f"solo / packed: grouped {s / g:.2f}x, gemm {s / m:.2f}x; grouped / gemm {g / m:.2f}x")
    far = ", ".join(f"{arm} {gap:.4f}" for arm, gap in worst.items())
    print(f"max |val_accuracy solo - packed|: {far}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
