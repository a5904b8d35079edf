"""GBNF for numbers within bounds: ``minimum``/``maximum``/``exclusiveMinimum``/``exclusiveMaximum``.

llama-cpp-python's converter ignores these keywords, so a bounded ``integer`` or ``number`` gets its
rule here. A range of values becomes a language of digit strings the way a regex for a numeric range
is written by hand: split by sign and by length, and where the low and the high end differ in a digit,
one branch follows the low end, one the high end, and every digit between is free.

- ``integer``: exactly the JSON integers in the range (no leading zeros, no ``-0``).
- ``number``: the decimals in the range, an integer part and an optional fraction of at most
  ``DIGITS`` digits, no exponent, no negative zero. A decimal the grammar accepts also passes the
  bound after a JSON parser turns it into a float: the ends are moved inwards to the nearest floats
  (a fraction that would round onto an exclusive bound is not written).

Without a bound on one side the values stop at ``DIGITS`` integer digits, as the converter's plain
integer rule does.
"""

from __future__ import annotations

import math
from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal, localcontext
from fractions import Fraction
from typing import Any

#: The keywords this module enforces.
BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
#: Most integer digits written without a bound, and most fraction digits ever written.
DIGITS = 16

_CAP = 10**DIGITS - 1
_STEP = Decimal(1).scaleb(-DIGITS)
# Number bounds beyond this are clipped before they become floats (the values stop far below it).
_CLIP = Fraction(10 ** (DIGITS + 1))


def has_bounds(schema: dict[str, Any]) -> bool:
    return any(key in schema for key in BOUNDS)


def integer_bounds(schema: dict[str, Any]) -> tuple[int, int]:
    """The inclusive integer range the grammar writes for ``schema``; ``ValueError`` if it is empty."""
    lows = [math.ceil(Fraction(schema["minimum"]))] if "minimum" in schema else []
    highs = [math.floor(Fraction(schema["maximum"]))] if "maximum" in schema else []
    if "exclusiveMinimum" in schema:
        lows.append(math.floor(Fraction(schema["exclusiveMinimum"])) + 1)
    if "exclusiveMaximum" in schema:
        highs.append(math.ceil(Fraction(schema["exclusiveMaximum"])) - 1)
    lo, hi = (max(lows) if lows else None), (min(highs) if highs else None)
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"at least {lo} and at most {hi}")
    top = _CAP if lo is None else max(_CAP, lo)
    bottom = -_CAP if hi is None else min(-_CAP, hi)
    return (bottom if lo is None else max(lo, bottom)), (top if hi is None else min(hi, top))


def number_bounds(schema: dict[str, Any]) -> tuple[Decimal, Decimal]:
    """The inclusive decimal range (at most ``DIGITS`` fraction digits) the grammar writes for ``schema``.

    ``ValueError`` if no such decimal lies within the bounds.
    """
    lows = [_float_near(schema[k], up=True, strict=k.startswith("ex")) for k in BOUNDS[::2] if k in schema]
    highs = [_float_near(schema[k], up=False, strict=k.startswith("ex")) for k in BOUNDS[1::2] if k in schema]
    with localcontext(Context(prec=80)):
        lo = max(Decimal(f).quantize(_STEP, ROUND_CEILING) for f in lows) if lows else None
        hi = min(Decimal(f).quantize(_STEP, ROUND_FLOOR) for f in highs) if highs else None
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"at least {lo.normalize():f} and at most {hi.normalize():f}, in {DIGITS} decimals")
        top = Decimal(_CAP) + 1 - _STEP
        top = top if lo is None else max(top, lo)
        bottom = -top if hi is None else min(-Decimal(_CAP) - 1 + _STEP, hi)
        return (bottom if lo is None else max(lo, bottom)), (top if hi is None else min(hi, top))


def _float_near(bound: Any, *, up: bool, strict: bool) -> float:
    """The float nearest ``bound`` on the allowed side: >= (> if ``strict``) it going ``up``, else <=."""
    exact = min(max(Fraction(bound), -_CLIP), _CLIP)
    f = float(exact)
    if (Fraction(f) < exact if up else Fraction(f) > exact) or (strict and Fraction(f) == exact):
        f = math.nextafter(f, math.inf if up else -math.inf)
    return f


def integer_rule(lo: int, hi: int) -> str:
    """A GBNF expression for exactly the JSON integers ``lo``..``hi``."""
    parts = []
    if hi >= 0:
        parts.append(_naturals(max(lo, 0), hi))
    if lo < 0:
        parts.append('"-" ' + _group(_naturals(max(-hi, 1), -lo)))
    return _alternatives(parts)


def number_rule(lo: Decimal, hi: Decimal) -> str:
    """A GBNF expression for exactly the decimals ``lo``..``hi`` written as JSON (fraction optional)."""
    parts = []
    if hi >= 0:
        parts.append(_magnitudes(max(lo, Decimal(0)), hi))
    if lo < 0:
        parts.append('"-" ' + _group(_magnitudes(max(-hi, _STEP), -lo)))
    return _alternatives(parts)


def _magnitudes(a: Decimal, b: Decimal) -> str:
    """Unsigned decimals from ``a`` to ``b``."""
    a_int, a_frac = _split(a)
    b_int, b_frac = _split(b)
    b_any = b_frac if b_frac != "9" * DIGITS else None  # every fraction is below it
    if a_int == b_int:
        return f'"{a_int}" {_fraction(a_frac, b_any)}'.strip()
    parts = []
    first, last = a_int, b_int if b_any is None else b_int - 1
    if a_frac:
        parts.append(f'"{a_int}" {_fraction(a_frac, None)}')
        first += 1
    if first <= last:
        parts.append(f"{_group(_naturals(first, last))} {_fraction('', None)}")
    if b_any is not None:
        parts.append(f'"{b_int}" {_fraction("", b_any)}'.strip())
    return _alternatives(parts)


def _split(value: Decimal) -> tuple[int, str]:
    """(integer part, fraction digits without trailing zeros) of a non-negative decimal."""
    whole = int(value)
    digits = format(value - whole, "f").partition(".")[2].rstrip("0")
    return whole, digits


def _fraction(lo: str, hi: str | None) -> str:
    """An optional ``.digits`` whose value as a fraction is within ``0.lo``..``0.hi`` (``None``: below 1)."""
    digits = _fraction_digits(lo, hi, DIGITS)
    if digits is None:
        return ""  # only a zero fraction is allowed, and none is written
    dotted = f'"." {_group(digits)}'
    return f"({dotted})?" if not lo else dotted


def _fraction_digits(lo: str, hi: str | None, n: int) -> str | None:
    """One to ``n`` digits ``d`` with ``0.lo <= 0.d <= 0.hi``; ``None`` if there are none.

    ``lo`` and ``hi`` have no trailing zeros (``""`` is zero); ``hi`` ``None`` means no upper end.
    """
    if n == 0:
        return None
    if hi is not None and len(hi) == n and set(hi) == {"9"}:
        hi = None
    if hi == "":
        return f"[0]{_count(1, n)}"
    low = int(lo[0]) if lo else 0
    high = 9 if hi is None else int(hi[0])
    low_rest, high_rest = lo[1:], (None if hi is None else hi[1:])
    if low == high:
        more = _fraction_digits(low_rest, high_rest, n - 1)
        return f'"{low}" {_tail(more, not low_rest)}'.strip() if more is not None or not low_rest else None
    parts = []
    start, end = (low + 1 if low_rest else low), (high if high_rest is None else high - 1)
    if low_rest:
        more = _fraction_digits(low_rest, None, n - 1)
        if more is not None:
            parts.append(f'"{low}" {_group(more)}')
    if start <= end:
        parts.append(f"{_digit_class(start, end)} {_any_digits(0, n - 1)}".strip())
    if high_rest is not None:
        parts.append(f'"{high}" {_tail(_fraction_digits("", high_rest, n - 1), True)}'.strip())
    return _alternatives(parts)


def _tail(more: str | None, empty_ok: bool) -> str:
    if more is None:
        return ""
    return f"({more})?" if empty_ok else _group(more)


def _naturals(a: int, b: int) -> str:
    """The integers ``a``..``b`` (``0 <= a <= b``) without leading zeros."""
    parts: list[str] = []
    whole: list[int] = []  # a run of lengths taken whole: one class and a counted repeat

    def close_run() -> None:
        if whole:
            parts.append(f"[1-9] {_any_digits(whole[0] - 1, whole[-1] - 1)}")
            whole.clear()

    for n in range(len(str(a)), len(str(b)) + 1):
        first, last = (10 ** (n - 1) if n > 1 else 0), 10**n - 1
        x, y = max(a, first), min(b, last)
        if n > 1 and (x, y) == (first, last):
            whole.append(n)
            continue
        close_run()
        parts.append(_same_length(str(x), str(y)))
    close_run()
    return _alternatives(parts)


def _same_length(x: str, y: str) -> str:
    """The digit strings of one length from ``x`` to ``y``."""
    if x == y:
        return f'"{x}"'
    i = next(k for k in range(len(x)) if x[k] != y[k])
    prefix = f'"{x[:i]}" ' if i else ""
    low, high, low_rest, high_rest = int(x[i]), int(y[i]), x[i + 1 :], y[i + 1 :]
    rest = len(low_rest)
    low_whole, high_whole = set(low_rest) <= {"0"}, set(high_rest) <= {"9"}
    parts = []
    if not low_whole:
        parts.append(f'"{low}" {_group(_same_length(low_rest, "9" * rest))}')
    start, end = (low if low_whole else low + 1), (high if high_whole else high - 1)
    if start <= end:
        parts.append(f"{_digit_class(start, end)} {_any_digits(rest, rest)}".strip())
    if not high_whole:
        parts.append(f'"{high}" {_group(_same_length("0" * rest, high_rest))}')
    return prefix + _group(_alternatives(parts))


def _digit_class(start: int, end: int) -> str:
    return f'"{start}"' if start == end else f"[{start}-{end}]"


def _any_digits(m: int, n: int) -> str:
    return f"[0-9]{_count(m, n)}" if n > 0 else ""


def _count(m: int, n: int) -> str:
    return "" if m == n == 1 else f"{{{m}}}" if m == n else f"{{{m},{n}}}"


def _alternatives(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else " | ".join(parts)


def _group(expr: str) -> str:
    """``expr`` in parentheses unless it is one item (the digit strings hold no spaces)."""
    return expr if " " not in expr else f"({expr})"
