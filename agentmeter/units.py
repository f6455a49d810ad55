"""Friendly units, parsed once at the edge: ``"10m"``, ``"$2.00"``, ``"100k"``, ``"8s"``, ``"80%"``."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

__all__ = ["parse_count", "parse_duration_s", "parse_money_usd", "parse_percent", "parse_quantity"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_COUNT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*$")
_COUNT_SCALE = {"": 1, "k": 1_000, "K": 1_000, "m": 1_000_000, "M": 1_000_000}


def parse_duration_s(value: object, *, allow_zero: bool = False) -> float:
    """Seconds from ``"250ms"``, ``"30s"``, ``"10m"``, ``"24h"``, ``"7d"`` or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '30s', '10m' or '24h', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"expected a duration like '30s', '10m' or '24h', got {value!r}")
        seconds = float(match.group(1)) * _DURATION_S[match.group(2)]
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(f"a duration must be positive, got {value!r}")
    return seconds


def parse_money_usd(value: object) -> Decimal:
    """Exact USD from ``"$2.00"``, ``"2.5"``, ``2`` or ``0.1`` (floats go through ``str`` so 0.1 stays 0.1)."""
    if isinstance(value, bool):
        raise ValueError(f"expected an amount like '$2.00', got {value!r}")
    text = str(value).strip().replace(",", "").replace("_", "")
    sign = ""
    if text[:1] in "+-" and text[1:2] == "$":
        sign, text = text[0], text[1:]
    if text.startswith("$"):
        text = sign + text[1:].strip()
    elif text.upper().endswith("USD"):
        text = text[:-3].strip()
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"expected an amount like '$2.00', got {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"expected a finite amount like '$2.00', got {value!r}")
    return amount


def parse_count(value: object) -> int:
    """An integer from ``"100k"``, ``"1.5M"``, ``"2000"`` or ``2000``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a count like 2000 or '100k', got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    match = _COUNT.match(str(value).replace("_", "").replace(",", ""))
    if not match:
        raise ValueError(f"expected a count like 2000 or '100k', got {value!r}")
    number = Decimal(match.group(1)) * _COUNT_SCALE[match.group(2)]
    if number != number.to_integral_value():
        raise ValueError(f"expected a whole count, got {value!r}")
    return int(number)


def parse_percent(value: object) -> float:
    """A fraction from ``"80%"`` or ``0.8``."""
    if isinstance(value, bool):
        raise ValueError(f"expected a percentage like '80%' or a fraction like 0.8, got {value!r}")
    text = str(value).strip()
    try:
        if text.endswith("%"):
            return float(text[:-1]) / 100.0
        return float(text)
    except ValueError:
        raise ValueError(
            f"expected a percentage like '80%' or a fraction like 0.8, got {value!r}"
        ) from None


def parse_quantity(value: object, unit: str) -> float:
    """A threshold in the metric's own unit: ``usd``, ``ms``, ``tokens``, ``ratio`` or ``count``.

    Latencies accept durations (``"8s"`` is 8000 ms); money accepts ``"$2.00"``; tokens accept
    ``"100k"``; ratios accept ``"20%"``.
    """
    if unit == "usd":
        return float(parse_money_usd(value))
    if unit == "ms":
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        return parse_duration_s(value) * 1000.0
    if unit == "tokens":
        return float(parse_count(value))
    if unit == "ratio":
        return parse_percent(value)
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    return float(parse_count(value))
