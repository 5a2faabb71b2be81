"""Training-step time of a graph model against the same layers as a plain nn.Sequential.

The shorthands (mlp, cnn) build through ``ml.graph_model``; this prints how their step
time compares with an ``nn.Sequential`` of the very same modules (the pre-graph builder),
and what a residual graph (not a chain: the general path) costs per step. One thread,
CPU time, interleaved repeats; ratios, not absolute numbers, are the result.

    .venv/bin/python bench/graph_overhead.py
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from ml.checks import DatasetInfo
from ml.graph_model import GraphNet, build_graph
from ml.graph_spec import GraphModel
from ml.shorthands import expand_cnn, expand_mlp
from ml.spec import CNNModel, MLPModel

DIGITS = DatasetInfo("classification", "image", 1797, 64, (1, 8, 8), 10)
STEPS, REPEATS = 200, 5


def step_seconds(model: nn.Module, batch: int) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True)
    x, y = torch.randn(batch, 1, 8, 8), torch.randint(0, 10, (batch,))
    for _ in range(10):  # warm-up
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    start = time.process_time()
    for _ in range(STEPS):
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return (time.process_time() - start) / STEPS


def as_sequential(net: GraphNet) -> nn.Sequential:
    return nn.Sequential(*net.children())


def residual() -> GraphModel:
    conv = {"op": "conv2d", "filters": 32, "kernel_size": 3, "padding": "same"}
    return GraphModel.model_validate({"layers": [
        {**conv, "id": "stem"}, {"op": "batch_norm"}, {"op": "activation", "fn": "relu"},
        conv, {"op": "batch_norm"}, {"op": "add", "inputs": ["stem", -1]},
        {"op": "activation", "fn": "relu"}, {"op": "global_avg_pool"},
    ]})  # fmt: skip


def main() -> None:
    torch.set_num_threads(1)
    cases = {
        "mlp [128, 64], batch 32": (build_graph(expand_mlp(MLPModel(), 0.0), DIGITS, 10), 32),
        "cnn [32, 64], batch 128": (build_graph(expand_cnn(CNNModel(), DIGITS, 0.0), DIGITS, 10),
                                    128),
    }  # fmt: skip
    for name, (net, batch) in cases.items():
        ratios = []
        for _ in range(REPEATS):
            graph = step_seconds(net, batch)
            plain = step_seconds(as_sequential(net), batch)
            ratios.append(graph / plain)
        print(f"{name}: graph step / nn.Sequential step = {statistics.median(ratios):.3f} "
              f"(range {min(ratios):.3f}-{max(ratios):.3f})")  # fmt: skip
    net = cases["mlp [128, 64], batch 32"][0]
    chain, net.chain = net.chain, None  # the general path (any graph) on the same layers
    ratios = [step_seconds(net, 32) / step_seconds(as_sequential(net), 32) for _ in range(3)]
    net.chain = chain
    print(f"mlp through the general (non-chain) path / nn.Sequential = "
          f"{statistics.median(ratios):.3f}")  # fmt: skip
    net = build_graph(residual(), DIGITS, 10)
    graph = statistics.median(step_seconds(net, 128) for _ in range(REPEATS))
    print(f"residual graph (not a chain), batch 128: {graph * 1e3:.2f} ms per step")


if __name__ == "__main__":
    main()
