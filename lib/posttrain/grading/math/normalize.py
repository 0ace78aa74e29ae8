r"""Normalization (pure string work, in the worker): the canonical LaTeX-ish text of one answer.

Wrappers, spacing macros, units, degrees, percent and currency go; numbers written as words, ``\frac12``,
``\sqrt2`` and plain-text math (``sqrt(2)/2``, ``x**2``) become LaTeX.
"""
from __future__ import annotations

import re

from .extract import _match_brace

_UNICODE = {"−": "-", "–": "-", "×": r"\times ", "·": r"\cdot ", "÷": r"\div ", "√": r"\sqrt", "π": r"\pi ",
            "∞": r"\infty ", "≤": r"\le ", "≥": r"\ge ", "≠": r"\neq ", "∪": r"\cup ", "∩": r"\cap ",
            "°": "", "²": "^2", "³": "^3", "\u00a0": " ", "\u2009": " ", "\u202f": " "}
_TEXT_CMD_RE = re.compile(r"\\(?:text|textrm|textbf|textit|textnormal|textsf|texttt|textup|mbox|hbox|mathrm|mathbf"
                          r"|mathit|mathsf|mathtt|mathnormal|boldsymbol|bm)\s*\{")
_UNIT_WORDS = (r"cm|centimeters?|mm|millimeters?|m|meters?|metres?|km|kilometers?|in|inch|inches|ft|feet|foot|yards?"
               r"|yd|miles?|mi|units?|square\s+units?|sq\s+units?|square\s+(?:feet|inches|meters|cm|centimeters)"
               r"|cubic\s+(?:feet|inches|meters|cm|centimeters|units)|degrees?|deg|radians?|rad|dollars?|cents?"
               r"|seconds?|sec|s|minutes?|min|hours?|hrs?|h|days?|weeks?|months?|years?|mph|kg|g|grams?|pounds?"
               r"|lbs?|liters?|litres?|l|ml|cups?|gallons?|ounces?|oz|people|persons?|students?|ways|times|points?")
_PLAIN_FUNC_RE = re.compile(r"(?<![\\A-Za-z])(sqrt|exp|ln|log|sin|cos|tan|cot|sec|csc|arcsin|arccos|arctan|sinh|cosh"
                            r"|tanh|pi|infty)(?![A-Za-z])")
# A unit power: "^2", "^{3}", "^{-1}".
_POW = r"\s*\^\s*\{?\s*-?[123]\s*\}?"
_UNIT_POW = rf"(?:{_POW})?"
# One text unit ("\text{ cm}^2", "\text{km/h}", "\text{m/s^2}"); a compound unit is several joined by "/" or "\cdot".
_ONE_TEXT_UNIT = rf"\\text\s*\{{\s*[A-Za-z](?:[A-Za-z .\-'/]|\\cdot|{_POW})*\s*\}}{_UNIT_POW}"
# ... or a fraction of units: "\frac{\text{km}}{\text{h}}".
_TEXT_UNIT = rf"(?:{_ONE_TEXT_UNIT}|\\frac\s*\{{\s*{_ONE_TEXT_UNIT}\s*\}}\s*\{{\s*{_ONE_TEXT_UNIT}\s*\}})"
_UNIT_TEXT_RE = re.compile(  # "/" before the first unit too: "\$2.50/\text{lb}"
    rf"^(?P<val>.*?\S)\s*(?:/\s*)?{_TEXT_UNIT}(?:\s*(?:/|\\cdot|\\times)?\s*{_TEXT_UNIT})*$", re.S)
_PLAIN_UNIT = rf"(?:{_UNIT_WORDS}){_UNIT_POW}"
_UNIT_PLAIN_RE = re.compile(rf"^(?P<val>.*(?:[\d}})]|\\[A-Za-z]+))\s+{_PLAIN_UNIT}(?:\s*/\s*{_PLAIN_UNIT})?$", re.S)
# \mathrm{i} / \text{e}: upright i and e are the imaginary unit and Euler's number, not units.
_UPRIGHT_CONST_RE = re.compile(r"\\(?:mathrm|text|textrm|textnormal|operatorname|mathit|textit)\s*\{\s*([ie])\s*\}"
                               r"|\{\\rm\s+([ie])\s*\}")


# Numbers written as words ("five", "twenty-one", "one hundred and five", "minus three"), up to the millions.
_ONES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen")
_TENS = ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_WORD_VALUE = {w: i for i, w in enumerate(_ONES)} | {w: 20 + 10 * i for i, w in enumerate(_TENS)}
_SCALE = {"hundred": 100, "thousand": 1000, "million": 10 ** 6}
_W_SEP = r"(?:\s*-\s*|\s+)"
_W_1_99 = rf"(?:(?:{'|'.join(_TENS)})(?:{_W_SEP}(?:{'|'.join(_ONES[1:10])}))?|{'|'.join(reversed(_ONES[1:]))})"
_W_1_999 = rf"(?:{_W_1_99}\s+hundred(?:\s+(?:and\s+)?{_W_1_99})?|{_W_1_99})"
_W_AND = r"(?:,?\s+(?:and\s+)?)"
_NUMBER_PHRASE_RE = re.compile(
    rf"(?<![A-Za-z\\])(?<![A-Za-z]-)(?:(?:negative|minus)\s+)?"
    rf"(?:zero|{_W_1_999}\s+million(?:{_W_AND}{_W_1_999}\s+thousand)?"
    rf"(?:{_W_AND}{_W_1_999})?|{_W_1_999}\s+thousand(?:{_W_AND}{_W_1_999})?|{_W_1_999})(?![A-Za-z]|-[A-Za-z])", re.I)


_DENOMINATOR_WORDS = {"half": 2, "halves": 2, "third": 3, "quarter": 4, "fourth": 4, "fifth": 5, "sixth": 6,
                      "seventh": 7, "eighth": 8, "ninth": 9, "tenth": 10}
_FRACTION_WORDS_RE = re.compile(
    rf"(?<![A-Za-z\\])(an?|{_W_1_99})(?:\s*-\s*|\s+)(halves|half|(?:third|quarter|fourth|fifth|sixth|seventh|eighth"
    rf"|ninth|tenth)s?)(?![A-Za-z])", re.I)


def _fraction_words(m: re.Match) -> str:
    r"""``two-thirds`` -> ``\frac{2}{3}``, ``a half`` -> ``\frac{1}{2}``."""
    num = m.group(1).lower()
    num = "1" if num in ("a", "an") else _NUMBER_PHRASE_RE.sub(_number_phrase_digits, num)
    word = m.group(2).lower()
    den = _DENOMINATOR_WORDS.get(word) or _DENOMINATOR_WORDS[word[:-1]]  # plural: "thirds"
    return rf"\frac{{{num}}}{{{den}}}"


def _number_phrase_digits(m: re.Match) -> str:
    """The digits of a number phrase matched by _NUMBER_PHRASE_RE (its grammar guarantees the words combine)."""
    words = re.findall(r"[a-z]+", m.group(0).lower())
    sign = "-" if words[0] in ("negative", "minus") else ""
    total = group = 0
    for w in words:
        if w in _WORD_VALUE:
            group += _WORD_VALUE[w]
        elif w == "hundred":
            group *= 100
        elif w in _SCALE:
            total, group = total + group * _SCALE[w], 0
    return f"{sign}{total + group}"


_NUMBER_THEN_WORDS_RE = re.compile(r"^\\text\s*\{\s*([-+]?\d[\d,]*(?:\.\d+)?)\s+([A-Za-z][A-Za-z .\-'/]*)\}$")
_PLAIN_WORD_RE = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")


def _spelled_numbers_to_digits(s: str) -> str:
    if not _PLAIN_WORD_RE.search(s):  # most answers have no plain word: skip the big patterns
        return s
    return _NUMBER_PHRASE_RE.sub(_number_phrase_digits, _FRACTION_WORDS_RE.sub(_fraction_words, s))


_ARTICLE_RE = re.compile(r"^(?:the|an?)\s+(?=\S)", re.I)

def _unwrap_cmd(s: str, cmd_re: re.Pattern[str]) -> str:
    r"""Replace every ``\cmd{X}`` matched by cmd_re (which ends at the ``{``) with X, braces balanced."""
    for _ in range(50):  # nested wrappers unwrap one level per pass
        m = cmd_re.search(s)
        if not m:
            return s
        open_idx = m.end() - 1
        close = _match_brace(s, open_idx)
        if close < 0:
            return s[:m.start()] + s[open_idx + 1:]
        s = s[:m.start()] + s[open_idx + 1:close] + s[close + 1:]
    return s


_BOXED_CMD_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")


def _fix_fracs_sqrt(s: str) -> str:
    r"""``\frac12`` -> ``\frac{1}{2}``, ``\frac{270}7``, ``\frac9{19}``, ``\sqrt2``, ``\sqrt\pi``, ``\sqrt(2)``."""
    group = r"\{(?:[^{}]|\{(?:[^{}]|\{[^{}]*\})*\})*\}"
    tok = r"(?:\\[A-Za-z]+|[^\s{}\\^_])"
    s = re.sub(rf"\\(frac|binom)\s*({tok})\s*({tok})", r"\\\1{\2}{\3}", s)
    s = re.sub(rf"\\(frac|binom)\s*({group})\s*({tok})", r"\\\1\2{\3}", s)
    s = re.sub(rf"\\(frac|binom)\s*({tok})\s*(?=\{{)", r"\\\1{\2}", s)
    s = re.sub(r"\\sqrt\s*\(([^()]*)\)", r"\\sqrt{\1}", s)
    s = re.sub(r"\\sqrt\s*(\\[A-Za-z]+|[^\s{\[\\+\-])", r"\\sqrt{\1}", s)
    return s


def _strip_units(s: str) -> str:
    """Trailing units: "5 \\text{ cm}^2", "80 \\text{km/h}", "864 inches". Only after a digit or a closing brace,
    so a text answer ("\\text{Evelyn}") or a variable ("x \\text{ m}") keeps its words."""
    for _ in range(3):
        m = _UNIT_TEXT_RE.match(s)
        if m and re.search(r"(?:[\d})]|\\[A-Za-z]+)\s*$", m.group("val")):
            s = m.group("val")
            continue
        m = _UNIT_PLAIN_RE.match(s)
        # Bare unit words only after a plain numeric value: in "2n + 3 m" the m may be a variable.
        if m and not re.search(r"[A-Za-z]", re.sub(r"\\[A-Za-z]+", "", m.group("val"))):
            s = m.group("val")
            continue
        break
    return s


# A relation sign: the answer is a condition ("0 < x < 36 with x \neq 9").
_REL_RE = re.compile(r"<|>|\\(?:le|ge|leq|geq|lt|gt|leqslant|geqslant|neq|ne)(?![A-Za-z])")


def _normalize(s: str) -> str:
    """Canonical LaTeX-ish text of an answer: wrappers, spacing, units, degrees, percent and currency removed."""
    s = s.strip()
    for k, v in _UNICODE.items():
        s = s.replace(k, v)
    s = _unwrap_cmd(s, _BOXED_CMD_RE)
    s = s.replace("\n", " ").replace("\t", " ")
    # Plain-text math ("sqrt(2)/2", "pi/2", "x**2", "exp(16)") as LaTeX.
    s = s.replace("**", "^")
    s = _PLAIN_FUNC_RE.sub(r"\\\1", s)
    s = re.sub(r"(?<![\\A-Za-z])(?:infinity|inf)(?![A-Za-z])", r"\\infty", s)
    s = re.sub(r"\\varnothing(?![A-Za-z])|\\\{\s*\\\}", r"\\emptyset ", s)
    # LaTeX digit grouping: "10,\!080", "1{,}000", "1\,000" are thousands separators.
    s = re.sub(r"(?<=\d),\\!\s*(?=\d)", "", s)
    s = re.sub(r"(?<=\d)\{,\}(?=\d{3}(?!\d))", ",", s)
    s = re.sub(r"(?<=\d)\\[,;: ](?=\d{3}(?!\d))", "", s)
    s = re.sub(r"(?<!\\)\\(?:[,;:!> ]|quad(?![A-Za-z])|qquad(?![A-Za-z]))", " ", s)
    s = re.sub(r"\\(?:displaystyle|textstyle|scriptstyle|limits|nolimits)(?![A-Za-z])", " ", s)
    s = s.replace("~", " ")
    s = re.sub(r"\\(?:left|right)\s*\.", "", s)  # invisible delimiters
    s = re.sub(r"\\(?:left|right|middle|[bB]igg?[lrm]?)(?![A-Za-z])", "", s)
    s = re.sub(r"\\backslash(?![A-Za-z])", r"\\setminus ", s)
    s = s.replace(r"\lbrace", r"\{").replace(r"\rbrace", r"\}").replace(r"\lbrack", "[").replace(r"\rbrack", "]")
    s = re.sub(r"\\langle(?![A-Za-z])", "(", s)
    s = re.sub(r"\\rangle(?![A-Za-z])", ")", s)
    s = re.sub(r"\\[dtc]frac(?![A-Za-z])", r"\\frac", s)
    s = re.sub(r"\\[dt]binom(?![A-Za-z])", r"\\binom", s)
    s = _UPRIGHT_CONST_RE.sub(lambda m: m.group(1) or m.group(2), s)
    s = re.sub(r"\\imath(?![A-Za-z])", "i", s)
    s = _TEXT_CMD_RE.sub(r"\\text{", s)
    # Degrees, percent and currency carry no value for grading.
    s = re.sub(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ(?![A-Za-z])|\\degree(?![A-Za-z])", "", s)
    s = re.sub(r"\\text\{\s*(?:degrees?|percent|%)\s*\}", "", s)
    s = s.replace(r"\%", "").replace("%", "").replace(r"\$", "").replace("$", "")
    s = re.sub(r"\\text\s*\{\s*(?:and|or)\s*\}", ",", s)
    s = re.sub(r"\\(?:dots|ldots|cdots)(?![A-Za-z])", "", s)
    s = _spelled_numbers_to_digits(s)
    # "\text{12 apples}" (also from "\text{twelve apples}"): a number, then words that can only be its unit.
    s = _NUMBER_THEN_WORDS_RE.sub(r"\1\\text{ \2}", s)
    s = _strip_units(s)
    s = _unwrap_cmd(s, re.compile(r"\\text\s*\{"))
    s = _strip_units(s)  # again without the wrappers: "\text{80 km/h}"
    if _REL_RE.search(s):  # "0 < x < 36 with x \neq 9", "... except x = 9": conditions joined in words
        s = re.sub(r"\s+(?:with|where|but|provided(?:\s+that)?|such\s+that)\s+", ", ", s)
        s = re.sub(r"\s*,?\s+(?:except|excluding)\s+(?:for\s+|when\s+)?([A-Za-z])\s*=\s*", r", \1 \\neq ", s)
    s = re.sub(r"(?<=[\w})\]])\s+(?:and|or)\s+(?=[-+\w\\(\[{])", ", ", s)
    s = _fix_fracs_sqrt(s)
    s = re.sub(r"\s+", " ", s).strip()
    s = re.sub(r"^(?:the\s+)?(?:final\s+)?answer\s*(?:is\s*)?[:=]?\s*", "", s, flags=re.I)
    s = re.sub(r"^(?:the|an?)\s+(?=[A-Za-z][A-Za-z\s'-]{2,}$)", "", s, flags=re.I)  # "an ellipse" outside \text
    s = re.sub(r"[\s.;,]+$", "", s)  # sentence punctuation after the answer
    # "1 000 000" written with plain spaces
    if re.fullmatch(r"[+-]?\d{1,3}(?: \d{3})+(?:\.\d+)?", s):
        s = s.replace(" ", "")
    return s


def _canon(s: str) -> str:
    return re.sub(r"\s+", "", s)
