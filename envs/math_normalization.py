"""Presentation-only rewrites of a math answer before math-verify parses it, and the unit it carries.

Pure text functions, no sympy: Unicode signs become LaTeX, thousands separators go, scientific notation and
repeating decimals become exact numbers, every decimal becomes the exact fraction it denotes (so an approximation can
never round its way to equality), and a trailing unit, currency or percent sign is split off so that the checker can
compare units separately (see the conventions in ``math_answer``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

UNICODE_SIGNS = {
    "\u2212": "-",
    "\u2013": "-",
    "\u2012": "-",  # minus, en dash, figure dash
    "\u221e": " \\infty ",
    "\u00d7": " \\times ",
    "\u22c5": " \\cdot ",
    "\u00b7": " \\cdot ",
    "\u2264": " \\le ",
    "\u2265": " \\ge ",
    "\u2260": " \\ne ",
    "\u03c0": " \\pi ",
    "\u00a0": " ",
    "\u2009": " ",
    "\u202f": " ",
    "\u2002": " ",
    "\u2003": " ",
    "\u00b0": "^{\\circ}",
    "\u2103": "^{\\circ}",
    "\\imath": "i",
    "\\degree": "^{\\circ}",
    # an upright i is the imaginary unit; math-verify would drop a trailing \mathrm{...} as a unit
    "\\mathrm{i}": "i",
    "\\text{i}": "i",
    "\\textrm{i}": "i",
    "\\operatorname{i}": "i",
}

# Canonical unit -> its spellings. Single letters (m, g, s, h, L) count only when set apart from the number by a space
# or written in \text{...}/\mathrm{...}, so that "2x" or "3m" stay algebra.
UNIT_SPELLINGS: dict[str, tuple[str, ...]] = {
    "percent": ("\\%", "%", "percent", "per cent"),
    "degree": ("^{\\circ}", "^\\circ", "\\circ", "degrees", "degree", "deg"),
    "radian": ("radians", "radian", "rad"),
    "euro": ("euros", "euro", "eur", "\\euro", "\u20ac"),
    "dollar": ("dollars", "dollar", "usd", "\\$", "$"),
    "pound": ("pounds", "pound", "\u00a3", "gbp", "lbs", "lb"),
    "cent": ("cents", "cent"),
    "km": ("km", "kilometers", "kilometres", "kilometer", "kilometre"),
    "m": ("m", "meters", "metres", "meter", "metre"),
    "cm": ("cm", "centimeters", "centimetres", "centimeter", "centimetre"),
    "mm": ("mm", "millimeters", "millimetres", "millimeter", "millimetre"),
    "mile": ("miles", "mile", "mi"),
    "ft": ("ft", "feet", "foot"),
    "in": ("inches", "inch"),
    "kg": ("kg", "kilograms", "kilogram"),
    "g": ("g", "grams", "gram"),
    "l": ("l", "liters", "litres", "liter", "litre"),
    "ml": ("ml", "milliliters", "millilitres", "milliliter", "millilitre"),
    "s": ("s", "sec", "seconds", "second"),
    "min": ("min", "minutes", "minute"),
    "h": ("h", "hr", "hours", "hour"),
    "day": ("days", "day"),
    "year": ("years", "year"),
    "km/h": ("km/h", "kmh", "kph"),
    "m/s": ("m/s",),
    "mph": ("mph",),
}
_UNIT_BY_SPELLING = {spelling.lower(): unit for unit, spellings in UNIT_SPELLINGS.items() for spelling in spellings}
_SIGN_UNITS = {spelling for spelling in _UNIT_BY_SPELLING if not spelling[0].isalpha()}  # %, ^\circ, \$, ...
_POWER = r"(?:\^\{?[23]\}?|\u00b2|\u00b3)?"  # cm^2, m^{3}
_SPELLINGS = "|".join(re.escape(s) for s in sorted(_UNIT_BY_SPELLING, key=len, reverse=True))
_WRAPPED_UNIT = re.compile(
    r"\\(?:text|mathrm|textrm|mbox|operatorname)\s*\{\s*(?P<unit>[^{}]*?)\s*\}\s*(?P<power>" + _POWER + r")\s*$"
)
_BARE_UNIT = re.compile(
    r"(?P<gap>\s*|\\[,;: !]|~)(?P<unit>" + _SPELLINGS + r")(?P<power>" + _POWER + r")\s*\.?\s*$", re.IGNORECASE
)
_PREFIX_CURRENCY = re.compile(r"^(?P<unit>\\\$|\$|\u20ac|\u00a3|usd|eur|gbp)\s*(?=[-+\d.\\])", re.IGNORECASE)

_THOUSANDS = re.compile(r"(?<![\d.])(\d{1,3})((?:(?:\\[,;: !]|\{,\}|\\thinspace\s*|~| )\d{3})+)(?!\d)")
_THOUSANDS_GAP = re.compile(r"\\[,;: !]|\{,\}|\\thinspace\s*|~| ")
_REPEATING = re.compile(r"(?<![\d.])(\d*)\.(\d*)\\(?:overline|bar|dot)\s*\{\s*(\d+)\s*\}")
_SCIENTIFIC = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)[eE]([+-]?\d+)(?![\w.])")
_LOOSE_EXPONENT = re.compile(r"\^\s*([+-]\s*\d+)")
_DECIMAL = re.compile(r"(?<![\d.])(\d*)\.(\d+)(?![\d.])")
_TRAILING_SPACE = re.compile(r"(?:\s|\\[,;: !]|\\q?quad|~)+$")


@dataclass(frozen=True)
class NormalizedAnswer:
    latex: str  # what math-verify parses
    unit: str | None  # canonical unit name, None when the answer carries none


def _fraction_latex(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    # spaces keep it apart from a command before it (\cdot0.5) without adding braces, which latex2sympy reads as sets
    return f" \\frac{{{value.numerator}}}{{{value.denominator}}} "


def _repeating_decimal(match: re.Match) -> str:
    whole, fixed, period = match.group(1) or "0", match.group(2), match.group(3)
    # 0.1(6) = (16 - 1) / 90: the usual rule, digits with the period once minus digits without it
    numerator = int(whole + fixed + period) - int(whole + fixed)
    denominator = (10 ** len(period) - 1) * 10 ** len(fixed)
    return _fraction_latex(Fraction(numerator, denominator))


def _exact_decimal(match: re.Match) -> str:
    return _fraction_latex(Fraction(Decimal(f"{match.group(1) or '0'}.{match.group(2)}")))


def _unit_name(spelling: str) -> str | None:
    return _UNIT_BY_SPELLING.get(re.sub(r"\s+", " ", spelling.strip().lower()))


def split_unit(text: str) -> tuple[str, str | None]:
    """``text`` without a trailing (or leading currency) unit, and the unit's canonical name."""
    text = text.strip()
    prefix = _PREFIX_CURRENCY.match(text)
    if prefix:
        return text[prefix.end() :].strip(), _unit_name(prefix.group("unit"))
    wrapped = _WRAPPED_UNIT.search(text)
    if wrapped and (unit := _unit_name(wrapped.group("unit"))) and wrapped.start() > 0:
        before = _TRAILING_SPACE.sub("", text[: wrapped.start()])
        return before, unit + _power(wrapped.group("power"))
    bare = _BARE_UNIT.search(text)
    if bare and bare.start() > 0:
        spelling = bare.group("unit")
        unit = _unit_name(spelling)
        set_apart = bool(bare.group("gap")) or spelling.lower() in _SIGN_UNITS or len(spelling) > 1
        before = _TRAILING_SPACE.sub("", text[: bare.start()])
        # a unit follows a number or a closing bracket, never a letter ("2 x" is not 2 of unit x)
        if unit is not None and set_apart and before and (before[-1].isdigit() or before[-1] in ")}]"):
            return before, unit + _power(bare.group("power"))
    return text, None


def _power(text: str) -> str:
    digits = re.sub(r"[^23\u00b2\u00b3]", "", text or "").replace("\u00b2", "2").replace("\u00b3", "3")
    return f"^{digits}" if digits else ""


def normalize_answer(text: str) -> NormalizedAnswer:
    """The answer as LaTeX math-verify reads the way our conventions mean it, and its unit."""
    for sign, latex in UNICODE_SIGNS.items():
        text = text.replace(sign, latex)
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == "$":
        text = text.strip("$").strip()
    text, unit = split_unit(text)
    text = _THOUSANDS.sub(lambda m: m.group(1) + _THOUSANDS_GAP.sub("", m.group(2)), text)
    text = _REPEATING.sub(_repeating_decimal, text)
    text = _SCIENTIFIC.sub(lambda m: f"{m.group(1)}\\times10^{{{m.group(2)}}}", text)
    text = _LOOSE_EXPONENT.sub(lambda m: "^{" + m.group(1).replace(" ", "") + "}", text)
    text = _DECIMAL.sub(_exact_decimal, text)
    return NormalizedAnswer(re.sub(r"\s+", " ", text).strip(), unit)
