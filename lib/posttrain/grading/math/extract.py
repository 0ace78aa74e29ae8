r"""Extraction, in the caller's process (cheap): the answer a response gives, from its last ``\boxed{}``.

The last complete ``\boxed{...}``/``\fbox{...}`` with balanced braces; boxes right before it separated only by
commas, "and", "or", ``;``, whitespace or ``$`` belong to the same answer (the worker decides whether they hold one
value or a list). A bare ``\boxed 5`` is the single token after it.
"""
from __future__ import annotations

import re

_BOX_CMD_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
# Text allowed between two boxes for them to form one list answer.
_JOIN_GAP_RE = re.compile(r"(?:\s|\$|,|;|\\\]|\\\[|\\\(|\\\)|\\quad|\\qquad|\\[,;]|\\text\{\s*(?:and|or)\s*\}"
                          r"|\band\b|\bor\b)*")


def _match_brace(text: str, open_idx: int) -> int:
    r"""Index of the `}` closing the `{` at open_idx, or -1. Escaped braces (\{, \}) are not group delimiters."""
    depth = 0
    i, n = open_idx, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2  # control symbol: "\{", "\}", "\\" are not group braces
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _brace_pairs(text: str) -> dict[int, int]:
    """Map each `{` to its closing `}` in one pass (unclosed ones are absent); escaped braces are skipped."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            pairs[stack.pop()] = i
        i += 1
    return pairs


_BOX_TOKEN_RE = re.compile(r"\s+([^\s$]+)")


def _boxes(text: str) -> list[tuple[int, int, str]]:
    """Complete, non-nested boxes as (start, end, content), in order of appearance. Linear in len(text), since
    degenerate generations can hold thousands of unclosed boxes and this runs outside the timeout."""
    found: list[tuple[int, int, str]] = []
    pairs = None
    pos = 0
    while True:
        m = _BOX_CMD_RE.search(text, pos)
        if not m:
            return found
        j = m.end()
        while j < len(text) and text[j].isspace():
            j += 1
        if j < len(text) and text[j] == "{":
            if pairs is None:
                pairs = _brace_pairs(text)
            close = pairs.get(j, -1)
            if close < 0:  # truncated box: skip it, an earlier complete box may still stand
                pos = m.end()
                continue
            found.append((m.start(), close + 1, text[j + 1:close]))
            pos = close + 1  # boxes nested inside this one are part of its content
        else:
            # "\boxed 5": LaTeX takes one token; we take the run of non-space characters up to "$".
            tok = _BOX_TOKEN_RE.match(text, m.end())
            if tok:
                found.append((m.start(), tok.end(), tok.group(1).rstrip(".,;:")))
                pos = tok.end()
            else:
                pos = m.end()


def _answer_boxes(text: str) -> list[str]:
    """Contents of the last box and of the boxes right before it that form one list answer with it, in order;
    a box repeating an earlier one's text is dropped. Empty if there is no complete box."""
    if not text:
        return []
    boxes = _boxes(text)
    if not boxes:
        return []
    parts = [boxes[-1][2].strip()]
    for k in range(len(boxes) - 1, 0, -1):
        gap = text[boxes[k - 1][1]:boxes[k][0]]
        if not _JOIN_GAP_RE.fullmatch(gap):
            break
        content = boxes[k - 1][2].strip()
        if content not in parts:  # a repeated identical box is one answer, not a list
            parts.insert(0, content)
    return parts


def _join_boxes(parts: list[str]) -> str | None:
    return ", ".join(parts) if parts else None


def extract_boxed(text: str) -> str | None:
    r"""The last complete ``\boxed{...}``/``\fbox{...}`` content of `text` (adjacent list boxes joined), or None."""
    return _join_boxes(_answer_boxes(text))
