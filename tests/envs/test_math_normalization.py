"""The presentation rewrites applied before math-verify parses an answer: pure text in, text and unit out."""

import pytest

from verifarm.envs.math_normalization import normalize_answer, split_unit


@pytest.mark.parametrize(
    "text, latex, unit",
    [
        ("2.5e-4", "\\frac{5}{2} \\times10^{-4}", None),  # scientific notation, then the exact decimal
        ("6.02E+23", "\\frac{301}{50} \\times10^{+23}", None),
        ("4.2 × 10^-7", "\\frac{21}{5} \\times 10^{-7}", None),  # Unicode times, a loose exponent
        ("2e", "2e", None),  # Euler's number, no exponent follows
        ("0.1\\overline{6}", "\\frac{1}{6}", None),
        ("0.\\overline{9}", "1", None),
        ("2.1\\bar{6}", "\\frac{13}{6}", None),
        ("12\\,345", "12345", None),
        ("12{,}345", "12345", None),
        ("1\\,234\\,567.5", "\\frac{2469135}{2}", None),
        ("12 345", "12345", None),
        ("1, 234", "1, 234", None),  # a comma and a space: a list, left alone
        ("−4", "-4", None),
        ("∞", "\\infty", None),
        ("x ≥ 3", "x \\ge 3", None),
        ("0.5", "\\frac{1}{2}", None),
        ("-.25", "- \\frac{1}{4}", None),
        ("3.0", "3", None),
        ("$7$", "7", None),
        ("1+2\\mathrm{i}", "1+2i", None),
        ("30°", "30", "degree"),
        ("30^\\circ", "30", "degree"),
        ("40 euros", "40", "euro"),
        ("€40", "40", "euro"),
        ("\\$12.50", "\\frac{25}{2}", "dollar"),
        ("3 km", "3", "km"),
        ("3 kilometres", "3", "km"),
        ("3\\text{ km}", "3", "km"),
        ("3\\,\\mathrm{m}", "3", "m"),
        ("12\\text{ cm}^2", "12", "cm^2"),
        ("5 cm²", "5", "cm^2"),
        ("60 km/h", "60", "km/h"),
        ("\\frac{1}{2}\\%", "\\frac{1}{2}", "percent"),
        ("25%", "25", "percent"),
        ("2 x", "2 x", None),
        ("3m", "3m", None),  # a letter stuck to a number is algebra
    ],
)
def test_normalize_answer(text: str, latex: str, unit: str | None) -> None:
    normalized = normalize_answer(text)
    assert (normalized.latex, normalized.unit) == (latex, unit)


def test_a_unit_alone_is_not_split_off() -> None:
    assert split_unit("km") == ("km", None)
    assert split_unit("\\text{km}") == ("\\text{km}", None)
