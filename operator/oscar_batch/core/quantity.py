"""Kubernetes resource quantities ("500m", "1.5", "3Gi", "1e9") parsed exactly, without floats."""
from __future__ import annotations

import math
import re
from fractions import Fraction

_NUMBER_AND_SUFFIX = re.compile(r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(.*)")
_DECIMAL_EXPONENT = re.compile(r"[eE]([+-]?[0-9]+)")
_SUFFIX_MULTIPLIERS = {
    "": Fraction(1),
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}
# Far beyond any real resource, and small enough that a typo like "1e999999999" cannot stall the parser.
_MAX_EXPONENT = 64
_BINARY_UNITS = (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10))


def parse_quantity(value: str | int) -> Fraction:
    """The exact value of a Kubernetes quantity; ValueError names a malformed one.

    A Fraction rather than a Decimal: Decimal rounds past 28 digits, and "1.0000000001Ei" has 29.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return Fraction(value)
    if not isinstance(value, str):
        raise ValueError(f"not a quantity: {value!r}")
    match = _NUMBER_AND_SUFFIX.fullmatch(value)
    if match is None:
        raise ValueError(f"not a quantity: {value!r}")
    number, suffix = match.groups()
    multiplier = _SUFFIX_MULTIPLIERS.get(suffix)
    if multiplier is None:
        exponent = _DECIMAL_EXPONENT.fullmatch(suffix)
        if exponent is None:
            raise ValueError(f"not a quantity: {value!r} (unknown suffix {suffix!r})")
        power = int(exponent.group(1))
        if abs(power) > _MAX_EXPONENT:
            raise ValueError(f"quantity out of range: {value!r}")
        multiplier = Fraction(10) ** power
    return Fraction(number) * multiplier


def cpu_millicores(value: str | int) -> int:
    """CPU in millicores, rounded up as Kubernetes does for requests ("0.1m" counts as 1m)."""
    return math.ceil(parse_quantity(value) * 1000)


def whole_units(value: str | int) -> int:
    """Memory, GPUs, pods…: the quantity in whole units, rounded up."""
    return math.ceil(parse_quantity(value))


def format_millicores(millicores: int) -> str:
    return f"{millicores}m"


def format_bytes(amount: int) -> str:
    """Largest binary unit that fits; fractions are truncated so a shortfall never displays as enough."""
    for suffix, size in _BINARY_UNITS:
        if abs(amount) >= size:
            if amount % size == 0:
                return f"{amount // size}{suffix}"
            hundredths = math.trunc(Fraction(amount * 100, size))
            return f"{hundredths / 100:.2f}{suffix}"
    return str(amount)
