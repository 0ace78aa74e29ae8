r"""Structure (in the worker): what kind of answer a normalized string is -- a list, set, tuple or interval, a
union, a matrix, an equation, a relation, ``\pm`` alternatives, a number in a base or a leaf -- and the
multiple-choice and text-answer readings.
"""
from __future__ import annotations

import re

from .normalize import (_ARTICLE_RE, _BOXED_CMD_RE, _FRACTION_WORDS_RE, _NUMBER_PHRASE_RE, _REL_RE, _TEXT_CMD_RE,
                        _unwrap_cmd)

_OPEN, _CLOSE = "([{", ")]}"


def _split_top(s: str, sep: str | re.Pattern[str]) -> list[str]:
    """Split at `sep` occurring outside any (), [], {} (mismatched pairs like "(1,2]" still nest correctly)."""
    pat = sep if isinstance(sep, re.Pattern) else re.compile(re.escape(sep))
    parts, depth, start, i = [], 0, 0, 0
    while i < len(s):
        ch = s[i]
        if ch == "\\" and i + 1 < len(s) and s[i + 1] == "\\":
            if depth == 0 and pat.match(s, i):
                parts.append(s[start:i])
                m = pat.match(s, i)
                i = start = m.end()
                continue
            i += 2
            continue
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
        elif depth == 0:
            m = pat.match(s, i)
            if m and m.end() > i:
                parts.append(s[start:i])
                i = start = m.end()
                continue
        i += 1
    parts.append(s[start:])
    return [p.strip() for p in parts]


def _encloses(s: str) -> bool:
    """True if the bracket at s[0] is closed by the bracket at s[-1] (depth stays positive in between)."""
    depth = 0
    for i, ch in enumerate(s):
        if ch in _OPEN:
            depth += 1
        elif ch in _CLOSE:
            depth -= 1
            if depth == 0:
                return i == len(s) - 1
    return False


_CUP_RE = re.compile(r"\\cup(?![A-Za-z])")
_APPROX_RE = re.compile(r"\\approx(?![A-Za-z])")
_LIST_SEP_RE = re.compile(r"[,;]")
_EQ_RE = re.compile(r"(?<![<>!=\\])=(?!=)")
_PM_RE = re.compile(r"\\(?:pm|mp)(?![A-Za-z])")
_IN_PREFIX_RE = re.compile(r"^(?:[A-Za-z](?:_\{?\w+\}?)?|\\[A-Za-z]+)\s*\\in(?![A-Za-z])\s*(.+)$", re.S)
_MATRIX_RE = re.compile(r"^\\begin\{([pbvBV]?matrix|array|smallmatrix)\}(?:\{[^{}]*\})?(.*)\\end\{\1\}$", re.S)
_THOUSANDS_RE = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_BASE_RE = re.compile(r"([0-9A-Za-z]+)_\{?(\d{1,2})\}?")


_SET_BUILDER_RE = re.compile(r"\\\{\s*[A-Za-z]\s*(?:\\in\s*\\mathbb\s*\{?R\}?\s*)?(?:\\mid|\||:|\\colon)\s*(.+)\\\}",
                             re.S)


def _flatten_pm(nodes: list) -> list:
    out = []
    for n in nodes:
        out.extend(n[1] if n[0] == "pm" else [n])
    return out


def _parse(s: str) -> tuple:
    """Structure of a normalized answer. Nodes are tuples whose first item names the kind."""
    s = s.strip()
    m = _IN_PREFIX_RE.match(s)
    if m:
        s = m.group(1).strip()
    m = _SET_BUILDER_RE.fullmatch(s)
    if m:  # "\{x \mid 0 < x < 36, x \neq 9\}" is its conditions
        s = m.group(1).strip()
    if len(s) > 1 and s[0] == "(" and _encloses(s) and not _split_top(s[1:-1], _LIST_SEP_RE)[1:]:
        return _parse(s[1:-1])  # redundant outer parentheses
    parts = _split_top(s, _APPROX_RE)
    if len(parts) > 1:
        if not parts[0]:  # "\approx 3.14"
            return _parse(" ".join(parts[1:]))
        return ("approx", [_parse(p) for p in parts if p])
    parts = _split_top(s, _CUP_RE)
    if len(parts) > 1 and all(parts):
        return ("union", [_parse(p) for p in parts])
    if _THOUSANDS_RE.fullmatch(s):
        return ("leaf", s.replace(",", ""))
    items = [p for p in _split_top(s, _LIST_SEP_RE) if p]
    if len(items) > 1:
        return ("list", _flatten_pm([_parse(p) for p in items]))
    if s.startswith("\\{") and s.endswith("\\}") and _encloses(s[1:]):
        inner = [p for p in _split_top(s[2:-2], _LIST_SEP_RE) if p]
        return ("set", _flatten_pm([_parse(p) for p in inner]))
    if len(s) > 1 and s[0] in "([" and s[-1] in ")]" and _encloses(s):
        inner = _split_top(s[1:-1], _LIST_SEP_RE)
        if len(inner) > 1:
            return ("brk", s[0], s[-1], [_parse(p) for p in inner])
        return _parse(s[1:-1]) if s[0] == "[" and s[-1] == "]" else ("leaf", s)
    m = _MATRIX_RE.match(s)
    if m:
        rows = [r for r in _split_top(m.group(2), re.compile(r"\\\\")) if r.strip()]
        return ("mat", [[_parse(c) for c in _split_top(r, "&")] for r in rows])
    eq_parts = _split_top(s, _EQ_RE)
    if len(eq_parts) > 1 and all(eq_parts):
        return ("eq", eq_parts)
    if _REL_RE.search(s):
        return ("rel", s)
    if _PM_RE.search(s):
        plus = _PM_RE.sub(lambda mm: "+" if mm.group(0) == r"\pm" else "-", s)
        minus = _PM_RE.sub(lambda mm: "-" if mm.group(0) == r"\pm" else "+", s)
        return ("pm", [_parse(plus), _parse(minus)])
    m = _BASE_RE.fullmatch(s)
    if m and re.match(r"\d", m.group(1)) and 2 <= int(m.group(2)) <= 36:
        try:
            int(m.group(1), int(m.group(2)))
            return ("base", m.group(1).upper().lstrip("0") or "0", int(m.group(2)))
        except ValueError:
            pass
    return ("leaf", s)


def _parse_pred_alternatives(s: str) -> list[tuple]:
    """Readings of a prediction: "1,234" may be a number with a separator or the list 1, 234; both are tried."""
    node = _parse(s)
    if _THOUSANDS_RE.fullmatch(s.strip()):
        return [node, ("list", [_parse(p) for p in s.split(",")])]
    return [node]


_MCQ_RE = re.compile(r"\(?\s*([A-E])\s*\)?")


def _mcq_letter(gold_norm: str) -> str | None:
    m = _MCQ_RE.fullmatch(gold_norm)
    return m.group(1) if m else None


def _pred_mcq_letter(p: str) -> str | None:
    p = re.sub(r"^(?:option|choice|answer)\s*:?\s*", "", p.strip(), flags=re.I)
    m = re.fullmatch(r"\(?\s*([A-Ea-e])\s*\)?", p)
    if m:
        return m.group(1).upper()
    m = re.match(r"\(\s*([A-Ea-e])\s*\)\s*(.*)$", p, re.S)  # "(B) 12": the letter, then the option's text
    if m and not re.search(r"\(\s*[A-Ea-e]\s*\)", m.group(2)):
        return m.group(1).upper()
    return None


_TEXT_GOLD_RE = re.compile(r"\\(?:text|textbf|textrm|textit|mathrm|mbox|textnormal)\s*\{\s*([A-Za-z][A-Za-z '\-]*)\}")


def _text_answer(raw: str) -> str | None:
    r"""Lower-cased words if `raw` is a pure text answer such as ``\text{Evelyn}``, else None."""
    m = _TEXT_GOLD_RE.fullmatch(raw.strip().strip("$").strip())
    if not m or sum(ch.isalpha() for ch in m.group(1)) < 2:
        return None
    words = re.sub(r"\s+", " ", m.group(1)).strip().lower()
    if _NUMBER_PHRASE_RE.fullmatch(words) or _FRACTION_WORDS_RE.fullmatch(words):  # "\text{five}" is 5
        return None
    return _ARTICLE_RE.sub("", words)


def _plain_text(raw: str) -> str:
    s = _unwrap_cmd(raw.strip(), _BOXED_CMD_RE)
    s = _unwrap_cmd(_TEXT_CMD_RE.sub(r"\\text{", s), re.compile(r"\\text\s*\{"))
    s = s.replace("$", "").replace("\\ ", " ")
    s = re.sub(r"\s+", " ", s).strip().rstrip(".").strip().lower()
    return _ARTICLE_RE.sub("", s)

