"""Grade model-written Python programs against LiveCodeBench-style tests, inside a sandbox.

What: ``grade_code(response, tests, fn_name)`` takes the model's whole response, extracts the program,
grades it against tests ``{"input": str, "output": str, "testtype": "stdin" | "functional"}`` and returns
pass/fail; ``grade_code_verdict`` says why (a ``Verdict``); ``grade_code_batch`` grades many responses in
parallel, in order.

Two semantics (``semantics=``):

* ``"lcb"`` (default): the verdict LiveCodeBench's official runner (``lcb_runner/evaluation/testing_util.py``
  with ``compute_code_generation_metrics.py``, as of commit 28fef95, 2025-07: last-two-fence extraction and a
  fake stdin with ``.buffer``; older commits took the first two fences) gives, quirks included, so pass@1 is comparable with every
  published LiveCodeBench number. The code is the text between the last two lines that contain three
  backticks. A stdin program is wrapped as the runner wraps it: a final ``if __name__ == '__main__':`` block
  unwrapped, its imports hoisted after the stdlib prelude, every other statement moved into
  ``wrapped_function`` of a module named ``tmp_sol``; all tests then run in order in that one module, with
  the runner's fake stdin and captured stdout, its reliability guard (``os.fork``, ``os.kill``, ``quit``,
  ``resource``... disabled), ``SystemExit`` ignored, and 50,000 digits allowed in int<->str conversions.
  Functional tests share one ``Solution()``; only a top-level tuple becomes a list; values compare with
  ``==`` (numpy scalars as Python numbers). What the sandbox adds: wall-clock limits enforced from outside,
  memory/CPU/output/process limits, and a program that never sees the expected outputs.
* ``"strict"``: a real interpreter. The last closed ```python block (a cut-off block is no program);
  every test in a fresh ``__main__`` process with real stdin/stdout files, so ``sys.stdin.buffer``,
  ``open(0)``, iteration over ``sys.stdin`` and ``os.write(1, ...)`` work; functional return values compared
  as JSON after tuple->list at every depth.

Both: stdin outputs compared after stripping the whole output and each line, line counts equal, each line
equal or all its tokens equal as ``Decimal`` (so ``1.0 == 1`` but ``0.333333 != 0.3333333``); stop at the
first failing test; a per-test time limit (6 s by default) and an overall one of ``(timeout+1)*n + 5`` s.

**The program never decides its own verdict.** Expected outputs never enter the sandbox; the sandbox
returns raw stdout (stdin tests) or a JSON encoding of the return value (functional tests), and this process
parses and compares. A return value that is not a plain value (an object with a rigged ``__eq__``) cannot be
encoded, so it fails; printed "PASSED" markers are just output; forged frames could only claim an output,
which still has to match data the program never saw.
"""
from __future__ import annotations

import ast
import json
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal, InvalidOperation
from typing import Literal

from . import sandbox as _sandbox
from .sandbox_supervisor import LCB_PRELUDE
from .verdict import Verdict

__all__ = ["extract_code", "grade_code", "grade_code_verdict", "grade_code_batch", "grade_program",
           "lcb_module_text", "compare_stdout", "compare_functional", "compare_lcb_functional", "STATUSES",
           "SEMANTICS"]

Semantics = Literal["lcb", "strict"]
SEMANTICS = ("lcb", "strict")
STATUSES = ("passed", "wrong_answer", "runtime_error", "timeout", "memory_limit", "no_code", "syntax_error")
# The runner sets no memory limit; ours only protects the machine, so it is far above what a solution that
# passes there needs (RLIMIT_AS counts address space, which numpy and threads reserve generously).
DEFAULT_MEMORY_MB = 8192
DEFAULT_MAX_OUTPUT_BYTES = 16 << 20  # also the size cap of any file the program writes (RLIMIT_FSIZE)
DEFAULT_NPROC = 64  # threads count too; programs rarely need more than a handful
DEFAULT_NOFILE = 128  # open files; with the size cap this bounds in-memory files (memfd) to ~2 GiB
_TRUNC = 300


def _check_semantics(semantics: str) -> str:
    if semantics not in SEMANTICS:
        raise ValueError(f"semantics must be one of {SEMANTICS}, not {semantics!r}")
    return semantics


# ---------------------------------------------------------------- extraction

_PY_TAGS = {"python", "py", "python3", "py3"}


_FENCE = re.compile(r"^[ \t]*```[ \t]*([A-Za-z0-9_+.#-]*)[^\n`]*$")


def _extract_strict(response: str) -> str | None:
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
    return python[-1] if python else blocks[-1][1]


def _extract_lcb(response: str) -> str:
    """LiveCodeBench's chat-model extraction: the lines between the last two lines containing ```."""
    lines = response.split("\n")
    fences = [i for i, line in enumerate(lines) if "```" in line]
    if len(fences) < 2:
        return ""
    return "\n".join(lines[fences[-2] + 1:fences[-1]])


def extract_code(response: str, semantics: Semantics = "lcb") -> str | None:
    """The program `response` is graded as, or None.

    lcb: the text between the last two lines that contain ``` (whatever those lines are: a ```bash block,
    a sample-output block, prose mentioning backticks). strict: the last closed ```python block, else the
    last closed block of any language; a block cut off by the token limit is no program.
    """
    _check_semantics(semantics)
    if not response:
        return None
    code = _extract_lcb(response) if semantics == "lcb" else _extract_strict(response)
    return code if code and code.strip() else None


# ---------------------------------------------------------------- the runner's program transformations

def _unwrap_main_guard(code: str) -> str:
    """The runner's clean-up: a *last* top-level `if __name__ == '__main__':` becomes its body (else dropped)."""
    try:
        tree = ast.parse(code)
        last = tree.body[-1]
        if isinstance(last, ast.If) and ast.unparse(last.test).strip() == "__name__ == '__main__'":
            return ast.unparse(tree.body[:-1]) + "\n" + ast.unparse(last.body)
    except Exception:  # unparsable or empty: the runner leaves the code as it is
        pass
    return code


def _wrap_in_function(code: str) -> str:
    """The runner's wrapping: prelude, the program's top-level imports, then every other top-level statement
    as the body of `wrapped_function()`. Code that does not parse is left as it is (and fails to compile)."""
    try:
        tree = ast.parse(code)
        imports = [s for s in tree.body if isinstance(s, (ast.Import, ast.ImportFrom))]
        body = [s for s in tree.body if not isinstance(s, (ast.Import, ast.ImportFrom))]
        fn = ast.FunctionDef(name="wrapped_function",
                             args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[],
                                                defaults=[]),
                             body=body, decorator_list=[], lineno=-1)
        return LCB_PRELUDE + "\n" + ast.unparse(imports) + "\n" + ast.unparse(fn)
    except Exception:
        return code


def lcb_module_text(code: str, mode: str) -> tuple[str, bool]:
    """(the module text the runner executes for `code`, whether the runner instantiates `Solution()`).

    The runner calls `Solution()` whenever the text contains "class Solution" -- also for a stdin program,
    where the class sits inside wrapped_function, so that call fails and so does the program."""
    if mode == "functional":
        text = LCB_PRELUDE + "\n\n" + code
    else:
        text = _wrap_in_function(_unwrap_main_guard(code))
    return text, "class Solution" in text


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
    """Strict functional comparison on JSON texts: `==` after tuple->list at every depth, no float tolerance."""
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


_TAGS = {"tuple": tuple, "set": set, "frozenset": frozenset}


def _decode(node, depth: int = 0):
    """The sandbox's tagged JSON (see sandbox_supervisor._encoder) back to plain Python values."""
    if depth > 2000:
        raise ValueError("nested too deeply")
    if isinstance(node, list):
        return [_decode(x, depth + 1) for x in node]
    if isinstance(node, dict):
        if len(node) != 1:
            raise ValueError("malformed value")
        (tag, items), = node.items()
        if tag == "dict":
            return {_decode(k, depth + 1): _decode(v, depth + 1) for k, v in items}
        if tag == "ndarray":
            return _NdArray(_decode(items, depth + 1))
        return _TAGS[tag](_decode(x, depth + 1) for x in items)
    return node


class _NdArray:
    """A returned numpy array: `array == expected` is elementwise there, and `not` of a result with more
    than one element raises, so only a one-element array can pass."""

    def __init__(self, values):
        self.values = values

    def single(self):
        v = self.values
        while isinstance(v, list) and len(v) == 1:
            v = v[0]
        return None if isinstance(v, list) else v


def compare_lcb_functional(got_json: str, expected: str) -> tuple[str, str]:
    """The runner's functional check: (status, message); status 'passed', 'wrong_answer' or 'runtime_error'.

    `prediction == json.loads(expected)` with the returned value's types kept (tuple, set, dict keys...) and
    a top-level tuple already made a list inside the sandbox."""
    try:
        got = _decode(_loads(got_json))
    except (ValueError, KeyError, TypeError, RecursionError):
        return "wrong_answer", "wrong answer: unreadable return value"
    try:
        exp = _loads(expected)
    except ValueError:
        return "runtime_error", "expected output is not JSON (the runner fails every response)"
    if isinstance(got, _NdArray):
        one = got.single()
        if one is None:
            return "runtime_error", "truth value of an array with more than one element is ambiguous"
        while isinstance(exp, list) and len(exp) == 1:
            exp = exp[0]
        got = one
    try:
        equal = got == exp
    except RecursionError:
        return "runtime_error", "comparison recursed too deeply"
    if equal:
        return "passed", ""
    return "wrong_answer", f"wrong answer: {_truncate(got_json, 120)} != {_truncate(expected, 120)}"


# ---------------------------------------------------------------- grading

# Modules the supervisor may import once before forking the per-test children, when the program imports
# them: a child then finds them loaded instead of paying the import on every test (numpy: ~100 ms a test).
# Only stdlib modules and a few well-behaved packages, and never one with import-time output or effects.
_PREIMPORT_PACKAGES = {"numpy", "scipy", "sortedcontainers", "networkx"}
_NO_PREIMPORT = {"this", "antigravity", "__hello__", "__phello__", "tkinter", "turtle", "turtledemo",
                 "idlelib", "webbrowser", "__main__", "resource"}


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


def _failure(test: dict, index: int, message: str, got: str = "", stderr: str = "") -> dict:
    return {"test_index": index, "input": _truncate(str(test["input"])), "expected": _truncate(str(test["output"])),
            "got": _truncate(got), "message": _truncate(message, 2000), "stderr": _truncate(stderr, 1000)}


def _compiled(text: str):
    """None when `text` compiles, else the error message (a syntax error needs no sandbox)."""
    try:
        compile(text, "<solution>", "exec")
    except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError) as exc:
        return f"{type(exc).__name__}: {exc}"[:500]
    return None


def grade_program(code: str, tests: list, fn_name: str | None = None, timeout_s: float = 6.0, *,
                  semantics: Semantics = "lcb", memory_mb: int | None = DEFAULT_MEMORY_MB,
                  overall_timeout_s: float | None = None, max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
                  nproc: int = DEFAULT_NPROC, sandbox: str | None = None, python: str | None = None,
                  lcb_prelude: bool = True) -> Verdict:
    """Grade program text (already extracted) against `tests`. See grade_code_verdict for the options."""
    _check_semantics(semantics)
    if not tests:
        raise ValueError("no tests to grade against")
    mode = _test_mode(tests, fn_name)
    n = len(tests)
    facts = {"num_tests": n, "num_passed": 0, "first_failure": None, "sandbox": "", "elapsed_s": 0.0,
             "semantics": semantics}
    if not code or not code.strip():
        return Verdict(False, "no_code", "empty program", code, facts)
    text, solution_class = lcb_module_text(code, mode) if semantics == "lcb" else (code, False)
    error = _compiled(text)
    if error is not None:
        return Verdict(False, "syntax_error", error, code, facts)
    job = {"semantics": semantics, "mode": mode, "code": text, "fn_name": fn_name,
           "inputs": [str(t["input"]) for t in tests], "timeout_s": float(timeout_s),
           "memory_bytes": int(memory_mb) << 20 if memory_mb else 0, "max_output_bytes": int(max_output_bytes),
           "nproc": int(nproc), "nofile": DEFAULT_NOFILE, "prelude": bool(lcb_prelude),
           "preimport": _preimports(ast.parse(text)), "solution_class": solution_class}
    if overall_timeout_s is None:
        overall_timeout_s = (float(timeout_s) + 1.0) * n + 5.0  # LiveCodeBench's global join timeout
    failure: dict = {}
    compare = _comparer(semantics, mode)

    def on_frame(frame: dict) -> bool:
        # Frames come from inside the sandbox: treat every field as untrusted data.
        i = frame.get("i")
        if not isinstance(i, int) or not 0 <= i < n:
            failure.update(_failure(tests[n - 1], n - 1, "protocol error: more frames than tests"),
                           status="runtime_error")
            return False
        out = frame.get("out") if isinstance(frame.get("out"), str) else ""
        status, message = frame.get("status"), str(frame.get("detail", ""))
        if status == "ok":
            status, message = compare(out, str(tests[i]["output"]))
            if status == "passed":
                return True
        failure.update(_failure(tests[i], i, message or str(status), out, str(frame.get("err", ""))),
                       status=_map_status(status))
        return False  # stop at the first failure, like LiveCodeBench

    res = _sandbox.run_job(job, sandbox=sandbox, python=python, on_frame=on_frame,
                           overall_timeout_s=overall_timeout_s)
    facts.update(num_passed=len(res.frames) - (1 if failure else 0),
                 sandbox="bwrap" if res.mode == "bwrap" else "fallback", elapsed_s=round(res.elapsed_s, 4))
    return _verdict_from_run(res, failure, facts, tests, code, overall_timeout_s)


def _comparer(semantics: str, mode: str):
    """compare(out, expected) -> (status, message) for this kind of test."""
    if mode == "stdin":
        def compare(out, expected):
            ok, message = compare_stdout(out, expected)
            return ("passed" if ok else "wrong_answer"), message
    elif semantics == "lcb":
        compare = compare_lcb_functional
    else:
        def compare(out, expected):
            ok, message = compare_functional(out, expected)
            return ("passed" if ok else "wrong_answer"), message
    return compare


def _verdict_from_run(res, failure: dict, facts: dict, tests: list, code: str, overall_timeout_s: float):
    n = len(tests)
    if failure:
        status = failure.pop("status")
        facts["first_failure"] = failure
        return Verdict(False, status, failure["message"], code, facts)
    if res.fatal is not None:
        return Verdict(False, _map_status(res.fatal.get("status")), str(res.fatal.get("detail")), code, facts)
    if len(res.frames) == n and res.done:
        return Verdict(True, "passed", "", code, facts)
    # fewer frames than tests (or no end marker) and no failure seen: the sandbox was cut short
    index = min(len(res.frames), n - 1)
    if res.timed_out:
        facts["first_failure"] = _failure(tests[index], index, f"overall time limit {overall_timeout_s:.1f} s exceeded")
        return Verdict(False, "timeout", facts["first_failure"]["message"], code, facts)
    why = res.error or f"sandbox exited early (rc={res.returncode}) {res.stderr.strip()[-500:]}".strip()
    facts["first_failure"] = _failure(tests[index], index, why)
    return Verdict(False, "runtime_error", facts["first_failure"]["message"], code, facts)


def _map_status(status) -> str:
    """A failure status from the sandbox -> one of STATUSES (never 'passed': only our comparison passes)."""
    if not isinstance(status, str):
        return "runtime_error"
    mapped = {"output_limit": "wrong_answer", "bad_return": "wrong_answer"}.get(status, status)
    return mapped if mapped in STATUSES and mapped != "passed" else "runtime_error"


def grade_code_verdict(response: str, tests: list, fn_name: str | None = None, timeout_s: float = 6.0,
                       semantics: Semantics = "lcb", test_program: str | None = None, **options) -> Verdict:
    """Grade the program in the model's raw `response` against LiveCodeBench-format `tests`.

    semantics: 'lcb' (LiveCodeBench's runner, the default) or 'strict' (a real interpreter); see the module
    docstring. Options: memory_mb (address-space limit per program, default 8192; None for none),
    overall_timeout_s (default (timeout_s+1)*len(tests)+5), max_output_bytes (stdout cap, default 16 MiB;
    more is a wrong answer), nproc (processes+threads per sandbox, default 64), sandbox ('auto' | 'bwrap' |
    'none', default $POSTTRAIN_SANDBOX or 'auto'), python (interpreter for the program, default this one),
    lcb_prelude (strict only: prepend LiveCodeBench's imports, default True). test_program: code appended to the
    extracted program before it runs (HumanEval/MBPP asserts; posttrain.eval_sets.grading_item).

    The Verdict's details hold num_tests, num_passed, first_failure (test_index, input, expected, got,
    message, stderr; each truncated), sandbox ('bwrap' | 'fallback' | ''), elapsed_s and semantics.
    """
    code = extract_code(response, semantics)
    if code is None:
        facts = {"num_tests": len(tests), "num_passed": 0, "first_failure": None, "sandbox": "",
                 "elapsed_s": 0.0, "semantics": semantics}
        return Verdict(False, "no_code", "no code block in the response", None, facts)
    if not test_program:
        return grade_program(code, tests, fn_name, timeout_s, semantics=semantics, **options)
    verdict = grade_program(f"{code}\n\n{test_program}", tests, fn_name, timeout_s, semantics=semantics, **options)
    return Verdict(verdict.correct, verdict.status, verdict.reason, code, verdict.details)  # `extracted`: the model's


def grade_code(response: str, tests: list, fn_name: str | None = None, timeout_s: float = 6.0,
               semantics: Semantics = "lcb", **options) -> bool:
    """True when the response's program passes every test (see grade_code_verdict)."""
    return grade_code_verdict(response, tests, fn_name, timeout_s, semantics, **options).correct


def grade_code_batch(items: list, timeout_s: float = 6.0, num_workers: int | None = None,
                     progress: bool = False, semantics: Semantics = "lcb", **options) -> list:
    """Grade many {response, tests, fn_name[, test_program]} items in parallel; Verdicts come back in input order.

    Threads suffice: each item's work happens in its own sandboxed process. The default of one worker per
    core keeps per-test timings (and so timeouts) honest; more workers oversubscribe the CPU.
    """
    _check_semantics(semantics)
    if not items:
        return []
    num_workers = max(1, num_workers or os.cpu_count() or 1)
    _sandbox.resolve_mode(options.get("sandbox"), options.get("python"))  # probe/warn once, up front

    def one(item: dict) -> Verdict:
        return grade_code_verdict(item["response"], item["tests"], item.get("fn_name"), timeout_s, semantics,
                                  item.get("test_program"), **options)

    with ThreadPoolExecutor(max_workers=num_workers) as pool:
        from posttrain.progress import bar
        return list(bar(progress, iterable=pool.map(one, items), total=len(items), desc="grading code"))
