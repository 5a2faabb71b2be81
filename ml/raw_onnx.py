"""``model_raw.onnx``: a table model whose input is the rows as uploaded, as strings.

Input ``rows``: a string tensor (B, F), one cell per ``model.json`` ``columns`` entry, in
that order, written as in the CSV (no surrounding spaces). ONNX operators turn each cell
into the stored form that ``model.onnx`` takes, then the same graph follows:

- a missing cell (empty, NA, N/A, NaN, null, None, any case) -> NaN;
- number: ``Cast`` string -> float;
- categorical: ONNX-ML ``LabelEncoder`` (the upload's categories -> their index; any
  other string -> -1, an unseen category);
- boolean: ``LabelEncoder`` over true/false, yes/no, t/f, y/n, 1/0 (any case);
- date: ``StringSplit`` on ``-`` into year, month, day (``YYYY-MM-DD``, anything after
  the day such as a time is ignored: the day is what the date parts use) -> days since
  1970-01-01 by H. Hinnant's days-from-civil arithmetic.

Opset 20 (``StringSplit``) and ai.onnx.ml 3. The API's ``/predict`` does not use this
graph (it converts rows itself, with full ISO 8601 dates and clear errors per cell).
"""

from __future__ import annotations

from typing import Any

import onnx
from onnx import TensorProto, helper

RAW_INPUT = "rows"
MISSING = ["", "na", "n/a", "nan", "null", "none"]
TRUE_WORDS = ["true", "yes", "t", "y", "1"]
FALSE_WORDS = ["false", "no", "f", "n", "0"]
OPSET = 20


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0

    def name(self, hint: str) -> str:
        self.n += 1
        return f"raw_{hint}_{self.n}"

    def const(self, value: Any, dtype: int = TensorProto.FLOAT) -> str:
        out = self.name("c")
        self.inits.append(helper.make_tensor(out, dtype, [], [value]))
        return out

    def op(self, kind: str, inputs: list[str], n_out: int = 1, **attrs: Any) -> str:
        outs = [self.name(kind.lower()) for _ in range(n_out)]
        domain = "ai.onnx.ml" if kind == "LabelEncoder" else ""
        self.nodes.append(helper.make_node(kind, inputs, outs, domain=domain, **attrs))
        return outs[0]

    def floor_div(self, a: str, b: float) -> str:
        return self.op("Floor", [self.op("Div", [a, self.const(b)])])

    def days_from_civil(self, y: str, m: str, d: str) -> str:
        c = self.const
        early = self.op("Cast", [self.op("LessOrEqual", [m, c(2.0)])], to=TensorProto.FLOAT)
        y = self.op("Sub", [y, early])
        era = self.floor_div(y, 400.0)
        yoe = self.op("Sub", [y, self.op("Mul", [era, c(400.0)])])
        shift = self.op("Where", [self.op("Greater", [m, c(2.0)]), c(-3.0), c(9.0)])
        mp = self.op("Add", [m, shift])
        doy = self.op("Add", [self.floor_div(self.op("Add", [self.op("Mul", [mp, c(153.0)]),
                                                               c(2.0)]), 5.0),
                              self.op("Sub", [d, c(1.0)])])  # fmt: skip
        doe = self.op("Add", [self.op("Sub", [self.op("Add", [self.op("Mul", [yoe, c(365.0)]),
                                                              self.floor_div(yoe, 4.0)]),
                                              self.floor_div(yoe, 100.0)]), doy])  # fmt: skip
        days = self.op("Add", [self.op("Mul", [era, c(146097.0)]), doe])
        return self.op("Sub", [days, c(719468.0)])


def _column(b: _Builder, j: int, column: dict[str, Any]) -> str:
    cell = b.op("Gather", [RAW_INPUT, b.const(j, TensorProto.INT64)], axis=1)
    low = b.op("StringNormalizer", [cell], case_change_action="LOWER", locale="C")
    miss = b.op("Cast", [b.op("LabelEncoder", [low], keys_strings=MISSING,
                              values_floats=[1.0] * len(MISSING), default_float=0.0)],
                to=TensorProto.BOOL)  # fmt: skip
    nan, kind = b.const(float("nan")), column["type"]
    if kind == "categorical":
        cats = [str(c) for c in column.get("categories") or []]
        value = b.op("LabelEncoder", [cell], keys_strings=cats or ["\x00"],
                     values_floats=[float(i) for i in range(len(cats))] or [-1.0],
                     default_float=-1.0)  # fmt: skip
    elif kind == "boolean":
        value = b.op("LabelEncoder", [low], keys_strings=TRUE_WORDS + FALSE_WORDS,
                     values_floats=[1.0] * 5 + [0.0] * 5, default_float=float("nan"))  # fmt: skip
    elif kind == "date":
        safe = b.op("Where", [miss, b.const(b"1970-01-01", TensorProto.STRING), cell])
        parts = b.op("StringSplit", [safe], n_out=2, delimiter="-", maxsplit=2)
        pick = [
            b.op("Cast", [b.op("Gather", [parts, b.const(i, TensorProto.INT64)], axis=1)],
                 to=TensorProto.FLOAT)
            for i in range(3)
        ]  # fmt: skip
        value = b.days_from_civil(*pick)
    else:
        safe = b.op("Where", [miss, b.const(b"nan", TensorProto.STRING), cell])
        value = b.op("Cast", [safe], to=TensorProto.FLOAT)
    value = b.op("Where", [miss, nan, value])
    return b.op("Unsqueeze", [value, b.const(1, TensorProto.INT64)])


def raw_model(stored_model: bytes, columns: list[dict[str, Any]], input_name: str) -> bytes:
    """``stored_model`` (input ``input_name``: float32 (B, F) stored form) behind a front
    that reads string rows."""
    model = onnx.load_from_string(stored_model)
    b = _Builder()
    cells = [_column(b, j, c) for j, c in enumerate(columns)]
    b.nodes.append(helper.make_node("Concat", cells, [input_name], axis=1))
    graph = model.graph
    # Gather with a scalar index drops the axis; Unsqueeze takes its axes as a 1-D input.
    for init in b.inits:
        if init.data_type == TensorProto.INT64 and any(
            n.op_type == "Unsqueeze" and n.input[1] == init.name for n in b.nodes
        ):
            init.dims.append(1)
    old_inputs = [i for i in graph.input if i.name != input_name]
    del graph.input[:]
    rows = helper.make_tensor_value_info(RAW_INPUT, TensorProto.STRING, [None, len(columns)])
    graph.input.extend([rows, *old_inputs])
    nodes = list(b.nodes) + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(b.inits)
    del model.opset_import[:]
    model.opset_import.extend(
        [helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", 3)]
    )
    model.ir_version = max(model.ir_version, 9)
    return bytes(model.SerializeToString())
