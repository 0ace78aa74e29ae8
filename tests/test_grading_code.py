"""Tests for posttrain.grading.code: extraction, LiveCodeBench comparison rules, and hostile programs.

The hostile-program tests check the sandbox from the outside: the host file, the host process table, a
host socket, the grader's own survival. Tests that need bubblewrap skip where it does not work, and pass
sandbox="bwrap" explicitly: a fork bomb or kill(-1) must never run in the unsandboxed fallback by accident
(e.g. with POSTTRAIN_SANDBOX=none in the environment).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from posttrain.grading import sandbox as sb
from posttrain.grading.code import (compare_functional, compare_lcb_functional, compare_stdout, extract_code,
                                    grade_code, grade_code_batch, grade_code_verdict, lcb_module_text)
from posttrain.grading.verdict import Verdict

REPO = Path(__file__).resolve().parents[1]


def _bwrap_works() -> bool:
    try:
        return sb.resolve_mode("bwrap") == "bwrap"
    except sb.SandboxUnavailable:
        return False


HAVE_BWRAP = _bwrap_works()
needs_bwrap = pytest.mark.skipif(not HAVE_BWRAP, reason="bubblewrap is not installed or does not work here")
MODES = [pytest.param("bwrap", marks=needs_bwrap), "none"]


def py(src: str) -> str:
    """A model-like response whose last fenced block is `src`."""
    return f"Here is my solution.\n\n```python\n{textwrap.dedent(src).strip()}\n```\n"


def stdin_tests(*pairs):
    return [{"input": i, "output": o, "testtype": "stdin"} for i, o in pairs]


def fn_tests(*pairs):
    return [{"input": i, "output": o, "testtype": "functional"} for i, o in pairs]


def procs_with(marker: str) -> list:
    """Host pids whose command line contains `marker`."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if marker in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(int(pid))
            except OSError:
                pass
    return found


def pool_uid_procs() -> list:
    """Host processes running as one of this grader's sandbox pool uids (root launcher only)."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            uid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:")))
            if sb._uid_pool.base <= uid < sb._uid_pool.base + sb._uid_pool.size:  # this grader's pool only
                found.append(f"{pid} {status.splitlines()[:3]} {Path(f'/proc/{pid}/cmdline').read_bytes()[:80]}")
    return found


# ---------------------------------------------------------------- extraction and comparison (no sandbox)

def test_strict_extraction_prefers_last_python_block():
    resp = "```python\na = 1\n```\ntext\n```\nplain = 2\n```\n```py\nlast = 3\n```\nbye"
    assert extract_code(resp, "strict") == "last = 3"
    assert extract_code("```\nx = 1\n```\n```bash\nls\n```", "strict") == "ls"  # no python block: any kind
    assert extract_code("```python\nfirst\n```\n```\nplain\n```", "strict") == "first"
    assert extract_code("no code here", "strict") is None
    assert extract_code("```python\nprint(1)\n", "strict") is None  # cut off by the token limit
    assert extract_code("```python\n\n```", "strict") is None
    with pytest.raises(ValueError, match="semantics"):
        extract_code("```python\nx\n```", "exact")


# (response, what LiveCodeBench's runner grades, what strict grades): the runner takes the lines between
# the last two lines that contain ``` (lcb_runner/utils/extraction_utils.py), whatever those lines are.
EXTRACTION_CASES = [
    ("```python\nprint(1)\n```\nSample output:\n```\n1\n```", "1", "print(1)"),
    ("```python\nprint(1)\n```\nRun it with:\n```bash\npython sol.py\n```", "python sol.py", "print(1)"),
    ("```python\nprint(1)\n```\nIn C++:\n```cpp\nint main() {}\n```", "int main() {}", "print(1)"),
    ("```python\nprint(1)\n```\nNow in C++:\n```cpp\nint main() {", "Now in C++:", "print(1)"),  # cut off
    ("```python\nprint(1)\n```\nWrap code in ``` fences.", None, "print(1)"),  # prose with backticks
    ("Here it is: ```python\nprint(1)\n```", "print(1)", None),  # fence after text on the line
    ("````python\nprint(1)\n````", "print(1)", None),  # four backticks
    ("```python\nprint(1)\n", None, None),  # one fence line
    ("no code", None, None),
]


@pytest.mark.parametrize("response,lcb,strict", EXTRACTION_CASES)
def test_extraction_in_both_semantics(response, lcb, strict):
    assert extract_code(response, "lcb") == lcb
    assert extract_code(response, "strict") == strict
    assert extract_code(response) == lcb  # lcb is the default


def test_lcb_module_text_wraps_stdin_programs_like_the_runner():
    text, solution = lcb_module_text("import sys\nx = 1\nif __name__ == '__main__':\n    print(x)", "stdin")
    body = text.split("def wrapped_function():\n", 1)[1]
    assert text.startswith("from string import *\n") and "\nimport sys\n" in text  # prelude, then imports
    assert "x = 1" in body and "print(x)" in body and "__main__" not in text  # guard unwrapped when last
    assert not solution
    text, _ = lcb_module_text("if __name__ == '__main__':\n    print(1)\nprint(2)", "stdin")
    assert "__name__ == '__main__'" in text  # only a *last* guard is unwrapped
    text, _ = lcb_module_text('if __name__ == "__main__" and True:\n    print(1)', "stdin")
    assert "__main__" in text  # only that exact condition
    assert lcb_module_text("def f(:", "stdin")[0] == "def f(:"  # unparsable code is left alone
    text, solution = lcb_module_text("class Solution:\n    pass", "functional")
    assert text.endswith("\n\nclass Solution:\n    pass") and solution
    assert lcb_module_text("class Solution:\n    pass\nSolution()", "stdin")[1]  # fails there: see below


def test_compare_lcb_functional_keeps_types():
    assert compare_lcb_functional(json.dumps([0, 1]), "[0, 1]")[0] == "passed"
    assert compare_lcb_functional(json.dumps([{"tuple": [0, 1]}]), "[[0, 1]]")[0] == "wrong_answer"
    assert compare_lcb_functional(json.dumps({"dict": [[1, 2]]}), '{"1": 2}')[0] == "wrong_answer"
    assert compare_lcb_functional(json.dumps({"dict": [["1", 2]]}), '{"1": 2}')[0] == "passed"
    assert compare_lcb_functional(json.dumps({"set": [1, 2]}), "[1, 2]")[0] == "wrong_answer"
    assert compare_lcb_functional("3.0", "3")[0] == "passed"
    assert compare_lcb_functional("true", "1")[0] == "passed"  # True == 1 in Python, so in the runner
    assert compare_lcb_functional("NaN", "NaN")[0] == "wrong_answer"
    assert compare_lcb_functional(json.dumps({"ndarray": [1, 2]}), "[1, 2]")[0] == "runtime_error"
    assert compare_lcb_functional(json.dumps({"ndarray": [7]}), "7")[0] == "passed"
    assert compare_lcb_functional(json.dumps({"bogus": 1}), "1")[0] == "wrong_answer"
    big = "9" * 5000
    assert compare_lcb_functional(big, big)[0] == "passed"


def test_compare_stdout_follows_livecodebench():
    assert compare_stdout("1.0", "1")[0]
    assert compare_stdout("1e2 3", "100 3.000")[0]
    assert not compare_stdout("0.333333", "0.3333333")[0]  # Decimal equality, no tolerance
    assert compare_stdout("  a b  \n c \n\n\n", "a b\nc")[0]  # whole output and each line stripped
    ok, msg = compare_stdout("1\n2", "1")
    assert not ok and "lines" in msg
    assert not compare_stdout("a  b", "a b")[0]  # inner whitespace matters for non-numeric lines
    assert compare_stdout("1  2", "1 2")[0]  # ...but numeric tokens compare token by token
    assert not compare_stdout("YES", "yes")[0]
    assert not compare_stdout("nan", "nan ")[0] is False  # identical text is equal before any Decimal step
    assert not compare_stdout("sNaN 1", "sNaN 2")[0]


def test_compare_functional_json():
    assert compare_functional("[1, 2]", "[1,2]")[0]
    assert compare_functional("3.0", "3")[0]
    assert compare_functional('{"a": [1]}', '{"a":[1]}')[0]
    assert not compare_functional("[2, 1]", "[1,2]")[0]
    assert not compare_functional("0.30000000000000004", "0.3")[0]
    assert not compare_functional("NaN", "NaN")[0]
    big = "9" * 5000  # beyond int(str)'s default 4300-digit guard
    assert compare_functional(big, big)[0]


def test_no_code_and_syntax_error_never_start_a_sandbox():
    t = stdin_tests(("1", "1"))
    v = grade_code_verdict("I think the answer is 42.", t)
    assert (v.correct, v.status, v.details["num_tests"]) == (False, "no_code", 1)
    v = grade_code_verdict(py("def f(:\n    pass"), t)
    assert v.status == "syntax_error" and v.details["sandbox"] == "" and "SyntaxError" in v.reason
    with pytest.raises(ValueError):
        grade_code_verdict(py("print(1)"), [])
    with pytest.raises(ValueError):
        grade_code_verdict(py("print(1)"), fn_tests(("1", "1")))  # functional needs fn_name


# ---------------------------------------------------------------- ordinary programs, both modes

@pytest.mark.parametrize("semantics", ["lcb", "strict"])
@pytest.mark.parametrize("mode", MODES)
def test_stdin_programs(mode, semantics):
    tests = stdin_tests(("1 2\n", "3\n"), ("10 20", "30"), ("-5 5", "0"))
    good = py("""
        a, b = map(int, input().split())
        print(a + b)
    """)
    v = grade_code_verdict(good, tests, sandbox=mode, semantics=semantics)
    assert v.correct and v.status == "passed" and v.details["num_passed"] == 3, v
    assert v.details["semantics"] == semantics and v.extracted.startswith("a, b = map")
    assert v.details["sandbox"] == ("bwrap" if mode == "bwrap" else "fallback")

    wrong = py("""
        a, b = map(int, input().split())
        print(a + b if a > 0 else 1)
    """)
    v = grade_code_verdict(wrong, tests, sandbox=mode, semantics=semantics)
    assert (v.correct, v.status, v.details["num_passed"]) == (False, "wrong_answer", 2)
    assert v.details["first_failure"]["test_index"] == 2 and v.details["first_failure"]["got"].strip() == "1"

    crash = py("print(1 // 0)")
    v = grade_code_verdict(crash, tests, sandbox=mode, semantics=semantics)
    assert v.status == "runtime_error" and "ZeroDivisionError" in v.reason and v.details["num_passed"] == 0


@pytest.mark.parametrize("mode", MODES)
def test_strict_stdin_buffer_and_exit_idioms(mode):
    """Under strict semantics the program has a real interpreter: every stdin/stdout idiom works."""
    tests = stdin_tests(("3\n1 2 3\n", "6"), ("2\n10 -1\n", "9"))
    buffered = py("""
        import sys
        data = sys.stdin.buffer.read().split()
        n = int(data[0])
        sys.stdout.buffer.write(str(sum(map(int, data[1:1 + n]))).encode() + b"\\n")
    """)
    assert grade_code(buffered, tests, sandbox=mode, semantics="strict")
    readline = py("""
        import sys
        input = sys.stdin.readline
        n = int(input())
        print(sum(map(int, input().split())))
        sys.stdout.flush()
        exit()
    """)
    assert grade_code(readline, tests, sandbox=mode, semantics="strict")
    fast_exit = py("""
        import os, sys
        lines = open(0).read().split("\\n")
        sys.stdout.write(str(sum(map(int, lines[1].split()))) + "\\n")
        sys.stdout.flush()
        os._exit(0)
    """)
    assert grade_code(fast_exit, tests, sandbox=mode, semantics="strict")
    nonzero_exit = py("""
        import sys
        input()
        print(sum(map(int, input().split())))
        sys.exit(1)  # LiveCodeBench ignores SystemExit in stdin programs: the output is what counts
    """)
    assert grade_code(nonzero_exit, tests, sandbox=mode, semantics="strict")
    unicode_io = py("""
        name = input()
        print(f"héllo {name} ✓")
    """)
    assert grade_code(unicode_io, stdin_tests(("wörld", "héllo wörld ✓")), sandbox=mode, semantics="strict")
    main_guard = py("""
        def main():
            input()
            print(sum(map(int, input().split())))
        if __name__ == "__main__":
            main()
    """)
    assert grade_code(main_guard, tests, sandbox=mode, semantics="strict")


def test_decimal_line_count_and_whitespace_end_to_end():
    assert grade_code(py('print("1.0")'), stdin_tests(("", "1")))
    v = grade_code_verdict(py('print("0.333333")'), stdin_tests(("", "0.3333333")))
    assert v.status == "wrong_answer"
    v = grade_code_verdict(py('print(1)\nprint(2)'), stdin_tests(("", "1")))
    assert v.status == "wrong_answer" and "lines" in v.reason
    assert grade_code(py('print("1 2   ")\nprint()\nprint("  ")'), stdin_tests(("", "1 2\n")))


def test_strict_state_does_not_leak_between_tests():
    prog = py("""
        import builtins, os, sys
        stale = os.path.exists("state.txt") or hasattr(builtins, "_leak") or "leakmod" in sys.modules
        open("state.txt", "w").write("x")
        builtins._leak = 1
        sys.modules["leakmod"] = sys
        print("stale" if stale else "fresh")
    """)
    for mode in (["bwrap"] if HAVE_BWRAP else []) + ["none"]:
        v = grade_code_verdict(prog, stdin_tests(("", "fresh"), ("", "fresh"), ("", "fresh")), sandbox=mode,
                               semantics="strict")
        assert v.correct, v


@pytest.mark.parametrize("semantics", ["lcb", "strict"])
@pytest.mark.parametrize("mode", MODES)
def test_functional_programs(mode, semantics):
    tests = fn_tests(("[2,7,11,15]\n9", "[0,1]"), ("[3,2,4]\n6", "[1,2]"), ("[3,3]\n6", "[0, 1]"))
    good = py("""
        class Solution:
            def twoSum(self, nums: List[int], target: int) -> List[int]:
                seen = {}
                for i, x in enumerate(nums):
                    if target - x in seen:
                        return (seen[target - x], i)  # a tuple: compared as a list
                    seen[x] = i
    """)
    v = grade_code_verdict(good, tests, "twoSum", sandbox=mode, semantics=semantics)
    assert v.correct and v.details["num_passed"] == 3, v
    wrong = py("""
        class Solution:
            def twoSum(self, nums, target):
                return [0, 1]
    """)
    v = grade_code_verdict(wrong, tests, "twoSum", sandbox=mode, semantics=semantics)
    assert v.status == "wrong_answer" and v.details["first_failure"]["test_index"] == 1
    missing = py("class Solution:\n    def other(self):\n        return 1")
    assert grade_code_verdict(missing, tests, "twoSum", sandbox=mode, semantics=semantics).status == "runtime_error"
    top_level = py("def add(a, b):\n    return a + b")
    assert grade_code(top_level, fn_tests(('1\n2', '3'), ('"a"\n"b"', '"ab"')), "add", sandbox=mode, semantics=semantics)


# ---------------------------------------------------------------- LiveCodeBench's rules, both semantics

# (rule, program, tests, fn_name, lcb status, strict status). The lcb column is what LiveCodeBench's runner
# (lcb_runner/evaluation/testing_util.py) does with the program, read from its code: stdin programs are
# wrapped in `wrapped_function` in a module named tmp_sol, imports hoisted after the prelude; sys.stdin is a
# fake whose read() is always the whole input, whose readlines() drops the newlines and whose buffer.readline()
# is always line one; `readline`/`read`/`readlines` are patched on the *previous* sys.stdin, which the
# prelude's `from sys import *` bound as `stdin`; builtins.open is mocked but the prelude's
# `from builtins import *` bound the real `open`, so open(0) reads the runner's own (empty) stdin; stdout is a
# StringIO; the reliability guard sets quit, os.fork... to None and blocks `import resource`; functional
# problems share one Solution(); int<->str conversions allow 50,000 digits.
S, F = "stdin", "functional"
LCB_RULES = [
    ("not __main__", "print(__name__ == '__main__')", [("", "True")], None, "wrong_answer", "passed"),
    ("top-level return", "n = int(input())\nif n > 0:\n    print('pos')\n    return\nprint('neg')",
     [("5", "pos")], None, "passed", "syntax_error"),
    ("nonlocal to a top-level name", "x = 0\ndef inc():\n    nonlocal x\n    x += 1\ninc()\nprint(x)",
     [("", "1")], None, "passed", "syntax_error"),
    ("global in a helper", "x = 5\ndef show():\n    global x\n    print(x)\nshow()", [("", "5")], None,
     "runtime_error", "passed"),
    ("__future__ import after the prelude", "from __future__ import annotations\nprint(1)", [("", "1")], None,
     "syntax_error", "passed"),
    ("main guard unwrapped", "def main():\n    print(input())\nif __name__ == '__main__':\n    main()",
     [("7", "7")], None, "passed", "passed"),
    ("iterating sys.stdin", "import sys\nfor line in sys.stdin:\n    print(line.strip())", [("4", "4")], None,
     "runtime_error", "passed"),
    ("sys.stdin.buffer.readline twice", "import sys\na = int(sys.stdin.buffer.readline())\n"
     "b = int(sys.stdin.buffer.readline())\nprint(a + b)", [("1\n2", "3")], None, "wrong_answer", "passed"),
    ("sys.stdin.buffer.read", "import sys\nprint(sum(map(int, sys.stdin.buffer.read().split())))",
     [("1\n2", "3")], None, "passed", "passed"),
    ("open(0)", "print(sum(map(int, open(0).read().split())))", [("1 2", "3")], None, "wrong_answer", "passed"),
    ("os.read(0)", "import os\nprint(sum(map(int, os.read(0, 99).split())))", [("1 2", "3")], None,
     "wrong_answer", "passed"),
    ("read() after readline()", "import sys\nsys.stdin.readline()\nprint(sys.stdin.read().strip())",
     [("a\nb", "b")], None, "wrong_answer", "passed"),
    ("readlines() keeps no newlines", "import sys\nprint(len(sys.stdin.readlines()))", [("1\n2\n", "2")], None,
     "wrong_answer", "passed"),
    ("prelude's stdin.readline", "print(repr(stdin.readline()))", [("a\nb", "'a\\n'")], None,
     "wrong_answer", "passed"),
    ("input() and sys.stdin.readline share a cursor",
     "import sys\na = sys.stdin.readline()\nprint(int(a) + int(input()))", [("1\n2", "3")], None,
     "passed", "passed"),
    ("builtins.open is the runner's mock", "import builtins\nprint(builtins.open('/no/such/file').read())",
     [("hi", "hi")], None, "passed", "runtime_error"),
    ("sys.stdout.buffer", "import sys\nsys.stdout.buffer.write(b'1\\n')", [("", "1")], None,
     "runtime_error", "passed"),
    ("os.write(1)", "import os\nos.write(1, b'1\\n')", [("", "1")], None, "wrong_answer", "passed"),
    ("stdout taken at import", "from sys import stdout\nstdout.write('1\\n')", [("", "1")], None,
     "wrong_answer", "passed"),
    ("quit()", "print(1)\nquit()", [("", "1")], None, "runtime_error", "passed"),
    ("exit()", "print(1)\nexit()\nprint(2)", [("", "1")], None, "passed", "passed"),
    ("os._exit", "print(1, flush=True)\nimport os\nos._exit(0)", [("", "1")], None, "runtime_error", "passed"),
    ("import resource", "import resource\nprint(1)", [("", "1")], None, "runtime_error", "passed"),
    ("os.fork", "import os\npid = os.fork()\nif pid == 0:\n    os._exit(0)\nos.waitpid(pid, 0)\nprint(1)",
     [("", "1")], None, "runtime_error", "passed"),
    ("5,000-digit int to str", "print(len(str(10 ** 5000)))", [("", "5001")], None, "passed", "runtime_error"),
    ("60,000-digit int to str", "print(len(str(10 ** 60000)))", [("", "60001")], None,
     "runtime_error", "runtime_error"),
    ("state persists across tests", "import builtins\nbuiltins.seen = getattr(builtins, 'seen', 0) + 1\n"
     "print(builtins.seen)", [("", "1"), ("", "1")], None, "wrong_answer", "passed"),
    ("class Solution in a stdin program", "class Solution:\n    def go(self):\n        print(1)\nSolution().go()",
     [("", "1")], None, "runtime_error", "passed"),
    ("one Solution() for all tests", "class Solution:\n    def __init__(self):\n        self.calls = 0\n"
     "    def f(self, x):\n        self.calls += 1\n        return self.calls", [("5", "1"), ("5", "1")], "f",
     "wrong_answer", "passed"),
    ("top-level tuple", "class Solution:\n    def f(self, x):\n        return (x, x)", [("5", "[5, 5]")], "f",
     "passed", "passed"),
    ("nested tuple", "class Solution:\n    def f(self, x):\n        return [(x, x)]", [("5", "[[5, 5]]")], "f",
     "wrong_answer", "passed"),
    ("dict with int keys", "class Solution:\n    def f(self, x):\n        return {x: 1}", [("5", '{"5": 1}')],
     "f", "wrong_answer", "passed"),
    ("numpy scalar", "import numpy as np\nclass Solution:\n    def f(self, x):\n        return np.int64(x) * 2",
     [("5", "10")], "f", "passed", "wrong_answer"),
    ("functional main guard never runs", "class Solution:\n    def f(self, x):\n        return K\n"
     "if __name__ == '__main__':\n    K = 1", [("5", "1")], "f", "runtime_error", "passed"),
    ("functional SystemExit", "class Solution:\n    def f(self, x):\n        raise SystemExit(0)",
     [("5", "1")], "f", "runtime_error", "runtime_error"),
    ("functional input with a trailing newline", "class Solution:\n    def f(self, x):\n        return x",
     [("5\n", "5")], "f", "runtime_error", "passed"),
    ("'class Solution' in a string", "S = 'class Solution'\ndef f(x):\n    return x", [("5", "5")], "f",
     "runtime_error", "passed"),
]


def _rule_tests(pairs, fn_name):
    return (fn_tests if fn_name else stdin_tests)(*pairs)


@pytest.mark.parametrize("rule,program,pairs,fn_name,lcb,strict", LCB_RULES, ids=[r[0] for r in LCB_RULES])
def test_livecodebench_rules_in_both_semantics(rule, program, pairs, fn_name, lcb, strict):
    tests = _rule_tests(pairs, fn_name)
    for semantics, expected in (("lcb", lcb), ("strict", strict)):
        v = grade_code_verdict(py(program), tests, fn_name, semantics=semantics, timeout_s=5.0)
        assert v.status == expected, f"{rule} [{semantics}]: {v}"
        assert v.correct == (expected == "passed") and v.details["semantics"] == semantics


def _left_behind_programs(paths):
    writer = py(f"""
        import posix
        for p in {paths!r}:
            open(p, "w").write("x")
        if posix.fork() == 0:  # a real process with a marker the checker can find (a forked python shows the
            posix.execv("/bin/sleep", ["sleep", "31.5"])  # supervisor's command line, not this program's)
        print(1)
    """)
    checker = py(f"""
        import os
        left = [p for p in {paths!r} if os.path.exists(p)]
        sleepers = 0
        for pid in os.listdir("/proc"):
            if pid.isdigit() and pid != str(os.getpid()):
                try:
                    sleepers += open("/proc/%s/cmdline" % pid, "rb").read() == b"sleep\\x0031.5\\x00"
                except OSError:
                    pass
        print("clean" if not left and not sleepers else "dirty %s %d" % (left, sleepers))
    """)
    return writer, checker


@pytest.mark.parametrize("semantics", ["lcb", "strict"])
@pytest.mark.parametrize("mode", MODES)
def test_warm_sandbox_is_reused_and_left_clean(mode, semantics):
    """One sandbox serves job after job; nothing a job writes (cwd, and /dev/shm in bubblewrap) or starts is
    there for the next one."""
    paths = ["left.txt"] + (["/dev/shm/left.txt"] if mode == "bwrap" else [])
    writer, checker = _left_behind_programs(paths)
    sb.close_idle()
    assert grade_code(writer, stdin_tests(("", "1")), semantics=semantics, sandbox=mode)
    assert sb.idle_count() == 1  # the sandbox went back to the pool...
    v = grade_code_verdict(checker, stdin_tests(("", "clean")), semantics=semantics, sandbox=mode)
    assert v.correct and sb.idle_count() == 1, v  # ...served the next job, and was clean


def test_warm_sandboxes_outlive_the_batch_threads():
    """A batch's worker threads end with the batch; the sandboxes they used must stay warm for the next one
    (bubblewrap's --die-with-parent fires when the *thread* that started it exits)."""
    sb.close_idle()
    items = [{"response": py("print(int(input()) * 2)"), "tests": stdin_tests(("2", "4"))}] * 6
    assert all(v.correct for v in grade_code_batch(items, num_workers=2))
    boxes = [b for stack in sb._idle.values() for b in stack]
    time.sleep(0.3)
    assert boxes and all(b.alive for b in boxes)
    assert all(v.correct for v in grade_code_batch(items, num_workers=2))
    assert {id(b) for stack in sb._idle.values() for b in stack} == {id(b) for b in boxes}  # reused, not new


# ---------------------------------------------------------------- limits

@needs_bwrap
@pytest.mark.parametrize("semantics", ["lcb", "strict"])
@pytest.mark.parametrize("body", ["while True:\n    pass", "import time\ntime.sleep(100)"])
def test_timeouts(body, semantics):
    t0 = time.monotonic()
    v = grade_code_verdict(py(body), stdin_tests(("", "1")), timeout_s=1.0, sandbox="bwrap", semantics=semantics)
    assert v.status == "timeout" and not v.correct
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("semantics", ["lcb", "strict"])
def test_overall_timeout(semantics):
    prog = py("import time\ntime.sleep(0.7)\nprint(1)")
    t0 = time.monotonic()
    v = grade_code_verdict(prog, stdin_tests(*[("", "1")] * 5), timeout_s=2.0, overall_timeout_s=1.5,
                           semantics=semantics)
    assert v.status == "timeout" and "overall" in v.reason and v.details["num_passed"] <= 2
    assert time.monotonic() - t0 < 4


@pytest.mark.parametrize("body", ["x = bytearray(1 << 31)\nprint(len(x))",
                                  "a = []\nwhile True:\n    a.append(bytearray(10 ** 7))"])
@pytest.mark.parametrize("semantics", ["lcb", "strict"])
def test_memory_limit(body, semantics):
    v = grade_code_verdict(py(body), stdin_tests(("", "1")), memory_mb=256, semantics=semantics)
    assert v.status == "memory_limit", v


@pytest.mark.parametrize("semantics", ["lcb", "strict"])
def test_default_memory_cap_is_high(semantics):
    """The runner sets no memory cap: a 3 GiB buffer (never touched, so it costs no RAM) must pass by default."""
    prog = py("x = bytes(3 << 30)  # calloc: mapped, not touched\nprint(len(x) >> 30)")
    assert grade_code(prog, stdin_tests(("", "3")), semantics=semantics)
    assert grade_code_verdict(prog, stdin_tests(("", "3")), memory_mb=2048,
                              semantics=semantics).status == "memory_limit"


@pytest.mark.parametrize("semantics", ["lcb", "strict"])
def test_output_flood_is_capped(semantics):
    t0 = time.monotonic()
    flood = 'import sys\nfor _ in range(10 ** 6):\n    sys.stdout.write("x" * 65536)'
    v = grade_code_verdict(py(flood), stdin_tests(("", "x")), max_output_bytes=1 << 20, timeout_s=5.0,
                           memory_mb=512, semantics=semantics)
    if semantics == "strict":  # stdout is a file capped by RLIMIT_FSIZE
        assert v.status == "wrong_answer" and "output" in v.reason
    else:  # the runner captures into a StringIO: the flood hits the memory cap instead
        assert v.status == "memory_limit", v
    assert time.monotonic() - t0 < 15  # well under the 5 s test limit plus start-up, even under load


# ---------------------------------------------------------------- hostile programs

# Hostile programs call posix.* directly: LiveCodeBench's reliability guard sets os.fork, os.kill... to None,
# and a hostile program would not be stopped by that, so neither semantics may rely on it.

# Forks up to 1000 sleeping children and prints how many forks succeeded.
FORK_COUNTER = textwrap.dedent("""
    import os, posix, time
    n = 0
    for _ in range(1000):
        try:
            pid = posix.fork()
        except OSError:
            break
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        n += 1
    print(n)
""")


@needs_bwrap
@pytest.mark.parametrize("semantics", ["lcb", "strict"])
def test_fork_count_is_bounded_and_children_die(semantics):
    prog = py(FORK_COUNTER)
    v = grade_code_verdict(prog, stdin_tests(("", "1000")), timeout_s=5.0, nproc=32, sandbox="bwrap",
                           semantics=semantics)
    assert v.status == "wrong_answer"
    forks = int(v.details["first_failure"]["got"])
    assert 0 < forks < 32, forks  # RLIMIT_NPROC counts the supervisor and the program too
    if os.geteuid() == 0:  # only the warm supervisors (one per idle sandbox) still run as pool uids
        assert len(pool_uid_procs()) == sb.idle_count("bwrap"), pool_uid_procs()


@needs_bwrap
@pytest.mark.parametrize("semantics", ["lcb", "strict"])
def test_fork_bomb_is_contained(semantics):
    bomb = py("""
        import posix
        while True:
            try:
                posix.fork()
            except OSError:
                pass
    """)
    t0 = time.monotonic()
    v = grade_code_verdict(bomb, stdin_tests(("", "1")), timeout_s=1.5, sandbox="bwrap", semantics=semantics)
    assert not v.correct and time.monotonic() - t0 < 10
    time.sleep(0.2)
    if os.geteuid() == 0:
        assert len(pool_uid_procs()) == sb.idle_count("bwrap"), pool_uid_procs()
    assert grade_code(py("print(1)"), stdin_tests(("", "1")), sandbox="bwrap", semantics=semantics)  # still works


@pytest.mark.parametrize("semantics", ["lcb", "strict"])
@pytest.mark.parametrize("mode", MODES)
def test_detached_daemon_does_not_survive(mode, semantics):
    marker = f"{uuid.uuid4().int % 10 ** 6}.{uuid.uuid4().int % 10 ** 6}"
    prog = py(f"""
        import os, posix, time
        if posix.fork() == 0:
            os.setsid()
            if posix.fork() == 0:
                os.execv("/bin/sleep", ["sleep", "{marker}"])
            os._exit(0)
        time.sleep(0.3)
        up = False
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    up |= b"{marker}" in open("/proc/%s/cmdline" % pid, "rb").read()
                except OSError:
                    pass
        print("daemon-up" if up else "daemon-missing")
    """)
    try:
        v = grade_code_verdict(prog, stdin_tests(("", "daemon-up")), sandbox=mode, semantics=semantics)
        assert v.correct, v  # the daemon really started...
        time.sleep(0.3)
        assert procs_with(marker) == []  # ...and is gone
    finally:
        for pid in procs_with(marker):  # never leave a stray process behind, even when the test fails
            os.kill(pid, 9)


@needs_bwrap
@pytest.mark.parametrize("semantics", ["lcb", "strict"])
def test_host_files_are_untouched(tmp_path, semantics):
    keep = tmp_path / "keep.txt"
    keep.write_text("original")
    new = tmp_path / "new.txt"
    prefix_file = Path(sys.prefix) / f"pwned-{uuid.uuid4().hex}.txt"
    root_file = Path("/") / f"pwned-{uuid.uuid4().hex}.txt"
    prog = py(f"""
        import posix
        actions = [lambda: posix.remove({str(keep)!r}),
                   lambda: open({str(keep)!r}, "w").write("overwritten"),
                   lambda: open({str(new)!r}, "w").write("new"),
                   lambda: open({str(prefix_file)!r}, "w").write("x"),
                   lambda: open({str(root_file)!r}, "w").write("x")]
        result = []
        for act in actions:
            try:
                act()
                result.append("done")
            except OSError:
                result.append("blocked")
        print(" ".join(result))
    """)
    try:
        v = grade_code_verdict(prog, stdin_tests(("", " ".join(["blocked"] * 5))), sandbox="bwrap",
                               semantics=semantics)
        assert v.correct, v
        assert keep.read_text() == "original" and not new.exists()
        assert not prefix_file.exists() and not root_file.exists()
    finally:
        for p in (prefix_file, root_file):
            p.unlink(missing_ok=True)


@pytest.mark.parametrize("semantics", ["lcb", "strict"])
@pytest.mark.parametrize("mode", MODES)
def test_environment_secrets_are_absent(mode, monkeypatch, semantics):
    secret = f"hunter2-{uuid.uuid4().hex}"
    monkeypatch.setenv("POSTTRAIN_TEST_SECRET", secret)
    scan_proc = mode == "bwrap"  # the fallback shares /proc with the grader: documented residual risk
    prog = py(f"""
        import os
        blob = repr(dict(os.environ)).encode()
        if {scan_proc}:
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        blob += open("/proc/%s/environ" % pid, "rb").read()
                    except OSError:
                        pass
        print("leak" if {secret!r}.encode() in blob else "clean")
    """)
    v = grade_code_verdict(prog, stdin_tests(("", "clean")), sandbox=mode, semantics=semantics)
    assert v.correct, v


@needs_bwrap
def test_loopback_server_is_unreachable():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.5)
    port = srv.getsockname()[1]
    prog = py(f"""
        import socket
        try:
            socket.create_connection(("127.0.0.1", {port}), timeout=2).sendall(b"hello")
            print("connected")
        except OSError:
            print("blocked")
    """)
    try:
        v = grade_code_verdict(prog, stdin_tests(("", "blocked")), sandbox="bwrap")
        assert v.correct, v
        with pytest.raises(socket.timeout):
            srv.accept()
    finally:
        srv.close()


@needs_bwrap
@pytest.mark.parametrize("attack", ["posix.kill(os.getppid(), signal.SIGKILL)", "posix.killpg(0, signal.SIGKILL)",
                                    "posix.kill(-1, signal.SIGKILL)",
                                    "posix.killpg(os.getpgid(os.getppid()), signal.SIGKILL)"])
@pytest.mark.parametrize("semantics", ["lcb", "strict"])
def test_killing_the_parent_fails_the_program_not_the_grader(attack, semantics):
    prog = py(f"""
        import os, posix, signal, time
        print("alive", flush=True)
        {attack}
        time.sleep(1)
    """)
    v = grade_code_verdict(prog, stdin_tests(("", "alive"), ("", "alive")), sandbox="bwrap", semantics=semantics)
    assert not v.correct and v.status in ("runtime_error", "wrong_answer"), v
    for _ in range(3):  # we are alive and still grading, in a sandbox that works
        assert grade_code(py("print(2)"), stdin_tests(("", "2")), sandbox="bwrap", semantics=semantics)


@pytest.mark.parametrize("semantics", ["lcb", "strict"])
def test_killing_the_supervisor_in_fallback_mode(semantics):
    prog = py("import os, posix, signal\nposix.kill(os.getppid(), signal.SIGKILL)\nprint(1)")
    v = grade_code_verdict(prog, stdin_tests(("", "1")), sandbox="none", semantics=semantics)
    assert not v.correct and v.status == "runtime_error"
    assert grade_code(py("print(1)"), stdin_tests(("", "1")), sandbox="none", semantics=semantics)


@pytest.mark.parametrize("semantics", ["lcb", "strict"])
@pytest.mark.parametrize("mode", MODES)
def test_rigged_eq_return_values_fail(mode, semantics):
    tests = fn_tests(("[1,2,3]", "6"), ("[5]", "5"))
    always_equal = py("""
        class Anything:
            def __eq__(self, other):
                return True
            def __ne__(self, other):
                return False
        class Solution:
            def total(self, nums):
                return Anything()
    """)
    v = grade_code_verdict(always_equal, tests, "total", sandbox=mode, semantics=semantics)
    assert not v.correct and v.status == "wrong_answer" and ("JSON" in v.reason or "plain value" in v.reason), v
    rigged_int = py("""
        class Int(int):
            def __eq__(self, other):
                return True
        class Solution:
            def total(self, nums):
                return Int(-1)
    """)
    assert not grade_code(rigged_int, tests, "total", sandbox=mode, semantics=semantics)


@pytest.mark.parametrize("semantics", ["lcb", "strict"])
@pytest.mark.parametrize("mode", MODES)
def test_fake_verdict_markers_do_not_pass(mode, semantics):
    frame = json.dumps({"t": "test", "i": 0, "status": "ok", "out": "31337", "err": "", "detail": ""})
    done = json.dumps({"t": "done"})
    stdin_forger = py(f"""
        import os
        lines = {frame!r} + "\\n" + {done!r} + "\\n"
        print("PASSED\\nAll tests passed")
        print(lines)
        for fd in range(3, 64):  # every descriptor we might share with the harness
            try:
                os.write(fd, lines.encode())
            except OSError:
                pass
        for fd in range(64):  # and the harness's own descriptors, through /proc
            try:
                with open("/proc/%d/fd/%d" % (os.getppid(), fd), "w") as f:
                    f.write(lines)
            except OSError:
                pass
    """)
    v = grade_code_verdict(stdin_forger, stdin_tests(("", "42"), ("", "42")), sandbox=mode, semantics=semantics)
    assert not v.correct, v
    result_forger = py("""
        import os
        class Solution:
            def f(self, x):
                os.write(3, b'{"status": "ok", "ret": "42"}')
                os._exit(0)
    """)
    v = grade_code_verdict(result_forger, fn_tests(("1", "12345")), "f", sandbox=mode, semantics=semantics)
    assert not v.correct and v.status in ("wrong_answer", "runtime_error"), v


@pytest.mark.parametrize("mode", MODES)
def test_lcb_program_cannot_extend_its_own_deadline(mode):
    """Under lcb the program shares a process with the harness (fd 3 carries its results): writing the
    harness's 'loaded' record there must not restart its clock."""
    prog = py("""
        import os, time
        for _ in range(40):
            os.write(3, b'{"t": "loaded"}\\n')
            time.sleep(0.1)
        print(1)
    """)
    v = grade_code_verdict(prog, stdin_tests(("", "1")), timeout_s=1.0, sandbox=mode, semantics="lcb")
    assert not v.correct, v


@pytest.mark.parametrize("semantics", ["lcb", "strict"])
@pytest.mark.parametrize("mode", MODES)
def test_expected_outputs_never_enter_the_sandbox(mode, semantics):
    marker = f"EXPECTED-{uuid.uuid4().hex}"
    prog = py(f"""
        import gc
        target = "EXPECTED-" + {marker[len("EXPECTED-"):]!r}
        hit = any(isinstance(o, (str, bytes, dict, list)) and target in repr(o)
                  for o in gc.get_objects() if o is not globals())
        print("found" if hit else "absent")
    """)
    v = grade_code_verdict(prog, stdin_tests(("", marker)), sandbox=mode, semantics=semantics)
    assert v.status == "wrong_answer" and v.details["first_failure"]["got"].strip() == "absent"


# ---------------------------------------------------------------- batch, fallback, non-root

def test_batch_preserves_order():
    ok = py("print(int(input()) * 2)")
    items = [
        {"response": ok, "tests": stdin_tests(("2", "4"), ("5", "10"))},
        {"response": "no code", "tests": stdin_tests(("1", "2"))},
        {"response": py("print(int(input()) * 3)"), "tests": stdin_tests(("2", "4"))},
        {"response": py("def f(:"), "tests": stdin_tests(("1", "2"))},
        {"response": py("class Solution:\n    def f(self, a):\n        return a[::-1]"),
         "tests": fn_tests(("[1,2]", "[2,1]")), "fn_name": "f"},
        {"response": ok, "tests": stdin_tests(("0", "0"))},
    ]
    asserts = "assert f(2) == 4\nprint('ALL PASSED')"
    items += [{"response": py("def f(x):\n    return x * 2"), "tests": stdin_tests(("", "ALL PASSED")),
               "test_program": asserts},
              {"response": py("def f(x):\n    return x + 3"), "tests": stdin_tests(("", "ALL PASSED")),
               "test_program": asserts}]
    verdicts = grade_code_batch(items, num_workers=2, progress=True)
    assert [v.status for v in verdicts] == ["passed", "no_code", "wrong_answer", "syntax_error", "passed", "passed",
                                            "passed", "runtime_error"]
    assert verdicts[6].extracted == "def f(x):\n    return x * 2"  # the model's program, not the asserts
    assert all(isinstance(v, Verdict) for v in verdicts)
    assert grade_code_batch([]) == []


def test_fallback_warns_once_and_strict_mode_raises(monkeypatch):
    monkeypatch.setitem(sb._probe_cache, "/nonexistent/python", (False, "simulated: no bwrap"))
    monkeypatch.setattr(sb, "_warned", False)
    with pytest.warns(RuntimeWarning, match="PARTIAL ISOLATION"):
        assert sb.resolve_mode("auto", "/nonexistent/python") == "none"
    with pytest.raises(sb.SandboxUnavailable):
        sb.resolve_mode("bwrap", "/nonexistent/python")
    monkeypatch.setenv(sb.ENV_VAR, "none")
    assert sb.resolve_mode(None) == "none"
    assert grade_code_verdict(py("print(7)"), stdin_tests(("", "7"))).details["sandbox"] == "fallback"
    with pytest.raises(ValueError):
        sb.resolve_mode("docker")


CAN_BECOME_NOBODY = os.geteuid() == 0 and shutil.which("setpriv") and os.path.exists("/usr/bin/python3")
needs_nobody = pytest.mark.skipif(not CAN_BECOME_NOBODY,
                                  reason="needs root (to become another user), setpriv and a system python3")
NOBODY = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups"]

# Runs as uid 65534 with the system python: the grader launches bubblewrap unprivileged (user namespace).
UNPRIVILEGED_CHECK = textwrap.dedent("""
    import json, sys, types
    for name, path in (("posttrain", sys.argv[1] + "/posttrain"), ("posttrain.grading", sys.argv[1] + "/posttrain/grading")):
        mod = types.ModuleType(name); mod.__path__ = [path]; sys.modules[name] = mod  # skip package __init__
    from posttrain.grading.code import grade_code_verdict
    def fence(s): return "```python\\n" + s + "\\n```"
    t = [{"input": "", "output": "1", "testtype": "stdin"}]
    forks = sys.stdin.read()
    out = {"ok": grade_code_verdict(fence("print(1)"), t, sandbox="bwrap").status}
    for semantics in ("lcb", "strict"):
        v = grade_code_verdict(fence(forks), t, sandbox="bwrap", nproc=16, semantics=semantics)
        out["forks_" + semantics] = v.details["first_failure"]["got"]
        v = grade_code_verdict(fence("import os, posix\\nposix.kill(-1, 9)\\nprint(1)"), t, sandbox="bwrap",
                               semantics=semantics)
        out["kill_" + semantics] = v.status
    print(json.dumps(out))
""")


def run_unprivileged_check(package_dir: Path) -> dict:
    """Grade a few programs as uid 65534 from a world-readable copy of the grading package in
    `package_dir` (the repository itself may sit under a directory that user cannot enter, e.g. /root)."""
    readable = Path(tempfile.mkdtemp(prefix="posttrain-unpriv-"))
    try:
        readable.chmod(0o755)
        dest = readable / "posttrain" / "grading"
        dest.mkdir(parents=True)
        for f in (package_dir / "posttrain" / "grading").glob("*.py"):
            shutil.copy(f, dest / f.name)
        for d in (readable, readable / "posttrain", dest):
            d.chmod(0o755)
        for f in dest.iterdir():
            f.chmod(0o644)
        proc = subprocess.run(NOBODY + ["/usr/bin/python3", "-I", "-c", UNPRIVILEGED_CHECK, str(readable)],
                              input=FORK_COUNTER, capture_output=True, text=True, timeout=120, cwd="/tmp",
                              env={"PATH": "/usr/bin:/bin"})
    finally:
        shutil.rmtree(readable, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def assert_unprivileged_guarantees(out: dict) -> None:
    assert out["ok"] == "passed"
    for semantics in ("lcb", "strict"):
        assert 0 < int(out["forks_" + semantics]) < 16, out  # RLIMIT_NPROC binds in the user namespace
        assert out["kill_" + semantics] == "runtime_error", out  # kill(-1) reached only the sandbox


@needs_bwrap
@needs_nobody
def test_unprivileged_launcher():
    """As a normal user, bubblewrap runs unprivileged in a user namespace: same guarantees."""
    assert_unprivileged_guarantees(run_unprivileged_check(REPO / "lib"))


@needs_bwrap
@needs_nobody
def test_unprivileged_launcher_from_a_private_clone(tmp_path):
    """A clone under a 0700 directory (as /root is): uid 65534 cannot read it, and the check still runs."""
    private = tmp_path / "home"
    shutil.copytree(REPO / "lib" / "posttrain" / "grading", private / "clone" / "lib" / "posttrain" / "grading",
                    ignore=shutil.ignore_patterns("__pycache__"))
    private.chmod(0o700)
    denied = subprocess.run(NOBODY + ["/usr/bin/python3", "-c", f"import os; os.listdir({str(private)!r})"],
                            capture_output=True, text=True, timeout=30)
    assert denied.returncode != 0 and "Permission" in denied.stderr  # the situation of issue 15
    assert_unprivileged_guarantees(run_unprivileged_check(private / "clone" / "lib"))


def test_wipe_empties_the_scratch_but_not_a_mount_inside_it(tmp_path, monkeypatch):
    # A project under /tmp has its interpreter bound read-only into the sandbox's /tmp scratch: wiping the
    # scratch after each job must not walk into that mount (a venv's ~90k files made every code job seconds long).
    from posttrain.grading import sandbox_supervisor as supervisor
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "left.txt").write_text("x")
    (tmp_path / "left.txt").write_text("y")
    mount = tmp_path / "venv"
    (mount / "lib").mkdir(parents=True)
    (mount / "lib" / "site.py").write_text("z")
    real_lstat, walked = os.lstat, []

    def lstat(path, *args, **kwargs):
        st = real_lstat(path, *args, **kwargs)
        walked.append(str(path))
        if str(path).startswith(str(mount)):  # another filesystem, as a bind mount is
            return os.stat_result((st.st_mode, st.st_ino, st.st_dev + 1) + tuple(st)[3:10])
        return st

    monkeypatch.setattr(supervisor.os, "lstat", lstat)
    supervisor.wipe(str(tmp_path))
    assert [p.name for p in tmp_path.iterdir()] == ["venv"]
    assert (mount / "lib" / "site.py").read_text() == "z"
    assert not any(w.startswith(str(mount / "lib")) for w in walked)
