"""``ml.encoding``'s fitted encodings as torch operations, so that a model export carries them.

:class:`TableEncoderModule` takes rows in the stored form (one float32 per used column:
the number, the category's index into the upload's ``categories``, the date's days since
1970-01-01 UTC; NaN = missing; any index the upload does not have, such as -1, = an
unseen category) and gives what :meth:`ml.encoding.TableEncoder.transform` gives. It is
traced into the ONNX graph (comparisons, ``where``, floor arithmetic for the calendar:
H. Hinnant's days-to-civil algorithm); tests/ml/test_table_export.py holds the two
together, and ONNX Runtime to both.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ml.encoding import DATE_PARTS, FittedColumn, TableEncoder

_MONTH_START = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334]


def _floor_div(a: Tensor, b: float) -> Tensor:
    return torch.floor(a / b)


def date_parts(days: Tensor) -> Tensor:
    """(N, 7) float32: year; month, weekday (Monday 0), day of year as sin/cos pairs."""
    d = torch.floor(days.double())
    z = d + 719468
    era = _floor_div(z, 146097)
    doe = z - era * 146097
    yoe = _floor_div(doe - _floor_div(doe, 1460) + _floor_div(doe, 36524)
                     - _floor_div(doe, 146096), 365)  # fmt: skip
    doy_march = doe - (365 * yoe + _floor_div(yoe, 4) - _floor_div(yoe, 100))
    mp = _floor_div(5 * doy_march + 2, 153)
    day = doy_march - _floor_div(153 * mp + 2, 5) + 1
    month = torch.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2).double()
    leap = (torch.remainder(year, 4) == 0) & (
        (torch.remainder(year, 100) != 0) | (torch.remainder(year, 400) == 0)
    )
    starts = torch.tensor(_MONTH_START, dtype=torch.float64)
    yday = starts[(month - 1).long()] + day - 1 + (leap & (month > 2)).double()
    weekday = torch.remainder(d + 3, 7)
    tau = 2 * math.pi
    m0 = month - 1
    parts = [year, torch.sin(tau * m0 / 12), torch.cos(tau * m0 / 12),
             torch.sin(tau * weekday / 7), torch.cos(tau * weekday / 7),
             torch.sin(tau * yday / 365.25), torch.cos(tau * yday / 365.25)]  # fmt: skip
    return torch.stack(parts, dim=1).float()


class _Column(nn.Module):
    def __init__(self, c: FittedColumn) -> None:
        super().__init__()
        self.source, self.encoding, self.kind = c.source, c.encoding, c.kind
        self.missing_seen, self.indicator = c.missing_seen, c.indicator
        self.k = len(c.values)
        self.fill = 0.0 if c.fill is None else float(c.fill)
        self.values: Tensor
        self.register_buffer("values", torch.tensor(c.values, dtype=torch.float32))

    def forward(self, x: Tensor) -> Tensor:
        v = x[:, self.source]
        miss = torch.isnan(v)
        if self.kind == "categorical":
            eq = (v.unsqueeze(1) == self.values.unsqueeze(0)).float()  # NaN matches nothing
            if self.encoding == "one_hot":
                return torch.cat([eq, miss.float().unsqueeze(1)], 1) if self.missing_seen else eq
            found = eq.sum(1) > 0
            idx = (eq * torch.arange(self.k, dtype=torch.float32)).sum(1)
            base, unseen = (0.0, -1.0) if self.encoding == "ordinal" else (1.0, 0.0)
            code = torch.where(found, idx + base, torch.full_like(v, unseen))
            if self.missing_seen:
                code = torch.where(miss, torch.full_like(v, self.k + base), code)
            return code.unsqueeze(1)
        filled = torch.where(miss, torch.full_like(v, self.fill), v)
        out = date_parts(filled) if self.encoding == "date_parts" else filled.unsqueeze(1)
        if self.indicator:
            out = torch.cat([out, miss.float().unsqueeze(1)], 1)
        return out


class TableEncoderModule(nn.Module):
    def __init__(self, encoder: TableEncoder) -> None:
        super().__init__()
        self.columns = nn.ModuleList(_Column(c) for c in encoder.columns)
        self.width = encoder.width
        assert len(DATE_PARTS) == 7

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([col(x) for col in self.columns], dim=1)
