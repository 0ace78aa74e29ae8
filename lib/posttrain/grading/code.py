"""Grade model-written Python programs against LiveCodeBench-style tests, inside a sandbox.

What: ``grade_code(response, tests, fn_name)`` takes the model's whole response, grades its last fenced
Python block against tests ``{"input": str, "output": str, "testtype": "stdin" | "functional"}`` and
returns pass/fail; ``grade_code_verdict`` says why (``CodeVerdict``); ``grade_code_batch`` grades many
responses in parallel, in order.

Why this shape:

* **Same rules as LiveCodeBench** (anchors §2.4), so pass@1 numbers are comparable: the LCB prelude of
  stdlib imports and ``sys.setrecursionlimit(50000)``; stdin outputs compared after stripping the whole
  output and each line, line counts equal, each line equal or all its tokens equal as ``Decimal`` (so
  ``1.0 == 1`` but ``0.333333 != 0.3333333``: no tolerance); functional tests call ``Solution().fn(*args)``
  with one JSON argument per input line and compare with ``==`` after tuple->list; stop at the first failing
  test; a per-test time limit (6 s by default) and an overall one of ``(timeout+1)*n + 5`` s.
* **Unlike LiveCodeBench, programs run in a real interpreter** (``posttrain.grading.sandbox``), so
  ``sys.stdin.buffer`` / ``sys.stdout.buffer`` and ``input()`` just work (mocked stdin made models that use
  the buffer idiom score 58% instead of 91% in one harness), every test starts from a fresh process, and
  memory, CPU, output size and process count are limited.
* **The program never decides its own verdict.** Expected outputs never enter the sandbox; the sandbox
  returns raw stdout (stdin tests) or the JSON serialization of the return value (functional tests), and
  this process parses and compares. A return value with a rigged ``__eq__`` cannot be serialized, so it
  fails; printed "PASSED" markers are just output; forged frames could only claim an output, which still has
  to match data the program never saw.
"""
from __future__ import annotations

import ast
import json
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation

from . import sandbox as _sandbox

__all__ = ["CodeVerdict", "extract_code", "grade_code", "grade_code_verdict", "grade_code_batch",
           "grade_program", "compare_stdout", "compare_functional", "STATUSES"]

STATUSES = ("passed", "wrong_answer", "runtime_error", "timeout", "memory_limit", "no_code", "syntax_error")
DEFAULT_MEMORY_MB = 2048
DEFAULT_MAX_OUTPUT_BYTES = 16 << 20  # also the size cap of any file the program writes (RLIMIT_FSIZE)
DEFAULT_NPROC = 64  # threads count too; programs rarely need more than a handful
DEFAULT_NOFILE = 128  # open files; with the size cap this bounds in-memory files (memfd) to ~2 GiB
_TRUNC = 300


@dataclass
class CodeVerdict:
    """Why a program passed or failed.

    status: one of STATUSES. num_passed counts the tests passed before the first failure (grading stops
    there, like LiveCodeBench). first_failure: test_index, input, expected, got (each truncated), message.
    """
    passed: bool
    status: str
    num_tests: int = 0
    num_passed: int = 0
    first_failure: dict | None = None
    reason: str = ""
    sandbox: str = ""
    elapsed_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- extraction

_FENCE = re.compile(r"^[ \t]*```[ \t]*([A-Za-z0-9_+.#-]*)[^\n`]*$")
_PY_TAGS = {"python", "py", "python3", "py3"}


def extract_code(response: str) -> str | None:
    """The last ```python fenced block of `response`, else the last fenced block of any language, else None.

    Only closed blocks count: a block cut off by the token limit is an incomplete program.
    """
    if not response:
        return None
    blocks, lang, buf = [], None, None
    for line in response.split("\n"):
        m = _FENCE.match(line)
        if buf is None:
            if m:
                lang, buf = m.group(1).lower(), []
        elif line.strip() == "```" or (m and not m.group(1)):
            blocks.append((lang, "\n".join(buf)))
            buf = None
        else:
            buf.append(line)
    if not blocks:
        return None
    python = [code for lang, code in blocks if lang in _PY_TAGS]
    code = python[-1] if python else blocks[-1][1]
    return code if code.strip() else None


# ---------------------------------------------------------------- comparison (LiveCodeBench rules)

def _truncate(s, n: int = _TRUNC) -> str:
    s = s if isinstance(s, str) else repr(s)
    return s if len(s) <= n else s[: n // 2] + "...(truncated)..." + s[-n // 2:]


def _stripped_lines(text: str) -> list:
    return [line.strip() for line in text.strip().split("\n")]


def _decimals(line: str):
    try:
        return [Decimal(tok) for tok in line.split()]
    except (InvalidOperation, ValueError):
        return None


def compare_stdout(got: str, expected: str) -> tuple[bool, str]:
    """LiveCodeBench's stdin comparison: (equal, message)."""
    got_lines, exp_lines = _stripped_lines(got), _stripped_lines(expected)
    if len(got_lines) != len(exp_lines):
        return False, f"wrong answer: {len(got_lines)} output lines, expected {len(exp_lines)}"
    for k, (g, e) in enumerate(zip(got_lines, exp_lines)):
        if g == e:
            continue
        gd, ed = _decimals(g), _decimals(e)
        try:
            if gd is not None and ed is not None and gd == ed:
                continue
        except InvalidOperation:  # signalling NaN
            pass
        return False, f"wrong answer at line {k}: {_truncate(g, 120)!r} != {_truncate(e, 120)!r}"
    return True, ""


def _parse_int(text: str):
    # json.loads -> int(text) refuses more than 4300 digits (CVE-2020-10735 guard); Decimal does not.
    return int(text) if len(text) < 4000 else int(Decimal(text))


def _loads(text: str):
    return json.loads(text, parse_int=_parse_int)


def _normalize(value):
    if isinstance(value, (list, tuple)):
        return [_normalize(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalize(v) for k, v in value.items()}
    return value


def compare_functional(got_json: str, expected: str) -> tuple[bool, str]:
    """LiveCodeBench's functional comparison on JSON texts: `==` after tuple->list, no float tolerance."""
    try:
        got = _normalize(_loads(got_json))
    except ValueError:
        return False, "wrong answer: unparsable return value"
    try:
        exp = _normalize(_loads(expected))
    except ValueError:  # malformed ground truth: fall back to comparing the texts
        return got_json.strip() == expected.strip(), "wrong answer (expected output is not JSON)"
    if type(got) is float and type(exp) is float and got != got and exp != exp:
        return False, "wrong answer: NaN"
    if got == exp:
        return True, ""
    return False, f"wrong answer: {_truncate(got_json, 120)} != {_truncate(expected, 120)}"


# ---------------------------------------------------------------- grading

# Modules the supervisor may import once before forking the per-test children, when the program imports
# them: a child then finds them loaded instead of paying the import on every test (numpy: ~100 ms a test).
# Only stdlib modules and a few well-behaved packages, and never one with import-time output or effects.
_PREIMPORT_PACKAGES = {"numpy", "scipy", "sortedcontainers", "networkx"}
_NO_PREIMPORT = {"this", "antigravity", "__hello__", "__phello__", "tkinter", "turtle", "turtledemo",
                 "idlelib", "webbrowser", "__main__"}


def _preimports(tree: ast.AST) -> list:
    stdlib = getattr(sys, "stdlib_module_names", frozenset())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found = [node.module]
        else:
            continue
        for name in found:
            top = name.split(".")[0]
            if (top in stdlib or top in _PREIMPORT_PACKAGES) and top not in _NO_PREIMPORT and name not in names:
                names.append(name)
    return names


def _test_mode(tests: list, fn_name: str | None) -> str:
    kinds = {t.get("testtype") or ("functional" if fn_name else "stdin") for t in tests}
    if len(kinds) != 1 or not kinds <= {"stdin", "functional"}:
        raise ValueError(f"tests must all be 'stdin' or all 'functional', got {sorted(kinds)}")
    mode = kinds.pop()
    if mode == "functional" and not fn_name:
        raise ValueError("functional tests need fn_name")
    return mode


def grade_program(code: str, tests: list, fn_name: str | None = None, timeout_s: float = 6.0, *,
                  memory_mb: int | None = DEFAULT_MEMORY_MB, overall_timeout_s: float | None = None,
                  max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES, nproc: int = DEFAULT_NPROC,
                  sandbox: str | None = None, python: str | None = None, lcb_prelude: bool = True
                  ) -> CodeVerdict:
    """Grade program text (already extracted) against `tests`. See grade_code_verdict for the options."""
    if not tests:
        raise ValueError("no tests to grade against")
    mode = _test_mode(tests, fn_name)
    n = len(tests)
    if not code or not code.strip():
        return CodeVerdict(False, "no_code", n, reason="empty program")
    try:  # a syntax error needs no sandbox
        tree = compile(code, "<solution>", "exec", ast.PyCF_ONLY_AST)
        compile(tree, "<solution>", "exec")
    except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError) as exc:
        return CodeVerdict(False, "syntax_error", n, reason=f"{type(exc).__name__}: {exc}"[:500])

    job = {"mode": mode, "code": code, "fn_name": fn_name, "inputs": [str(t["input"]) for t in tests],
           "timeout_s": float(timeout_s), "memory_bytes": int(memory_mb) << 20 if memory_mb else 0,
           "max_output_bytes": int(max_output_bytes), "nproc": int(nproc), "nofile": DEFAULT_NOFILE,
           "prelude": bool(lcb_prelude), "preimport": _preimports(tree)}
    if overall_timeout_s is None:
        overall_timeout_s = (float(timeout_s) + 1.0) * n + 5.0  # LiveCodeBench's global join timeout
    failure: dict = {}

    def on_frame(frame: dict) -> bool:
        # Frames come from inside the sandbox: treat every field as untrusted data.
        i = frame.get("i")
        if not isinstance(i, int) or not 0 <= i < n:
            failure.update(test_index=n - 1, status="runtime_error",
                           message="protocol error: more frames than tests", input="", expected="", got="")
            return False
        test = tests[i]
        out = frame.get("out") if isinstance(frame.get("out"), str) else ""
        status, message = frame.get("status"), str(frame.get("detail", ""))
        if status == "ok":
            if mode == "stdin":
                ok, message = compare_stdout(out, str(test["output"]))
            else:
                ok, message = compare_functional(out, str(test["output"]))
            if ok:
                return True
            status = "wrong_answer"
        failure.update(test_index=i, status=_map_status(status), message=_truncate(message or str(status), 2000),
                       input=_truncate(str(test["input"])), expected=_truncate(str(test["output"])),
                       got=_truncate(out), stderr=_truncate(str(frame.get("err", "")), 1000))
        return False  # stop at the first failure, like LiveCodeBench

    res = _sandbox.run_job(job, sandbox=sandbox, python=python, on_frame=on_frame,
                           overall_timeout_s=overall_timeout_s)
    mode_name = "bwrap" if res.mode == "bwrap" else "fallback"
    passed_tests = len(res.frames) - (1 if failure else 0)
    common = dict(num_tests=n, num_passed=passed_tests, sandbox=mode_name, elapsed_s=round(res.elapsed_s, 4))
    if failure:
        status = failure.pop("status")
        return CodeVerdict(False, status, first_failure=failure, reason=failure["message"], **common)
    if res.fatal is not None:
        return CodeVerdict(False, _map_status(res.fatal.get("status")), reason=str(res.fatal.get("detail")),
                           **common)
    if len(res.frames) == n and res.done:
        return CodeVerdict(True, "passed", **common)
    # fewer frames than tests (or no end marker) and no failure seen: the sandbox was cut short
    index = min(len(res.frames), n - 1)
    ff = {"test_index": index, "input": _truncate(str(tests[index]["input"])),
          "expected": _truncate(str(tests[index]["output"])), "got": ""}
    if res.timed_out:
        ff["message"] = f"overall time limit {overall_timeout_s:.1f} s exceeded"
        return CodeVerdict(False, "timeout", first_failure=ff, reason=ff["message"], **common)
    why = res.error or f"sandbox exited early (rc={res.returncode}) {res.stderr.strip()[-500:]}".strip()
    ff["message"] = why
    return CodeVerdict(False, "runtime_error", first_failure=ff, reason=why, **common)


def _map_status(status) -> str:
    """A failure status from the sandbox -> one of STATUSES (never 'passed': only our comparison passes)."""
    if not isinstance(status, str):
        return "runtime_error"
    mapped = {"output_limit": "wrong_answer", "bad_return": "wrong_answer"}.get(status, status)
    return mapped if mapped in STATUSES and mapped != "passed" else "runtime_error"


def grade_code_verdict(response: str, tests: list, fn_name: str | None = None, timeout_s: float = 6.0,
                       **options) -> CodeVerdict:
    """Grade the last fenced Python block of `response` against LiveCodeBench-format `tests`.

    Options: memory_mb (address-space limit per process, default 2048; None for none), overall_timeout_s
    (default (timeout_s+1)*len(tests)+5), max_output_bytes (stdout cap, default 16 MiB; more is a wrong
    answer), nproc (processes+threads per sandbox, default 64), sandbox ('auto' | 'bwrap' | 'none', default
    $POSTTRAIN_SANDBOX or 'auto'), python (interpreter for the program, default this one), lcb_prelude
    (prepend LiveCodeBench's imports, default True).
    """
    code = extract_code(response)
    if code is None:
        return CodeVerdict(False, "no_code", len(tests), reason="no fenced code block in the response")
    return grade_program(code, tests, fn_name, timeout_s, **options)


def grade_code(response: str, tests: list, fn_name: str | None = None, timeout_s: float = 6.0,
               **options) -> bool:
    """True when the response's last Python block passes every test (see grade_code_verdict)."""
    return grade_code_verdict(response, tests, fn_name, timeout_s, **options).passed


def grade_code_batch(items: list, timeout_s: float = 6.0, num_workers: int | None = None,
                     progress: bool = False, **options) -> list:
    """Grade many {response, tests, fn_name} items in parallel; verdicts come back in input order.

    Threads suffice: each item's work happens in its own sandbox process. The default of one worker per
    core keeps per-test timings (and so timeouts) honest; more workers oversubscribe the CPU.
    """
    if not items:
        return []
    num_workers = max(1, num_workers or os.cpu_count() or 1)
    _sandbox.resolve_mode(options.get("sandbox"), options.get("python"))  # probe/warn once, up front

    def one(item: dict) -> CodeVerdict:
        return grade_code_verdict(item["response"], item["tests"], item.get("fn_name"), timeout_s, **options)

    with ThreadPoolExecutor(max_workers=num_workers) as pool:
        results = pool.map(one, items)
        if progress:
            try:
                from tqdm.auto import tqdm
                results = tqdm(results, total=len(items), desc="grading code")
            except ImportError:
                pass
        return list(results)
