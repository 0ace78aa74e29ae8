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
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from posttrain.grading import sandbox as sb
from posttrain.grading.code import (CodeVerdict, compare_functional, compare_stdout, extract_code, grade_code,
                                    grade_code_batch, grade_code_verdict)

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
    """Host processes still running as one of the sandbox's pool uids (root launcher only)."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            uid = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:")))
            if uid >= sb._UID_POOL_BASE:
                found.append(f"{pid} {status.splitlines()[:3]} {Path(f'/proc/{pid}/cmdline').read_bytes()[:80]}")
    return found


# ---------------------------------------------------------------- extraction and comparison (no sandbox)

def test_extract_code_prefers_last_python_block():
    resp = "```python\na = 1\n```\ntext\n```\nplain = 2\n```\n```py\nlast = 3\n```\nbye"
    assert extract_code(resp) == "last = 3"
    assert extract_code("```\nx = 1\n```\n```bash\nls\n```") == "ls"  # no python block: last block of any kind
    assert extract_code("```python\nfirst\n```\n```\nplain\n```") == "first"
    assert extract_code("no code here") is None
    assert extract_code("```python\nprint(1)\n") is None  # cut off by the token limit
    assert extract_code("```python\n\n```") is None


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
    assert (v.passed, v.status, v.num_tests) == (False, "no_code", 1)
    v = grade_code_verdict(py("def f(:\n    pass"), t)
    assert v.status == "syntax_error" and v.sandbox == "" and "SyntaxError" in v.reason
    with pytest.raises(ValueError):
        grade_code_verdict(py("print(1)"), [])
    with pytest.raises(ValueError):
        grade_code_verdict(py("print(1)"), fn_tests(("1", "1")))  # functional needs fn_name


# ---------------------------------------------------------------- ordinary programs, both modes

@pytest.mark.parametrize("mode", MODES)
def test_stdin_programs(mode):
    tests = stdin_tests(("1 2\n", "3\n"), ("10 20", "30"), ("-5 5", "0"))
    good = py("""
        a, b = map(int, input().split())
        print(a + b)
    """)
    v = grade_code_verdict(good, tests, sandbox=mode)
    assert v.passed and v.status == "passed" and v.num_passed == 3, v
    assert v.sandbox == ("bwrap" if mode == "bwrap" else "fallback")

    wrong = py("""
        a, b = map(int, input().split())
        print(a + b if a > 0 else 1)
    """)
    v = grade_code_verdict(wrong, tests, sandbox=mode)
    assert (v.passed, v.status, v.num_passed) == (False, "wrong_answer", 2)
    assert v.first_failure["test_index"] == 2 and v.first_failure["got"].strip() == "1"

    crash = py("print(1 // 0)")
    v = grade_code_verdict(crash, tests, sandbox=mode)
    assert v.status == "runtime_error" and "ZeroDivisionError" in v.reason and v.num_passed == 0


@pytest.mark.parametrize("mode", MODES)
def test_stdin_buffer_and_exit_idioms(mode):
    tests = stdin_tests(("3\n1 2 3\n", "6"), ("2\n10 -1\n", "9"))
    buffered = py("""
        import sys
        data = sys.stdin.buffer.read().split()
        n = int(data[0])
        sys.stdout.buffer.write(str(sum(map(int, data[1:1 + n]))).encode() + b"\\n")
    """)
    assert grade_code(buffered, tests, sandbox=mode)
    readline = py("""
        import sys
        input = sys.stdin.readline
        n = int(input())
        print(sum(map(int, input().split())))
        sys.stdout.flush()
        exit()
    """)
    assert grade_code(readline, tests, sandbox=mode)
    fast_exit = py("""
        import os, sys
        lines = open(0).read().split("\\n")
        sys.stdout.write(str(sum(map(int, lines[1].split()))) + "\\n")
        sys.stdout.flush()
        os._exit(0)
    """)
    assert grade_code(fast_exit, tests, sandbox=mode)
    nonzero_exit = py("""
        import sys
        input()
        print(sum(map(int, input().split())))
        sys.exit(1)  # LiveCodeBench ignores SystemExit in stdin programs: the output is what counts
    """)
    assert grade_code(nonzero_exit, tests, sandbox=mode)
    unicode_io = py("""
        name = input()
        print(f"héllo {name} ✓")
    """)
    assert grade_code(unicode_io, stdin_tests(("wörld", "héllo wörld ✓")), sandbox=mode)
    main_guard = py("""
        def main():
            input()
            print(sum(map(int, input().split())))
        if __name__ == "__main__":
            main()
    """)
    assert grade_code(main_guard, tests, sandbox=mode)


def test_decimal_line_count_and_whitespace_end_to_end():
    assert grade_code(py('print("1.0")'), stdin_tests(("", "1")))
    v = grade_code_verdict(py('print("0.333333")'), stdin_tests(("", "0.3333333")))
    assert v.status == "wrong_answer"
    v = grade_code_verdict(py('print(1)\nprint(2)'), stdin_tests(("", "1")))
    assert v.status == "wrong_answer" and "lines" in v.reason
    assert grade_code(py('print("1 2   ")\nprint()\nprint("  ")'), stdin_tests(("", "1 2\n")))


def test_state_does_not_leak_between_tests():
    prog = py("""
        import builtins, os, sys
        stale = os.path.exists("state.txt") or hasattr(builtins, "_leak") or "leakmod" in sys.modules
        open("state.txt", "w").write("x")
        builtins._leak = 1
        sys.modules["leakmod"] = sys
        print("stale" if stale else "fresh")
    """)
    for mode in (["bwrap"] if HAVE_BWRAP else []) + ["none"]:
        v = grade_code_verdict(prog, stdin_tests(("", "fresh"), ("", "fresh"), ("", "fresh")), sandbox=mode)
        assert v.passed, v


@pytest.mark.parametrize("mode", MODES)
def test_functional_programs(mode):
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
    v = grade_code_verdict(good, tests, "twoSum", sandbox=mode)
    assert v.passed and v.num_passed == 3, v
    wrong = py("""
        class Solution:
            def twoSum(self, nums, target):
                return [0, 1]
    """)
    v = grade_code_verdict(wrong, tests, "twoSum", sandbox=mode)
    assert v.status == "wrong_answer" and v.first_failure["test_index"] == 1
    missing = py("class Solution:\n    def other(self):\n        return 1")
    assert grade_code_verdict(missing, tests, "twoSum", sandbox=mode).status == "runtime_error"
    top_level = py("def add(a, b):\n    return a + b")
    assert grade_code(top_level, fn_tests(('1\n2', '3'), ('"a"\n"b"', '"ab"')), "add", sandbox=mode)


# ---------------------------------------------------------------- limits

@needs_bwrap
@pytest.mark.parametrize("body", ["while True:\n    pass", "import time\ntime.sleep(100)"])
def test_timeouts(body):
    t0 = time.monotonic()
    v = grade_code_verdict(py(body), stdin_tests(("", "1")), timeout_s=1.0, sandbox="bwrap")
    assert v.status == "timeout" and not v.passed
    assert time.monotonic() - t0 < 5


def test_overall_timeout():
    prog = py("import time\ntime.sleep(0.7)\nprint(1)")
    t0 = time.monotonic()
    v = grade_code_verdict(prog, stdin_tests(*[("", "1")] * 5), timeout_s=2.0, overall_timeout_s=1.5)
    assert v.status == "timeout" and "overall" in v.reason and v.num_passed <= 2
    assert time.monotonic() - t0 < 4


@pytest.mark.parametrize("body", ["x = bytearray(1 << 31)\nprint(len(x))",
                                  "a = []\nwhile True:\n    a.append(bytearray(10 ** 7))"])
def test_memory_limit(body):
    v = grade_code_verdict(py(body), stdin_tests(("", "1")), memory_mb=256)
    assert v.status == "memory_limit", v


def test_output_flood_is_capped():
    t0 = time.monotonic()
    v = grade_code_verdict(py('import sys\nwhile True:\n    sys.stdout.write("x" * 65536)'),
                           stdin_tests(("", "x")), max_output_bytes=1 << 20, timeout_s=5.0)
    assert v.status == "wrong_answer" and "output" in v.reason
    assert time.monotonic() - t0 < 4


# ---------------------------------------------------------------- hostile programs

# Forks up to 1000 sleeping children and prints how many forks succeeded.
FORK_COUNTER = textwrap.dedent("""
    import os, time
    n = 0
    for _ in range(1000):
        try:
            pid = os.fork()
        except OSError:
            break
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        n += 1
    print(n)
""")


@needs_bwrap
def test_fork_count_is_bounded_and_children_die():
    prog = py(FORK_COUNTER)
    v = grade_code_verdict(prog, stdin_tests(("", "1000")), timeout_s=5.0, nproc=32, sandbox="bwrap")
    assert v.status == "wrong_answer"
    forks = int(v.first_failure["got"])
    assert 0 < forks < 32, forks  # RLIMIT_NPROC counts the supervisor and the program too
    if os.geteuid() == 0:
        assert pool_uid_procs() == []


@needs_bwrap
def test_fork_bomb_is_contained():
    bomb = py("""
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
    """)
    t0 = time.monotonic()
    v = grade_code_verdict(bomb, stdin_tests(("", "1")), timeout_s=1.5, sandbox="bwrap")
    assert not v.passed and time.monotonic() - t0 < 10
    time.sleep(0.2)
    if os.geteuid() == 0:
        assert pool_uid_procs() == []
    assert grade_code(py("print(1)"), stdin_tests(("", "1")), sandbox="bwrap")  # the machine still works


@pytest.mark.parametrize("mode", MODES)
def test_detached_daemon_does_not_survive(mode):
    marker = f"{uuid.uuid4().int % 10 ** 6}.{uuid.uuid4().int % 10 ** 6}"
    prog = py(f"""
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
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
        v = grade_code_verdict(prog, stdin_tests(("", "daemon-up")), sandbox=mode)
        assert v.passed, v  # the daemon really started...
        time.sleep(0.3)
        assert procs_with(marker) == []  # ...and is gone
    finally:
        for pid in procs_with(marker):  # never leave a stray process behind, even when the test fails
            os.kill(pid, 9)


@needs_bwrap
def test_host_files_are_untouched(tmp_path):
    keep = tmp_path / "keep.txt"
    keep.write_text("original")
    new = tmp_path / "new.txt"
    prefix_file = Path(sys.prefix) / f"pwned-{uuid.uuid4().hex}.txt"
    root_file = Path("/") / f"pwned-{uuid.uuid4().hex}.txt"
    prog = py(f"""
        import os
        actions = [lambda: os.remove({str(keep)!r}),
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
        v = grade_code_verdict(prog, stdin_tests(("", " ".join(["blocked"] * 5))), sandbox="bwrap")
        assert v.passed, v
        assert keep.read_text() == "original" and not new.exists()
        assert not prefix_file.exists() and not root_file.exists()
    finally:
        for p in (prefix_file, root_file):
            p.unlink(missing_ok=True)


@pytest.mark.parametrize("mode", MODES)
def test_environment_secrets_are_absent(mode, monkeypatch):
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
    v = grade_code_verdict(prog, stdin_tests(("", "clean")), sandbox=mode)
    assert v.passed, v


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
        assert v.passed, v
        with pytest.raises(socket.timeout):
            srv.accept()
    finally:
        srv.close()


@needs_bwrap
@pytest.mark.parametrize("attack", ["os.kill(os.getppid(), signal.SIGKILL)", "os.killpg(0, signal.SIGKILL)",
                                    "os.kill(-1, signal.SIGKILL)",
                                    "os.killpg(os.getpgid(os.getppid()), signal.SIGKILL)"])
def test_killing_the_parent_fails_the_program_not_the_grader(attack):
    prog = py(f"""
        import os, signal, time
        print("alive", flush=True)
        {attack}
        time.sleep(1)
    """)
    v = grade_code_verdict(prog, stdin_tests(("", "alive"), ("", "alive")), sandbox="bwrap")
    assert not v.passed and v.status in ("runtime_error", "wrong_answer"), v
    assert grade_code(py("print(2)"), stdin_tests(("", "2")), sandbox="bwrap")  # we are alive and still grading


def test_killing_the_supervisor_in_fallback_mode():
    prog = py("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nprint(1)")
    v = grade_code_verdict(prog, stdin_tests(("", "1")), sandbox="none")
    assert not v.passed and v.status == "runtime_error"


@pytest.mark.parametrize("mode", MODES)
def test_rigged_eq_return_values_fail(mode):
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
    v = grade_code_verdict(always_equal, tests, "total", sandbox=mode)
    assert not v.passed and v.status == "wrong_answer" and "JSON" in v.reason
    rigged_int = py("""
        class Int(int):
            def __eq__(self, other):
                return True
        class Solution:
            def total(self, nums):
                return Int(-1)
    """)
    assert not grade_code(rigged_int, tests, "total", sandbox=mode)


@pytest.mark.parametrize("mode", MODES)
def test_fake_verdict_markers_do_not_pass(mode):
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
    v = grade_code_verdict(stdin_forger, stdin_tests(("", "42"), ("", "42")), sandbox=mode)
    assert not v.passed, v
    result_forger = py("""
        import os
        class Solution:
            def f(self, x):
                os.write(3, b'{"status": "ok", "ret": "42"}')
                os._exit(0)
    """)
    v = grade_code_verdict(result_forger, fn_tests(("1", "12345")), "f", sandbox=mode)
    assert not v.passed and v.status == "wrong_answer"


@pytest.mark.parametrize("mode", MODES)
def test_expected_outputs_never_enter_the_sandbox(mode):
    marker = f"EXPECTED-{uuid.uuid4().hex}"
    prog = py(f"""
        import gc
        target = "EXPECTED-" + {marker[len("EXPECTED-"):]!r}
        hit = any(isinstance(o, (str, bytes, dict, list)) and target in repr(o)
                  for o in gc.get_objects() if o is not globals())
        print("found" if hit else "absent")
    """)
    v = grade_code_verdict(prog, stdin_tests(("", marker)), sandbox=mode)
    assert v.status == "wrong_answer" and v.first_failure["got"].strip() == "absent"


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
    verdicts = grade_code_batch(items, num_workers=2, progress=True)
    assert [v.status for v in verdicts] == ["passed", "no_code", "wrong_answer", "syntax_error", "passed", "passed"]
    assert all(isinstance(v, CodeVerdict) for v in verdicts)
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
    assert grade_code_verdict(py("print(7)"), stdin_tests(("", "7"))).sandbox == "fallback"
    with pytest.raises(ValueError):
        sb.resolve_mode("docker")


@needs_bwrap
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv") or not os.path.exists("/usr/bin/python3"),
                    reason="needs root (to become another user), setpriv and a system python3")
def test_unprivileged_launcher():
    """As a normal user, bubblewrap runs unprivileged in a user namespace: same guarantees."""
    script = textwrap.dedent(f"""
        import json, sys, types
        for name, path in (("posttrain", {str(REPO / 'lib/posttrain')!r}),
                           ("posttrain.grading", {str(REPO / 'lib/posttrain/grading')!r})):
            mod = types.ModuleType(name); mod.__path__ = [path]; sys.modules[name] = mod  # skip package __init__
        from posttrain.grading.code import grade_code_verdict
        def fence(s): return "```python\\n" + s + "\\n```"
        t = [{{"input": "", "output": "1", "testtype": "stdin"}}]
        forks = {FORK_COUNTER!r}
        out = {{
            "ok": grade_code_verdict(fence("print(1)"), t, sandbox="bwrap").status,
            "forks": grade_code_verdict(fence(forks), t, sandbox="bwrap", nproc=16).first_failure["got"],
            "kill": grade_code_verdict(fence("import os\\nos.kill(-1, 9)\\nprint(1)"), t, sandbox="bwrap").status,
        }}
        print(json.dumps(out))
    """)
    proc = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups",
                           "/usr/bin/python3", "-I", "-c", script], capture_output=True, text=True, timeout=60,
                          cwd="/tmp", env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["ok"] == "passed"
    assert 0 < int(out["forks"]) < 16
    assert out["kill"] == "runtime_error"
