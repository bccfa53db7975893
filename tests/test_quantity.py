import re
from fractions import Fraction

import pytest

from oscar_batch.core.quantity import cpu_millicores, format_bytes, parse_quantity, whole_units


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2", Fraction(2)),
        ("1.5", Fraction(3, 2)),
        ("+1.5", Fraction(3, 2)),
        ("-2", Fraction(-2)),
        (".5", Fraction(1, 2)),
        ("1.", Fraction(1)),
        ("500m", Fraction(1, 2)),
        ("100n", Fraction(1, 10**7)),
        ("250u", Fraction(1, 4000)),
        ("3k", Fraction(3000)),
        ("3M", Fraction(3 * 10**6)),
        ("3G", Fraction(3 * 10**9)),
        ("3T", Fraction(3 * 10**12)),
        ("3P", Fraction(3 * 10**15)),
        ("3E", Fraction(3 * 10**18)),
        ("3Ki", Fraction(3 * 2**10)),
        ("3Mi", Fraction(3 * 2**20)),
        ("3Gi", Fraction(3 * 2**30)),
        ("3Ti", Fraction(3 * 2**40)),
        ("3Pi", Fraction(3 * 2**50)),
        ("3Ei", Fraction(3 * 2**60)),
        ("3072Mi", Fraction(3 * 2**30)),
        ("0.5Ki", Fraction(512)),
        ("1e9", Fraction(10**9)),
        ("1E3", Fraction(1000)),
        ("1e+3", Fraction(1000)),
        ("25e-2", Fraction(1, 4)),
        ("1.5e3", Fraction(1500)),
        # "0.1" is not a binary float here: ten of them are exactly one.
        ("0.1", Fraction(1, 10)),
        (7, Fraction(7)),
    ],
)
def test_parses_every_kubernetes_form_exactly(text, value):
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    "garbage",
    ["", " ", "1 ", " 1", "abc", "1x", "1Kib", "1ki", "1e", "e3", ".", "1..5", "1e1.5", "--1", "1Gi2", "٣", "1e999"],
)
def test_rejects_garbage_naming_the_value(garbage):
    with pytest.raises(ValueError, match=re.escape(repr(garbage))):
        parse_quantity(garbage)


@pytest.mark.parametrize("not_text", [None, 1.5, True, ["1"]])
def test_rejects_non_quantities(not_text):
    with pytest.raises(ValueError, match="not a quantity"):
        parse_quantity(not_text)


@pytest.mark.parametrize(
    ("text", "millicores"),
    [("1", 1000), ("0.5", 500), ("500m", 500), ("1.0", 1000), ("0.1m", 1), ("1001u", 2), ("2.0001", 2001), (3, 3000)],
)
def test_cpu_rounds_fractional_millicores_up(text, millicores):
    assert cpu_millicores(text) == millicores


@pytest.mark.parametrize(
    ("text", "units"),
    [("3Gi", 3 * 2**30), ("3G", 3 * 10**9), ("1.5", 2), ("100m", 1), ("0.5Ki", 512), ("1e9", 10**9), ("110", 110)],
)
def test_whole_units_round_up(text, units):
    assert whole_units(text) == units


@pytest.mark.parametrize(
    ("amount", "shown"),
    [(900, "900"), (3 * 2**30, "3Gi"), (512 * 2**20, "512Mi"), (3 * 10**9, "2.79Gi"), (2**31 - 1, "1.99Gi")],
)
def test_formats_bytes_without_rounding_up(amount, shown):
    assert format_bytes(amount) == shown
