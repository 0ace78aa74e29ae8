r"""Math answer grading: the last ``\boxed{}`` of a response against a gold answer, with a hard per-item timeout.

Why not Math-Verify alone: its known false positives (tiny values compared after rounding, ``\pm 2021`` vs
``2021``, ``n=2,3,4`` vs ``1,2,3``, different lines that both parse to 0, malformed ``4\sqrt(2)`` read as ``4``),
its missing competition conventions (AIME leading zeros, ``1,000``), and its SIGALRM timeout, which only works on
the main thread. So grading here is layered:

1. Extraction (in the caller's process, cheap): the last complete ``\boxed{...}``/``\fbox{...}`` with balanced
   braces (``\boxed {x}`` too). Boxes right before it that are separated only by commas, "and", "or", ``;``,
   whitespace or ``$`` form one answer: if they all hold the same value (``\boxed{\frac65}`` or ``\boxed{1.2}``)
   it is that value, otherwise the list of their values (``\boxed{1}, \boxed{2}`` is the list ``1, 2``; a hedge
   ``\boxed{2} or \boxed{3}`` becomes a two-item list and fails a one-item gold). A bare ``\boxed 5`` is read as
   the single token after it. No box means status ``no_answer``.
2. Normalization (our own): ``\left``/``\right``, ``\dfrac``/``\tfrac``, spacing macros, ``\text``/``\mathrm``/
   ``\mbox`` wrappers, trailing units (``5 \text{ cm}^2``, compound ones like ``80\ \text{km/h}`` or
   ``\frac{\text{m}}{\text{s}}``), upright ``\mathrm{i}``/``\mathrm{e}`` as the constants, numbers written as words
   (``\text{five}``, ``twenty-one``, ``two-thirds``), degrees, ``\%``, ``\$``, ``\frac12``, ``\sqrt2``,
   ``\sqrt(2)``, LaTeX digit grouping (``10,\!080``), plain-text math (``sqrt(2)/2``, ``pi``, ``x**2``).
3. Structure (our own): multiple choice letters, text answers (``\text{Evelyn}``, case-insensitive, a leading
   "the"/"a"/"an" ignored), ``x \in`` prefixes, unions, sets (unordered), bracketed tuples/intervals (ordered; the
   bracket characters must match, so ``(1,2]`` != ``[1,2]``), bare comma lists (unordered; ``1,000`` is a number by
   the 3-digit-group rule), matrices, equations (``x = ...`` stripped when the other side has no lhs; a chain of
   constants ``1 + 11 + 37 = 49`` is right when every side has the gold's value; general equations equal when one
   is a nonzero constant multiple of the other), ``\pm`` expanded into two values, inequalities compared as
   solution sets (a list of conditions on one variable holds together unless that is empty, and exclusions
   ``x \neq 9`` always restrict; ``\{x \mid ...\}`` is its conditions), ``a \approx b`` (a is the answer), numbers
   in a base (``52_8``).
4. Values: integers and rationals are compared exactly, whether written as numbers or as expressions of them
   (``033`` == ``33``, ``1/2`` == ``0.5``, ``0.\overline{3}`` == ``1/3``, ``\frac{2^{2005}+1}{3\cdot 2^{2006}}`` !=
   ``1/6``); a decimal literal only matches a different exact value if it has >= 6 significant digits and is that
   value rounded or truncated at its last digit (``0.333333`` == ``1/3``, ``0.33`` != ``1/3``). Other constants are
   parsed with latex2sympy (Math-Verify's parser) and compared by 60-digit evaluation with a relative tolerance of
   1e-40 (so ``1/2004!`` != ``1/2006!``), re-checked at twice the digits of a large value. Non-numbers that parse
   to ``zoo``/``nan`` (``1:00``) are never equal unless written identically. With free variables, both sides are
   evaluated at six fixed points: where both evaluate in real arithmetic they must agree (two points have negative
   coordinates, so ``|x|`` != ``x``); with two such points that decides (``\sqrt{1/n}`` == ``1/\sqrt{n}``,
   ``\sqrt{x-1}\sqrt{x+1}`` == ``\sqrt{x^2-1}``), otherwise sympy's proof for positive variables, then the
   complex values. ``math_verify.verify`` (gold first) decides only where numbers cannot (undefined functions,
   relations). Times of day (``9:30``, ``\text{9:30 p.m.}``) are compared as times, not as ratios.

Where each step lives: ``extract.py`` (1), ``normalize.py`` (2), ``structure.py`` (3), ``judge.py`` (4 and the
worker's request handler). Steps 2-4 run in a persistent worker *process* (``worker.py``: a plain ``python -c`` child
on pipes that loads ``judge.py`` by its path, never this package), with Math-Verify's own timeouts off. The caller
waits at most ``timeout_s`` per item and kills the worker on expiry (status ``timeout``), so grading is time-limited
from any thread and never hangs. Every function returns the shared ``Verdict``; its ``status`` is one of STATUSES.
"""
from __future__ import annotations

import os
from pathlib import Path

from ..verdict import Verdict
from .extract import _BOX_CMD_RE, _answer_boxes, _join_boxes, extract_boxed
from .worker import WorkerError, WorkerPool, WorkerTimeout

__all__ = ["STATUSES", "extract_boxed", "grade_math", "grade_math_verdict", "grade_math_batch"]

STATUSES = ("correct", "wrong_answer", "no_answer", "timeout", "error")
_MAX_ANSWER_CHARS = 20_000  # a longer "answer" is degenerate output; refusing it keeps the pipes and sympy sane


_POOL = WorkerPool(Path(__file__).with_name("judge.py"), "worker_handler")


def _grade_extracted(extracted: str, boxes: list[str], gold: str, timeout_s: float,
                     want_workers: int | None = None) -> Verdict:
    if len(extracted) > _MAX_ANSWER_CHARS or len(gold) > _MAX_ANSWER_CHARS:
        return Verdict(False, "wrong_answer" if len(gold) <= _MAX_ANSWER_CHARS else "error",
                       f"answer longer than {_MAX_ANSWER_CHARS} characters", extracted)
    request = {"p": extracted, "g": gold, "boxes": boxes if len(boxes) > 1 else []}
    try:
        reply = _POOL.call(request, timeout_s, want_workers)
    except WorkerTimeout:
        return Verdict(False, "timeout", f"comparison exceeded {timeout_s:g} s; worker killed", extracted)
    except WorkerError as e:
        return Verdict(False, "error", f"grading worker failed: {e}", extracted)
    return Verdict(bool(reply["correct"]), reply["status"], reply["reason"], extracted)


def _gold_text(gold: str) -> str:
    gold = "" if gold is None else str(gold)
    boxed = extract_boxed(gold) if _BOX_CMD_RE.search(gold) else None
    return (boxed if boxed is not None else gold).strip()


def _precheck(response: str, gold: str) -> tuple[Verdict | None, str | None, list[str], str]:
    """(verdict if decided without a worker, extracted answer, its boxes, gold text)."""
    gold = _gold_text(gold)
    boxes = _answer_boxes(response or "")
    extracted = _join_boxes(boxes)
    if not gold:
        return Verdict(False, "error", "gold answer is empty", extracted), extracted, boxes, gold
    if extracted is None:
        return Verdict(False, "no_answer", "no \\boxed{} answer in the response", None), None, boxes, gold
    return None, extracted, boxes, gold


def grade_math_verdict(response: str, gold: str, timeout_s: float = 5.0) -> Verdict:
    r"""Grade the last ``\boxed{}`` answer of `response` against `gold`; see the module docstring for the rules.

    Safe from any thread or process; the comparison is killed after `timeout_s` seconds (status "timeout").
    """
    verdict, extracted, boxes, gold = _precheck(response, gold)
    return verdict or _grade_extracted(extracted, boxes, gold, timeout_s)


def grade_math(response: str, gold: str, timeout_s: float = 5.0) -> bool:
    """True iff the response's last boxed answer is equivalent to `gold` (timeouts and errors count as False)."""
    return grade_math_verdict(response, gold, timeout_s).correct


def grade_math_batch(pairs: list[tuple[str, str]], timeout_s: float = 5.0, num_workers: int | None = None,
                     progress: bool = False) -> list[Verdict]:
    """Grade (response, gold) pairs in parallel worker processes; results keep the input order.

    Each item keeps its own `timeout_s`. `num_workers` defaults to the number of CPU cores.
    """
    from concurrent.futures import ThreadPoolExecutor

    pairs = list(pairs)
    n_workers = max(1, num_workers or os.cpu_count() or 1)
    results: list[Verdict | None] = [None] * len(pairs)
    todo = []
    for i, (response, gold) in enumerate(pairs):
        verdict, extracted, boxes, g = _precheck(response, gold)
        if verdict is not None:
            results[i] = verdict
        else:
            todo.append((i, extracted, boxes, g))
    from ...progress import bar  # tqdm is imported only when a batch is graded
    pbar = bar(progress, total=len(pairs), desc="grading math", initial=len(pairs) - len(todo))

    def run(item: tuple[int, str, list[str], str]) -> None:
        i, extracted, boxes, g = item
        results[i] = _grade_extracted(extracted, boxes, g, timeout_s, want_workers=n_workers)
        pbar.update(1)

    if todo:
        with ThreadPoolExecutor(max_workers=min(n_workers, len(todo))) as ex:
            list(ex.map(run, todo))
    pbar.close()
    return results  # type: ignore[return-value]
