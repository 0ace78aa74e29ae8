"""The supervisor: the one program that runs *inside* the grading sandbox. Standard library only.

The launcher (``posttrain.grading.sandbox``) starts it as ``python -I -c <this file's text> --serve <cfg>``,
so it needs no file access inside the sandbox, and keeps it warm: the supervisor imports LiveCodeBench's
stdlib prelude once, then serves one job after another. A job is one response's program and its test
inputs -- never the expected outputs. Per job it forks, runs the tests, streams one JSON frame per test
(status + raw output) on its stdout and ends with ``{"t": "done"}``; then it kills every process the job
left, empties the scratch directories and waits for the next job. Forking from a warm, pristine
supervisor costs ~1 ms instead of ~40 ms for a fresh interpreter and prelude.

Two semantics, chosen per job:

* ``"lcb"``: one child runs all tests in order in one module, the way LiveCodeBench's runner does
  (``lcb_runner/evaluation/testing_util.py``): its reliability guard, a module named ``tmp_sol``, stdin
  programs already wrapped in ``wrapped_function`` by the grader, a fake ``sys.stdin``, ``sys.stdout``
  replaced by a string buffer, ``SystemExit`` ignored in stdin programs, one ``Solution()`` for all
  functional tests, and ``sys.set_int_max_str_digits(50000)``. Return values leave as tagged JSON
  (types kept: tuple, set, dict keys) so the grader can apply ``==`` as the runner does.
* ``"strict"``: every test gets a fresh ``__main__`` in its own forked child with real stdin/stdout files.

The program never decides its verdict: frames only carry what it printed or returned; the grader compares.
A frame's test index is counted here, not taken from the program. Time limits are enforced here, by wall
clock, from outside the program's process.

Messages on stdin (one JSON per line): ``{"t": "job", ...}`` and, during a job, ``{"t": "stop"}``.
"""
import errno
import json
import os
import resource
import select
import signal
import sys
import time
import types

# LiveCodeBench runs every program with this prelude in front (star-imports of these stdlib modules, the
# modules themselves, and a recursion limit of 50000), so programs that forget `import sys` still run.
PRELUDE_MODULES = ("string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math", "random",
                   "statistics", "itertools", "functools", "operator", "io", "sys", "json", "builtins",
                   "typing")
LCB_PRELUDE = ("".join(f"from {m} import *\n" for m in PRELUDE_MODULES)
               + "".join(f"import {m}\n" for m in PRELUDE_MODULES if m not in ("builtins", "typing"))
               + "sys.setrecursionlimit(50000)\n")
# Imported once by the warm supervisor so that no job pays for them: what the lcb runner itself uses.
_WARM_MODULES = ("shutil", "subprocess", "faulthandler", "traceback", "linecache", "ctypes")
LCB_INT_MAX_STR_DIGITS = 50000  # set by LiveCodeBench's compute_code_generation_metrics at import

RESULT_FD = 3      # a child's results go here (fds 0-2 are the program's stdio)
ERR_TAIL = 2000    # characters of stderr / traceback kept per failing test
_MAX_FD = 1 << 20


# ---------------------------------------------------------------- small io helpers

def write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def read_all(fd, limit=None):
    chunks, total = [], 0
    while True:
        want = 1 << 20 if limit is None else min(1 << 20, limit - total)
        if want <= 0:
            break
        chunk = os.read(fd, want)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def anon_file(name):
    """An unnamed in-memory file (memfd): seekable, so `sys.stdin.buffer.read()` and friends behave like a
    redirected file, and bounded by RLIMIT_FSIZE when used for output. Falls back to an unlinked temp file."""
    try:
        return os.memfd_create(name)
    except (AttributeError, OSError):
        import tempfile
        fd, path = tempfile.mkstemp(prefix=name)
        os.unlink(path)
        return fd


def read_file(fd, limit, tail=False):
    size = os.fstat(fd).st_size
    os.lseek(fd, max(0, size - limit) if tail else 0, os.SEEK_SET)
    return read_all(fd, limit)


def emit(fd, frame):
    write_all(fd, (json.dumps(frame, ensure_ascii=False) + "\n").encode("utf-8", "replace"))


class Control:
    """The launcher's messages on stdin: jobs between jobs, a stop (or EOF) during one."""

    def __init__(self, fd):
        self.fd, self.buf, self.eof, self.pending, self.current = fd, bytearray(), False, [], None

    def _take_lines(self):
        while True:
            nl = self.buf.find(b"\n")
            if nl < 0:
                return
            line = bytes(self.buf[:nl])
            del self.buf[:nl + 1]
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if isinstance(msg, dict):
                self.pending.append(msg)

    def next_job(self):
        """Block until the next job; None at EOF (the launcher is gone or closed us)."""
        while True:
            while self.pending:
                msg = self.pending.pop(0)
                if msg.get("t") == "job":
                    self.current = msg.get("id")
                    return msg
            if self.eof:
                return None
            data = os.read(self.fd, 1 << 20)
            if not data:
                self.eof = True
            self.buf += data
            self._take_lines()

    def stop_requested(self):
        """Read what is there (the fd was reported readable); True on a stop for the current job, or EOF."""
        data = os.read(self.fd, 1 << 16)
        if not data:
            self.eof = True
            return True
        self.buf += data
        self._take_lines()
        stop = any(m.get("t") == "stop" and m.get("job") == self.current for m in self.pending)
        self.pending = [m for m in self.pending if m.get("t") != "stop"]
        return stop


# ---------------------------------------------------------------- processes and limits

def _children():
    """Direct children of this process (the supervisor is a subreaper in fallback mode, so orphans land here)."""
    kids = []
    try:
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/children") as f:
                kids.extend(int(p) for p in f.read().split())
    except OSError:
        pass
    return kids


def _reap_nohang():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def kill_everything(isolated, child_pid):
    """Kill every process the job left behind. In a private PID namespace kill(-1) reaches exactly the
    sandbox's processes other than us and its init; outside one it would reach every process of this uid on
    the machine, so there we only kill the job's process group and our (subreaped) descendants."""
    if isolated:
        for _ in range(500):
            try:
                os.kill(-1, signal.SIGKILL)
            except OSError:
                break
            _reap_nohang()
            time.sleep(0.001)
        _reap_nohang()
        return
    if child_pid:
        try:
            os.killpg(child_pid, signal.SIGKILL)
        except OSError:
            pass
    for _ in range(500):
        kids = _children()
        if not kids:
            break
        for pid in kids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        _reap_nohang()
        time.sleep(0.001)
    _reap_nohang()


def _pidfd(pid):
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def wait_child(pid, deadline, control):
    """Wait for `pid` until `deadline`, watching the launcher for a stop.

    Returns (outcome, wait_status) with outcome 'exited', 'timeout' or 'stopped'; kills it unless it exited."""
    pidfd = _pidfd(pid)
    outcome = "exited"
    poller = select.poll()
    poller.register(control.fd, select.POLLIN)
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                return "exited", status
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                outcome = "timeout"
                break
            # without a pidfd, poll with a short nap; with one, sleep until the child exits
            wait_ms = max(1, int(remaining * 1000)) if pidfd is not None else 2
            events = poller.poll(wait_ms)
            if any(fd == control.fd for fd, _ in events) and control.stop_requested():
                outcome = "stopped"
                break
    finally:
        if pidfd is not None:
            os.close(pidfd)
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
    _, status = os.waitpid(pid, 0)
    return outcome, status


def set_limits(job, nproc, cpu_seconds):
    def lower(which, value):
        soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, value))

    if job.get("memory_bytes"):
        lower(resource.RLIMIT_AS, int(job["memory_bytes"]))
    cpu = int(cpu_seconds) + 2  # wall clock is the real limit; CPU time is a backstop for busy loops
    soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1 if hard == resource.RLIM_INFINITY else hard))
    lower(resource.RLIMIT_FSIZE, int(job["max_output_bytes"]))
    lower(resource.RLIMIT_CORE, 0)
    # memfd/tmpfs pages escape RLIMIT_AS; FSIZE caps each file, NOFILE caps how many can be held open.
    if job.get("nofile"):
        lower(resource.RLIMIT_NOFILE, int(job["nofile"]))
    if nproc:
        lower(resource.RLIMIT_NPROC, int(nproc))


def describe(exc):
    try:
        import traceback
        tb = exc.__traceback__  # start the traceback at the program's own frames, not the harness's
        while tb is not None and tb.tb_frame.f_code.co_filename != "<solution>":
            tb = tb.tb_next
        text = "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))
    except BaseException:
        text = type(exc).__name__
    return text[-ERR_TAIL:]


def signal_outcome(status):
    """(status, detail) for a child that died without saying why."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        if sig == signal.SIGXCPU:
            return "timeout", "CPU-time limit exceeded"
        if sig == signal.SIGXFSZ:
            return "output_limit", "output size limit exceeded"
        return "runtime_error", f"killed by signal {name}"
    code = os.WEXITSTATUS(status)
    if code == 121:
        return "output_limit", "output size limit exceeded"
    return "runtime_error", f"exit status {code} without a result"


def _child_stdio(in_fd, out_fd, err_fd, res_fd):
    """In a forked child: the program's fds 0-2 and the result fd 3; nothing else stays open."""
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    os.dup2(in_fd, 0)
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    os.dup2(res_fd, RESULT_FD)
    os.closerange(RESULT_FD + 1, _MAX_FD)  # the supervisor's channels and everything else
    sys.stdin = sys.__stdin__ = open(0, "r", encoding="utf-8", closefd=False)
    sys.stdout = sys.__stdout__ = open(1, "w", encoding="utf-8", closefd=False)
    sys.stderr = sys.__stderr__ = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False,
                                       buffering=1)
    if "random" in sys.modules:  # forked children would otherwise all share the supervisor's RNG state
        sys.modules["random"].seed()


# ---------------------------------------------------------------- strict: a fresh __main__ per test

def _strict_child(code, base_ns, test_input, job, nproc, fds):
    """Runs in the forked child: set up stdio and limits, exec the program as __main__, record the outcome."""
    try:
        _child_stdio(*fds)
        set_limits(job, nproc, job["timeout_s"])
        out = sys.stdout
        sys.argv = ["solution.py"]
        module = types.ModuleType("__main__")
        ns = module.__dict__
        ns.update(base_ns)
        ns["__name__"] = "__main__"
        ns["__builtins__"] = __builtins__
        if job["prelude"]:  # `from sys import *` bound the supervisor's streams; rebind to this test's
            ns["stdin"], ns["stdout"], ns["stderr"] = sys.stdin, sys.stdout, sys.stderr
        sys.modules["__main__"] = module
    except BaseException:
        os._exit(120)

    record = {"status": "ok", "detail": ""}
    functional = job["mode"] == "functional"
    dumps = json.dumps  # taken before the program runs (it could patch the json module)
    try:
        if functional:  # one JSON value per input line, parsed before the program can touch json
            args = [json.loads(line) for line in test_input.split("\n") if line.strip()]
        exec(code, ns)
        if functional:
            sol_cls = ns.get("Solution")
            target = getattr(sol_cls(), job["fn_name"]) if isinstance(sol_cls, type) else ns[job["fn_name"]]
            value = target(*args)
            try:
                if hasattr(sys, "set_int_max_str_digits"):
                    sys.set_int_max_str_digits(0)
                # JSON, not the object, leaves the sandbox: tuples become lists, and an object with a
                # rigged __eq__ cannot be serialized at all, so it can never compare equal outside.
                record["ret"] = dumps(value)
            except BaseException as exc:
                record = {"status": "bad_return",
                          "detail": f"return value is not JSON-serializable: {type(exc).__name__}: {exc}"[:500]}
    except SystemExit as exc:
        if functional:  # LiveCodeBench lets a stdin program exit early; a LeetCode method may not
            record = {"status": "runtime_error", "detail": f"SystemExit({exc.code!r})"}
    except MemoryError:
        record = {"status": "memory_limit", "detail": "MemoryError"}
    except OSError as exc:
        if exc.errno == errno.EFBIG:
            record = {"status": "output_limit", "detail": "output size limit exceeded"}
        else:
            record = {"status": "runtime_error", "detail": describe(exc)}
    except BaseException as exc:
        record = {"status": "runtime_error", "detail": describe(exc)}
    for stream in (out, sys.stdout):
        try:
            stream.flush()
        except OSError as exc:
            if exc.errno == errno.EFBIG and record["status"] == "ok":
                record = {"status": "output_limit", "detail": "output size limit exceeded"}
        except MemoryError:
            record = {"status": "memory_limit", "detail": "MemoryError"}
        except BaseException:
            pass
    try:
        write_all(RESULT_FD, dumps(record).encode())
    except OSError as exc:
        os._exit(121 if exc.errno == errno.EFBIG else 122)
    except BaseException:
        os._exit(122)
    os._exit(0)


def _strict_test(index, test_input, code, base_ns, job, ctx):
    functional = job["mode"] == "functional"
    cap = int(job["max_output_bytes"])
    in_fd = anon_file("stdin")
    write_all(in_fd, test_input.encode("utf-8", "surrogatepass"))
    os.lseek(in_fd, 0, os.SEEK_SET)
    out_fd = os.open(os.devnull, os.O_WRONLY) if functional else anon_file("stdout")
    err_fd, res_fd = anon_file("stderr"), anon_file("result")
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _strict_child(code, base_ns, test_input, job, ctx["nproc"], (in_fd, out_fd, err_fd, res_fd))
        os._exit(123)  # not reached
    outcome, status = wait_child(pid, start + float(job["timeout_s"]), ctx["control"])
    wall = time.monotonic() - start
    kill_everything(ctx["isolated"], pid)  # also stops leftovers from writing into the files we read next

    stdout = b"" if functional else read_file(out_fd, cap + 1)
    stderr = read_file(err_fd, ERR_TAIL, tail=True).decode("utf-8", "replace")
    try:
        record = json.loads(read_file(res_fd, cap + 65536) or b"null")
    except ValueError:
        record = None
    for fd in (in_fd, out_fd, err_fd, res_fd):
        os.close(fd)

    frame = {"t": "test", "i": index, "status": "ok", "out": "", "err": stderr, "detail": "",
             "wall_s": round(wall, 4)}
    if outcome == "stopped":
        return None
    if not isinstance(record, dict):
        record = None
    if outcome == "timeout":
        frame.update(status="timeout", detail=f"wall-clock limit {job['timeout_s']} s exceeded")
    elif os.WIFSIGNALED(status) or record is None:
        if not functional and record is None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
            pass  # os._exit(0) from a stdin program: fine, like a real interpreter
        else:
            frame["status"], frame["detail"] = signal_outcome(status)
    else:
        frame.update(status=str(record.get("status", "runtime_error")), detail=str(record.get("detail", "")))
        if frame["status"] == "ok" and functional:
            ret = record.get("ret")
            if not isinstance(ret, str):
                frame.update(status="runtime_error", detail="no return value recorded")
            else:
                frame["out"] = ret
    if frame["status"] == "ok" and not functional:
        if len(stdout) > cap:
            frame.update(status="output_limit", detail="output size limit exceeded")
        else:
            frame["out"] = stdout.decode("utf-8", "replace")
    return frame


_strict_base_ns = None


def strict_job(job, code, ctx, out):
    global _strict_base_ns
    base_ns = {}
    if job.get("prelude"):
        if _strict_base_ns is None:
            _strict_base_ns = {}
            exec(compile(LCB_PRELUDE, "<prelude>", "exec"), _strict_base_ns)
        base_ns = _strict_base_ns
    for index, test_input in enumerate(job["inputs"]):
        frame = _strict_test(index, test_input, code, base_ns, job, ctx)
        if frame is None:  # the launcher said stop
            return
        out(frame)
        wipe(ctx["scratch"])
        if frame["status"] != "ok":  # like LiveCodeBench: stop at the first failure
            return


# ---------------------------------------------------------------- lcb: all tests in one module

class _LcbStdinBuffer:
    """`sys.stdin.buffer` as the runner fakes it: read() is the whole input, readline() always line one."""

    def __init__(self, text):
        self._text = text

    def read(self, *args):
        return self._text.encode("utf-8")

    def readline(self, *args):
        return self._text.encode("utf-8").split(b"\n")[0] + b"\n"


class _LcbStdin:
    """`sys.stdin` as the runner fakes it: readline() reads on, read() is always the whole input,
    readlines() is the input split on newlines (no newline kept); other attributes go to a StringIO.
    It is not iterable (no __iter__), so `for line in sys.stdin` raises TypeError there."""

    def __init__(self, text):
        import io
        self._text = text
        self._stream = io.StringIO(text)
        self.buffer = _LcbStdinBuffer(text)

    def read(self, *args):
        return self._text

    def readline(self, *args):
        return self._stream.readline(*args)

    def readlines(self, *args):
        return self._text.split("\n")

    def __getattr__(self, name):
        return getattr(self._stream, name)


# What LiveCodeBench's reliability_guard sets to None (it sets no memory limit: the caller passes none).
_GUARD_NONE = {
    "os": ("kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork", "forkpty",
           "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown", "chmod", "chown",
           "chroot", "lchflags", "lchmod", "lchown", "getcwd", "chdir"),
    "shutil": ("rmtree", "move", "chown"),
    "subprocess": ("Popen",),
    "builtins": ("quit", "help"),
}
_GUARD_MODULES = ("ipdb", "joblib", "resource", "psutil", "tkinter")


def reliability_guard():
    import builtins
    import faulthandler
    import shutil
    import subprocess
    faulthandler.disable()
    os.environ["OMP_NUM_THREADS"] = "1"
    modules = {"os": os, "shutil": shutil, "subprocess": subprocess, "builtins": builtins}
    for module_name, names in _GUARD_NONE.items():
        for name in names:
            setattr(modules[module_name], name, None)
    for name in _GUARD_MODULES:
        sys.modules[name] = None


class _Unencodable(Exception):
    pass


def _encoder():
    """encode(value) -> a JSON-able tree that keeps the types `==` cares about; built before the program runs
    so that nothing it patches is used. Lists are JSON arrays; every other container is a one-key object."""
    t_int, t_float, t_str, t_bool, t_list, t_tuple, t_dict, t_set, t_frozen = (
        int, float, str, bool, list, tuple, dict, set, frozenset)
    as_int, as_float, as_str = int.__int__, float.__float__, str.__str__
    is_inst, typ, getattr_ = isinstance, type, getattr

    def encode(v, depth=0):
        if depth > 2000:
            raise _Unencodable("nested too deeply")
        t = typ(v)
        if v is None or t is t_bool or t is t_str or t is t_int or t is t_float:
            return v
        if t is t_list:
            return [encode(x, depth + 1) for x in v]
        if t is t_tuple or (is_inst(v, t_tuple) and not is_inst(v, t_list)):
            return {"tuple": [encode(x, depth + 1) for x in t_tuple.__iter__(v)]}
        if is_inst(v, t_dict):
            return {"dict": [[encode(k, depth + 1), encode(x, depth + 1)] for k, x in t_dict.items(v)]}
        if is_inst(v, t_frozen):
            return {"frozenset": [encode(x, depth + 1) for x in t_frozen.__iter__(v)]}
        if is_inst(v, t_set):
            return {"set": [encode(x, depth + 1) for x in t_set.__iter__(v)]}
        if is_inst(v, t_bool):
            return bool(v)
        if is_inst(v, t_int):
            return as_int(v)
        if is_inst(v, t_float):
            return as_float(v)
        if is_inst(v, t_str):
            return as_str(v)
        if is_inst(v, t_list):
            return [encode(x, depth + 1) for x in t_list.__iter__(v)]
        if getattr_(t, "__module__", "") == "numpy":  # numpy scalars compare like Python numbers
            if getattr_(v, "shape", None) == ():
                return encode(v.item(), depth + 1)
            if t.__name__ == "ndarray":
                return {"ndarray": encode(v.tolist(), depth + 1)}
        raise _Unencodable(f"{t.__name__} is not a plain value")

    return encode


class _LcbRunner:
    """Runs in the one forked child of an lcb job: the module, then every test in order."""

    def __init__(self, job, code):
        import io
        import builtins
        self.job, self.code = job, code
        self.functional = job["mode"] == "functional"
        self.string_io, self.builtins = io.StringIO, builtins
        self.dumps, self.write_all, self.now, self.exit = json.dumps, write_all, time.monotonic, os._exit
        self.encode = _encoder()

    def send(self, record):
        try:
            self.write_all(RESULT_FD, (self.dumps(record, ensure_ascii=False) + "\n").encode("utf-8", "replace"))
        except BaseException:
            self.exit(122)

    def load(self):
        """The module and the callable, as the runner's compile step makes them; None after reporting why."""
        module = types.ModuleType("tmp_sol", "")
        try:
            exec(self.code, module.__dict__)
            target = module.Solution() if self.job.get("solution_class") else module
            name = self.job["fn_name"] if self.functional else "wrapped_function"
            method = getattr(target, name, None)
            if method is None:
                self.send({"status": "runtime_error", "detail": f"no function {name!r} in the program"})
                return None
            if self.functional:  # every test's arguments, parsed before any test runs (as the runner does)
                self.args = [[json.loads(line) for line in text.split("\n")] for text in self.job["inputs"]]
        except MemoryError:
            self.send({"status": "memory_limit", "detail": "MemoryError"})
            return None
        except BaseException as exc:
            self.send({"status": "runtime_error", "detail": describe(exc)})
            return None
        self.send({"t": "loaded"})
        return method

    def run_stdin_test(self, method, text):
        """One stdin test with the runner's fakes, patched in the order the runner patches them: read,
        readlines, readline on the *current* sys.stdin (which `from sys import *` bound as `stdin`), then
        sys.stdin replaced, then builtins.open; stdout captured in a StringIO whose close() takes an arg."""
        lines = iter(text.split("\n"))
        real_stdin, real_stdout, real_open = sys.stdin, sys.stdout, self.builtins.open
        patched = {"read": lambda *a: text, "readlines": lambda *a: text.split("\n"),
                   "readline": lambda *a: next(lines)}
        for name, fn in patched.items():
            setattr(real_stdin, name, fn)
        captured = self.string_io()
        captured.close = lambda x: 1
        sys.stdin, sys.stdout = _LcbStdin(text), captured
        self.builtins.open = self._lazy_mock_open(text)
        try:
            method()
            record = {"status": "ok"}
        except SystemExit:
            record = {"status": "ok"}
        except MemoryError:
            record = {"status": "memory_limit", "detail": "MemoryError"}
        except BaseException as exc:
            record = {"status": "runtime_error", "detail": describe(exc)}
        finally:
            self.builtins.open, sys.stdin, sys.stdout = real_open, real_stdin, real_stdout
            for name in patched:
                try:
                    delattr(real_stdin, name)
                except AttributeError:
                    pass
        if record["status"] == "ok":
            record["out"] = captured.getvalue()
        return record

    def _lazy_mock_open(self, text):
        """builtins.open as the runner patches it (a mock_open of the input), built on first use: building a
        mock costs milliseconds per test, and only code that looks up builtins.open at call time sees it (the
        program's own `open` is the real one, bound by the prelude's `from builtins import *`)."""
        made = []

        def mocked_open(*args, **kwargs):
            if not made:
                from unittest.mock import mock_open  # rarely needed: imported (~30 ms) only then
                made.append(mock_open(read_data=text))
            return made[0](*args, **kwargs)

        return mocked_open

    def run_functional_test(self, method, args):
        try:
            value = method(*args)
        except MemoryError:
            return {"status": "memory_limit", "detail": "MemoryError"}
        except BaseException as exc:
            return {"status": "runtime_error", "detail": describe(exc)}
        if isinstance(value, tuple):  # the runner turns only a top-level tuple into a list
            value = list(value)
        previous = sys.get_int_max_str_digits()
        try:
            sys.set_int_max_str_digits(0)
            return {"status": "ok", "out": self.dumps(self.encode(value))}
        except (_Unencodable, RecursionError, ValueError, TypeError) as exc:
            return {"status": "bad_return", "detail": f"return value is not a plain value: {exc}"[:500]}
        finally:
            sys.set_int_max_str_digits(previous)

    def run(self):
        method = self.load()
        if method is None:
            return
        for i, text in enumerate(self.job["inputs"]):
            if self.functional:
                record = self.run_functional_test(method, self.args[i])
            else:
                record = self.run_stdin_test(method, text)
            self.send(record)
            if record["status"] != "ok":
                return


def _lcb_child(job, code, res_fd, err_fd, ctx):
    try:
        devnull = os.open(os.devnull, os.O_RDWR)
        _child_stdio(devnull, devnull, err_fd, res_fd)
        n = len(job["inputs"])
        set_limits(job, ctx["nproc"], (float(job["timeout_s"]) + 1) * (n + 1) + 5)
        sys.set_int_max_str_digits(LCB_INT_MAX_STR_DIGITS)
        sys.argv = ["lcb_runner"]
        runner = _LcbRunner(job, code)
        reliability_guard()
    except BaseException:
        os._exit(120)
    runner.run()
    runner.exit(0)


class _FrameReader:
    """Lines from the lcb child's result pipe (untrusted: anything the program wrote there too)."""

    def __init__(self, fd, cap):
        self.fd, self.cap, self.buf, self.eof = fd, cap, bytearray(), False

    def read(self):
        """Records read so far; a record {"status": "protocol"} for garbage or oversize."""
        try:
            data = os.read(self.fd, 1 << 20)
        except BlockingIOError:
            return []
        if not data:
            self.eof = True
        self.buf += data
        records = []
        while True:
            nl = self.buf.find(b"\n")
            if nl < 0:
                break
            line = bytes(self.buf[:nl])
            del self.buf[:nl + 1]
            try:
                rec = json.loads(line)
            except ValueError:
                rec = None
            records.append(rec if isinstance(rec, dict) else {"status": "protocol"})
        if len(self.buf) > self.cap:
            records.append({"status": "output_limit", "detail": "output size limit exceeded"})
            self.buf.clear()
        return records


def _lcb_frame(index, record, wall, cap):
    status = record.get("status")
    frame = {"t": "test", "i": index, "status": "ok", "out": "", "err": "", "detail": "",
             "wall_s": round(wall, 4)}
    if status == "protocol":
        frame.update(status="runtime_error", detail="unreadable result from the program's process")
    elif status != "ok":
        frame.update(status=str(status), detail=str(record.get("detail", ""))[:ERR_TAIL])
    elif not isinstance(record.get("out"), str):
        frame.update(status="runtime_error", detail="no output recorded")
    elif len(record["out"]) > cap:
        frame.update(status="output_limit", detail="output size limit exceeded")
    else:
        frame["out"] = record["out"]
    return frame


def lcb_job(job, code, ctx, out):
    """Fork one child that runs all tests; forward its records as frames; enforce per-step deadlines."""
    n, timeout = len(job["inputs"]), float(job["timeout_s"])
    cap = int(job["max_output_bytes"])
    r, w = os.pipe()
    err_fd = anon_file("stderr")
    pid = os.fork()
    if pid == 0:
        os.close(r)
        _lcb_child(job, code, w, err_fd, ctx)
        os._exit(123)  # not reached
    os.close(w)
    os.set_blocking(r, False)
    reader, pidfd = _FrameReader(r, 6 * cap + (1 << 16)), _pidfd(pid)
    state = {"sent": 0, "last": time.monotonic(), "ended": False, "loaded": False}
    state["deadline"] = state["last"] + timeout  # loading the module gets a time limit too, as in the runner

    def forward(records):
        for rec in records:
            now = time.monotonic()
            if rec.get("t") == "loaded" and not state["loaded"]:  # once: it must not extend its own deadline
                state["loaded"], state["last"], state["deadline"] = True, now, now + timeout
                continue
            frame = _lcb_frame(state["sent"], rec, now - state["last"], cap)
            out(frame)
            state["sent"] += 1
            state["last"], state["deadline"] = now, now + timeout
            if frame["status"] != "ok" or state["sent"] == n:
                state["ended"] = True
                return

    poller = select.poll()
    for fd in (r, ctx["control"].fd) + ((pidfd,) if pidfd is not None else ()):
        poller.register(fd, select.POLLIN)
    exit_status = None
    try:
        while not state["ended"]:
            remaining = state["deadline"] - time.monotonic()
            if remaining <= 0:
                out({"t": "test", "i": state["sent"], "status": "timeout", "out": "", "err": "",
                     "detail": f"wall-clock limit {timeout} s exceeded", "wall_s": round(timeout, 4)})
                return
            ready = {fd for fd, _ in poller.poll(max(1, int(remaining * 1000)) if pidfd is not None else 5)}
            if ctx["control"].fd in ready and ctx["control"].stop_requested():
                return
            if not reader.eof:
                forward(reader.read())
                if reader.eof:
                    poller.unregister(r)
            if state["ended"]:
                return
            done, status = os.waitpid(pid, os.WNOHANG)
            if done != pid:
                continue
            exit_status = status
            while not reader.eof and not state["ended"]:  # what it wrote before dying still counts
                records = reader.read()
                if not records:
                    break
                forward(records)
            if not state["ended"]:
                status_, detail = signal_outcome(exit_status)
                err = read_file(err_fd, ERR_TAIL, tail=True).decode("utf-8", "replace")
                out({"t": "test", "i": state["sent"], "status": status_, "out": "", "err": err,
                     "detail": "the program's process ended before finishing its tests: " + detail,
                     "wall_s": round(time.monotonic() - state["last"], 4)})
            return
    finally:
        for fd in (r, err_fd) + ((pidfd,) if pidfd is not None else ()):
            os.close(fd)
        if exit_status is None:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (OSError, ChildProcessError):
                pass


# ---------------------------------------------------------------- the serving loop

def wipe(top, device=None):
    """Empty a scratch directory, so files cannot carry state from one test or job to the next. Stays on the
    scratch's own filesystem: a mount inside it -- the interpreter, bound read-only into the sandbox's /tmp when
    the project lives under /tmp (a clone made with mktemp) -- is not the program's to leave files in, and
    scanning a virtualenv's ~90,000 files after every job made grading minutes slower per model."""
    if not top:
        return
    try:
        device = os.lstat(top).st_dev if device is None else device
        entries = list(os.scandir(top))
    except OSError:
        return
    for entry in entries:
        try:
            if os.lstat(entry.path).st_dev != device:
                continue
            if entry.is_dir(follow_symlinks=False):
                wipe(entry.path, device)
                os.rmdir(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            pass


def _pidns_is_private(host_pidns):
    try:
        return bool(host_pidns) and os.readlink("/proc/self/ns/pid") != host_pidns
    except OSError:
        return False


def _fallback_nproc(nproc):
    """RLIMIT_NPROC counts every process of the uid machine-wide; outside a sandbox add what already runs."""
    if not nproc or os.getuid() == 0:
        return 0  # root ignores RLIMIT_NPROC anyway
    uid, running = os.getuid(), 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                running += os.stat(f"/proc/{entry}").st_uid == uid
            except OSError:
                pass
    return running + int(nproc)


def _preimport(names):
    for name in names or ():  # chosen by the launcher: stdlib and a few safe packages only
        try:
            __import__(name)
        except BaseException:
            pass


def _lock_down():
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        # Not dumpable: the program (same uid) cannot open /proc/<us>/fd/* or ptrace us to write into the
        # frame channel or our memory.
        libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE
        return libc
    except Exception:
        return None


def serve_job(job, ctx, channel):
    job_id = job.get("id")

    def out(frame):
        frame["job"] = job_id
        emit(channel, frame)

    try:
        code = compile(job["code"], "<solution>", "exec")
    except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError) as exc:
        out({"t": "fatal", "status": "syntax_error", "detail": f"{type(exc).__name__}: {exc}"})
        return
    _preimport(job.get("preimport"))
    ctx["nproc"] = job.get("nproc") if ctx["isolated"] else _fallback_nproc(job.get("nproc"))
    if job.get("semantics") == "lcb":
        lcb_job(job, code, ctx, out)
    else:
        strict_job(job, code, ctx, out)


def main(argv):
    cfg = json.loads(argv[0])
    if cfg.get("uid") is not None:  # root launcher: become the pool uid before touching any job
        os.setgroups([])
        os.setresgid(cfg["gid"], cfg["gid"], cfg["gid"])
        os.setresuid(cfg["uid"], cfg["uid"], cfg["uid"])
    devnull = os.open(os.devnull, os.O_RDWR)
    control, channel = Control(os.dup(0)), os.dup(1)  # fds 0/1 become /dev/null: nothing else lands there
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    isolated = _pidns_is_private(cfg.get("host_pidns"))
    libc = _lock_down()
    if libc is not None and not isolated:  # orphans (double-forked daemons) get reparented to us, to be killed
        libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    scratch = cfg.get("scratch")
    if scratch and os.path.realpath(os.getcwd()) != os.path.realpath(scratch):
        scratch = None  # only ever wipe the directory the launcher made for us
    _preimport(PRELUDE_MODULES + _WARM_MODULES + tuple(cfg.get("warm") or ()))
    ctx = {"control": control, "isolated": isolated, "scratch": scratch}
    emit(channel, {"t": "ready"})
    while True:
        job = control.next_job()
        if job is None:
            return
        try:
            serve_job(job, ctx, channel)
        except Exception as exc:  # e.g. fork failing under a fork bomb's leftovers: this job fails, we go on
            emit(channel, {"t": "fatal", "job": job.get("id"), "status": "runtime_error",
                           "detail": f"the sandbox could not run the program: {type(exc).__name__}: {exc}"})
        finally:
            kill_everything(isolated, 0)
            wipe(scratch)
            if isolated:
                wipe("/dev/shm")
        emit(channel, {"t": "done", "job": job.get("id")})


if __name__ == "__main__" and len(sys.argv) > 2 and sys.argv[1] == "--serve":
    main(sys.argv[2:])
