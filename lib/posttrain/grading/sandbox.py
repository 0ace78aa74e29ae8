"""Process isolation for graded programs: a bubblewrap sandbox and the supervisor that runs inside it.

Why a separate module: model-written code is hostile by default (it loops, floods, forks, deletes, phones
home, kills its parent), so every program runs in a fresh bubblewrap sandbox, and everything that decides a
verdict stays outside it. This module has two halves:

* the **supervisor** (between the ``supervisor: begin/end`` markers): a small stdlib-only program that runs
  *inside* the sandbox. It is sent to ``python -I -c`` as source text, so it needs no file access. It reads
  one job (the program and the test inputs -- never the expected outputs) from stdin, compiles the program
  once, then for each test forks a child that execs the program in a fresh ``__main__`` with stdin/stdout
  on anonymous in-memory files, rlimits set and a wall-clock deadline, and streams one JSON frame per test
  (status + captured output) back on its stdout. Forking per test from a pristine supervisor gives every test
  a fresh interpreter state at ~1 ms per test instead of ~50 ms for a new interpreter.
* the **launcher** (grader side): builds the bubblewrap command line, probes once whether it works, runs the
  supervisor, reads frames with an overall deadline, and kills the whole sandbox when told to stop.
  Comparison against expected outputs happens in the caller (``posttrain.grading.code``).

Sandbox layout (bubblewrap): read-only ``/``; private ``/tmp``, ``/proc``, ``/dev``; ``/home``, ``/root``,
``/run``, ``/mnt``... and the grader's working directory hidden under empty tmpfs, with only the Python
installation bound back read-only; new PID, network (loopback only, nothing listening), IPC and UTS
namespaces; an empty environment. When the grader runs as root, the supervisor drops to an unprivileged uid
from a per-process pool before reading the job (root is exempt from RLIMIT_NPROC, and a real non-root uid
cannot read root-only files); otherwise bubblewrap runs unprivileged in a new user namespace. Inside, each
test child gets RLIMIT_AS (memory), RLIMIT_CPU, RLIMIT_FSIZE (caps stdout too: it is a file), RLIMIT_NPROC
(bounds fork bombs) and RLIMIT_CORE=0. After each test everything but the supervisor is SIGKILLed
(``kill(-1)`` is scoped to the sandbox's PID namespace), so daemons cannot outlive the test that spawned them.

Fallback (no bubblewrap, or ``POSTTRAIN_SANDBOX=none``): same supervisor, run directly with rlimits, a new
session, an empty environment and a temporary cwd; it becomes a child subreaper to kill escaped daemons.
That is partial isolation (the filesystem, network and other processes of the same user are reachable) and
a loud warning says so once.
"""
# ---- supervisor: begin ----
# Everything between the markers is sent verbatim to `python -I -c` inside the sandbox: stdlib imports only,
# no references to anything outside the markers.
import errno
import json
import os
import resource
import select
import signal
import sys
import time
import types

# LiveCodeBench grades every program with this prelude in front (star-imports of these stdlib modules, the
# modules themselves, and a recursion limit of 50000), so programs that forget `import sys` still run.
_PRELUDE_MODULES = ("string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math", "random",
                    "statistics", "itertools", "functools", "operator", "io", "sys", "json", "builtins",
                    "typing")
LCB_PRELUDE = ("".join(f"from {m} import *\n" for m in _PRELUDE_MODULES)
               + "".join(f"import {m}\n" for m in _PRELUDE_MODULES if m not in ("builtins", "typing"))
               + "sys.setrecursionlimit(50000)\n")

_RESULT_FD = 3        # the child's status record goes here (fds 0-2 are the program's stdio)
_ERR_TAIL = 2000      # characters of stderr / traceback kept per failing test


def _sv_write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _sv_read_all(fd, limit=None):
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


def _sv_anon_file(name):
    """An unnamed in-memory file (memfd): seekable, so `sys.stdin.buffer.read()` and friends behave like a
    redirected file, and bounded by RLIMIT_FSIZE when used for output. Falls back to an unlinked temp file."""
    try:
        return os.memfd_create(name)
    except (AttributeError, OSError):
        import tempfile
        fd, path = tempfile.mkstemp(prefix=name)
        os.unlink(path)
        return fd


def _sv_emit(fd, frame):
    _sv_write_all(fd, (json.dumps(frame, ensure_ascii=False) + "\n").encode("utf-8", "replace"))


def _sv_children():
    """Direct children of this process (the supervisor is a subreaper in fallback mode, so orphans land here)."""
    kids = []
    try:
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/children") as f:
                kids.extend(int(p) for p in f.read().split())
    except OSError:
        pass
    return kids


def _sv_reap_nohang():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _sv_kill_everything(isolated, child_pid):
    """Kill every process the test left behind. In a private PID namespace kill(-1) reaches exactly the
    sandbox's processes other than us and its init; outside one it would reach every process of this uid on
    the machine, so there we only kill our process group and our (subreaped) descendants."""
    if isolated:
        for _ in range(500):
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                break
            except OSError:
                break
            _sv_reap_nohang()
            time.sleep(0.001)
        _sv_reap_nohang()
        return
    try:
        os.killpg(child_pid, signal.SIGKILL)
    except OSError:
        pass
    for _ in range(500):
        kids = _sv_children()
        if not kids:
            break
        for pid in kids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        _sv_reap_nohang()
        time.sleep(0.001)
    _sv_reap_nohang()


def _sv_wait(pid, deadline):
    """Wait for `pid` until `deadline`; returns (timed_out, wait_status). Kills it on timeout."""
    pidfd = None
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pass
    if pidfd is not None:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or poller.poll(max(1, int(remaining * 1000))):
                break
        os.close(pidfd)
    else:  # no pidfd (old kernel): poll with a growing sleep
        nap = 0.0005
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                return False, status
            time.sleep(min(nap, max(0.0, deadline - time.monotonic())))
            nap = min(nap * 2, 0.01)
    done, status = os.waitpid(pid, os.WNOHANG)
    if done == pid:
        return False, status
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
    _, status = os.waitpid(pid, 0)
    return True, status


def _sv_set_limits(job, nproc):
    def lower(which, value):
        soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, value))

    if job.get("memory_bytes"):
        lower(resource.RLIMIT_AS, int(job["memory_bytes"]))
    cpu = int(job["timeout_s"]) + 2  # wall clock is the real limit; CPU time is a backstop for busy loops
    soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1 if hard == resource.RLIM_INFINITY else hard))
    lower(resource.RLIMIT_FSIZE, int(job["max_output_bytes"]))
    lower(resource.RLIMIT_CORE, 0)
    # memfd/tmpfs pages escape RLIMIT_AS; FSIZE caps each file, NOFILE caps how many can be held open.
    if job.get("nofile"):
        lower(resource.RLIMIT_NOFILE, int(job["nofile"]))
    if nproc:
        lower(resource.RLIMIT_NPROC, int(nproc))


def _sv_describe(exc):
    try:
        import traceback
        tb = exc.__traceback__  # start the traceback at the program's own frames, not the harness's
        while tb is not None and tb.tb_frame.f_code.co_filename != "<solution>":
            tb = tb.tb_next
        text = "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))
    except BaseException:
        text = type(exc).__name__
    return text[-_ERR_TAIL:]


def _sv_child(code, base_ns, test_input, job, nproc, fds):
    """Runs in the forked child: set up stdio and limits, exec the program as __main__, record the outcome."""
    in_fd, out_fd, err_fd, res_fd = fds
    try:
        try:
            os.setpgid(0, 0)
        except OSError:
            pass
        os.dup2(in_fd, 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        os.dup2(res_fd, _RESULT_FD)
        os.closerange(_RESULT_FD + 1, 1 << 20)  # the supervisor's frame channel and everything else
        _sv_set_limits(job, nproc)
        sys.stdin = sys.__stdin__ = open(0, "r", encoding="utf-8", closefd=False)
        out = sys.stdout = sys.__stdout__ = open(1, "w", encoding="utf-8", closefd=False)
        sys.stderr = sys.__stderr__ = open(2, "w", encoding="utf-8", errors="backslashreplace",
                                           closefd=False, buffering=1)
        sys.argv = ["solution.py"]
        if "random" in sys.modules:  # forked children would otherwise all share the supervisor's RNG state
            sys.modules["random"].seed()
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
            fn_name = job["fn_name"]
            sol_cls = ns.get("Solution")
            target = getattr(sol_cls(), fn_name) if isinstance(sol_cls, type) else ns[fn_name]
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
            record = {"status": "runtime_error", "detail": _sv_describe(exc)}
    except BaseException as exc:
        record = {"status": "runtime_error", "detail": _sv_describe(exc)}
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
        _sv_write_all(_RESULT_FD, dumps(record).encode())
    except OSError as exc:
        os._exit(121 if exc.errno == errno.EFBIG else 122)
    except BaseException:
        os._exit(122)
    os._exit(0)


def _sv_run_test(index, test_input, code, base_ns, job, nproc, isolated):
    functional = job["mode"] == "functional"
    cap = int(job["max_output_bytes"])
    in_fd = _sv_anon_file("stdin")
    _sv_write_all(in_fd, test_input.encode("utf-8", "surrogatepass"))
    os.lseek(in_fd, 0, os.SEEK_SET)
    out_fd = os.open(os.devnull, os.O_WRONLY) if functional else _sv_anon_file("stdout")
    err_fd = _sv_anon_file("stderr")
    res_fd = _sv_anon_file("result")
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        _sv_child(code, base_ns, test_input, job, nproc, (in_fd, out_fd, err_fd, res_fd))
        os._exit(123)  # not reached
    timed_out, status = _sv_wait(pid, start + float(job["timeout_s"]))
    wall = time.monotonic() - start
    _sv_kill_everything(isolated, pid)  # also stops leftovers from writing into the files we read next

    def read(fd, limit, tail=False):
        size = os.fstat(fd).st_size
        offset = max(0, size - limit) if tail else 0
        os.lseek(fd, offset, os.SEEK_SET)
        return _sv_read_all(fd, limit)

    stdout = b"" if functional else read(out_fd, cap + 1)
    stderr = read(err_fd, _ERR_TAIL, tail=True).decode("utf-8", "replace")
    try:
        record = json.loads(read(res_fd, cap + 65536) or b"null")
    except ValueError:
        record = None
    for fd in (in_fd, out_fd, err_fd, res_fd):
        os.close(fd)

    frame = {"t": "test", "i": index, "status": "ok", "out": "", "err": stderr, "detail": "",
             "wall_s": round(wall, 4)}
    if not isinstance(record, dict):
        record = None
    if timed_out:
        frame.update(status="timeout", detail=f"wall-clock limit {job['timeout_s']} s exceeded")
    elif os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        name = signal.Signals(sig).name if sig in signal.Signals._value2member_map_ else str(sig)
        if sig == signal.SIGXCPU:
            frame.update(status="timeout", detail="CPU-time limit exceeded")
        elif sig == signal.SIGXFSZ:
            frame.update(status="output_limit", detail="output size limit exceeded")
        else:
            frame.update(status="runtime_error", detail=f"killed by signal {name}")
    elif record is not None:
        frame.update(status=str(record.get("status", "runtime_error")), detail=str(record.get("detail", "")))
        if frame["status"] == "ok" and functional:
            ret = record.get("ret")
            if not isinstance(ret, str):
                frame.update(status="runtime_error", detail="no return value recorded")
            else:
                frame["out"] = ret
    else:
        code_ = os.WEXITSTATUS(status)
        if code_ == 121:
            frame.update(status="output_limit", detail="output size limit exceeded")
        elif code_ == 0 and not functional:  # os._exit(0) from the program: fine, like a real interpreter
            pass
        else:
            frame.update(status="runtime_error", detail=f"exit status {code_} without a result record")
    if frame["status"] == "ok" and not functional:
        if len(stdout) > cap:
            frame.update(status="output_limit", detail="output size limit exceeded")
        else:
            frame["out"] = stdout.decode("utf-8", "replace")
    return frame


def _sv_wipe(top):
    """Empty the scratch directory between tests, so files cannot carry state from one test to the next."""
    try:
        entries = list(os.scandir(top))
    except OSError:
        return
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                _sv_wipe(entry.path)
                os.rmdir(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            pass


def _sv_pidns_is_private(host_pidns):
    try:
        return bool(host_pidns) and os.readlink("/proc/self/ns/pid") != host_pidns
    except OSError:
        return False


def _sv_fallback_nproc(nproc):
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


def supervisor_main(argv):
    cfg = json.loads(argv[0])
    if cfg.get("uid") is not None:  # root launcher: become the pool uid before touching the job
        os.setgroups([])
        os.setresgid(cfg["gid"], cfg["gid"], cfg["gid"])
        os.setresuid(cfg["uid"], cfg["uid"], cfg["uid"])
    job = json.loads(_sv_read_all(0))
    devnull = os.open(os.devnull, os.O_RDWR)
    channel = os.dup(1)  # frames go here; fd 0/1 become /dev/null so nothing else can land in the channel
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    isolated = _sv_pidns_is_private(cfg.get("host_pidns"))
    nproc = job.get("nproc") if isolated else _sv_fallback_nproc(job.get("nproc"))
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        # Not dumpable: the program (same uid) cannot open /proc/<us>/fd/* or ptrace us to write into the
        # frame channel. Forged frames could only claim outputs anyway; this just closes the door.
        libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE
        if not isolated:  # orphans (double-forked daemons) get reparented to us, so we can kill them
            libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except Exception:
        pass
    try:
        code = compile(job["code"], "<solution>", "exec")
    except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError) as exc:
        _sv_emit(channel, {"t": "fatal", "status": "syntax_error", "detail": f"{type(exc).__name__}: {exc}"})
        return
    scratch = cfg.get("scratch")
    if scratch and os.path.realpath(os.getcwd()) != os.path.realpath(scratch):
        scratch = None  # only ever wipe the directory the launcher made for us
    base_ns = {}
    if job.get("prelude"):
        exec(compile(LCB_PRELUDE, "<prelude>", "exec"), base_ns)
    for name in job.get("preimport") or ():  # chosen by the launcher: stdlib and a few safe packages only
        try:
            __import__(name)
        except BaseException:
            pass
    for index, test_input in enumerate(job["inputs"]):
        frame = _sv_run_test(index, test_input, code, base_ns, job, nproc, isolated)
        _sv_emit(channel, frame)
        if scratch:
            _sv_wipe(scratch)
        if frame["status"] != "ok":  # like LiveCodeBench: stop at the first failure
            break
    _sv_emit(channel, {"t": "done"})


if __name__ == "__main__" and len(sys.argv) > 2 and sys.argv[1] == "--supervise":
    supervisor_main(sys.argv[2:])
# ---- supervisor: end ----

# ---- launcher (grader side) ----
import logging
import shutil
import subprocess
import tempfile
import threading
import warnings

log = logging.getLogger(__name__)

ENV_VAR = "POSTTRAIN_SANDBOX"          # auto | bwrap | none
HIDE_ENV_VAR = "POSTTRAIN_SANDBOX_HIDE"  # extra host paths to hide, separated by ':'
DEFAULT_HIDDEN = ("/home", "/root", "/run", "/tmp", "/var/tmp", "/mnt", "/media", "/srv")
_SYSTEM_DIRS = {"/", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/var",
                "/proc", "/sys", "/dev", "/boot"}
_SANDBOX_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
                "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                "PYTHONIOENCODING": "utf-8"}
_UID_POOL_BASE = 1_900_000_000
_TMPFS_BYTES = 256 << 20  # the sandbox's /tmp (also its cwd)
_SHM_BYTES = 64 << 20     # /dev/shm, for multiprocessing's semaphores

_lock = threading.Lock()
_probe_cache: dict = {}
_layout_cache: dict = {}
_warned = False
_supervisor_src = None


class SandboxUnavailable(RuntimeError):
    """bubblewrap was required (POSTTRAIN_SANDBOX=bwrap or sandbox='bwrap') but does not work here."""


def supervisor_source() -> str:
    """The supervisor half of this file, as the text `python -c` runs inside the sandbox."""
    global _supervisor_src
    if _supervisor_src is None:
        with open(__file__, encoding="utf-8") as f:
            text = f.read()
        start = text.index("# ---- supervisor: begin ----")
        end = text.index("# ---- supervisor: end ----")
        _supervisor_src = text[start:end]
    return _supervisor_src


class _UidPool:
    """Distinct unprivileged uids for concurrent sandboxes when the grader is root: RLIMIT_NPROC is counted
    per uid, so sharing one uid would let one program's processes eat another's budget."""

    def __init__(self, size: int = 256):
        self.size = size
        self._cond = threading.Condition()
        self._reset()

    def _reset(self) -> None:
        # Keyed by pid, so a forked copy of the grader (e.g. a data-loader worker) gets its own range.
        self._pid = os.getpid()
        self._free = list(range(self.size))
        self.base = _UID_POOL_BASE + (self._pid % 65536) * self.size

    def acquire(self) -> int:
        with self._cond:
            if self._pid != os.getpid():
                self._reset()
            while not self._free:
                self._cond.wait()
            return self.base + self._free.pop()

    def release(self, uid: int) -> None:
        with self._cond:
            if self._pid == os.getpid() and self.base <= uid < self.base + self.size:
                self._free.append(uid - self.base)
                self._cond.notify()


_uid_pool = _UidPool()


def _python_layout(python: str) -> dict:
    """Where `python` keeps its stdlib and packages (asked once, outside the sandbox)."""
    with _lock:
        if python in _layout_cache:
            return _layout_cache[python]
    script = ("import json, os, site, sys, sysconfig\n"
              "paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,\n"
              "         os.path.dirname(sys.executable)]\n"
              "paths += [p for p in sys.path if p] + list(site.getsitepackages())\n"
              "paths += [v for k, v in sysconfig.get_paths().items()\n"
              "          if k in ('stdlib', 'platstdlib', 'purelib', 'platlib')]\n"
              "print(json.dumps({'executable': sys.executable, 'paths': paths}))\n")
    out = subprocess.run([python, "-I", "-c", script], capture_output=True, text=True, timeout=60, check=True)
    layout = json.loads(out.stdout)
    with _lock:
        _layout_cache[python] = layout
    return layout


def _is_under(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _hidden_dirs() -> list:
    extra = [p for p in os.environ.get(HIDE_ENV_VAR, "").split(":") if p]
    candidates = list(DEFAULT_HIDDEN) + extra
    cwd = os.path.realpath(os.getcwd())
    if not any(_is_under(cwd, d) for d in _SYSTEM_DIRS - {"/"}) and cwd != "/":
        candidates.append(cwd)  # the grader's project dir may hold tokens (.env, caches)
    hidden = []
    for path in sorted({os.path.realpath(p) for p in candidates}, key=len):
        if path in _SYSTEM_DIRS or not os.path.isdir(path) or os.path.islink(path):
            continue
        if any(_is_under(path, h) for h in hidden):
            continue
        hidden.append(path)
    return hidden


def bwrap_argv(python: str, privileged: bool) -> list:
    """The bubblewrap command line (without the program) for this interpreter."""
    bwrap = shutil.which("bwrap")
    hidden = _hidden_dirs()
    exposed = []
    for p in _python_layout(python)["paths"]:
        for q in {os.path.abspath(p), os.path.realpath(p)}:
            if os.path.isfile(q):  # e.g. a zip on sys.path
                q = os.path.dirname(q)
            if os.path.isdir(q) and any(_is_under(q, h) for h in hidden):
                exposed.append(q)
    exposed = sorted(set(exposed), key=len)
    exposed = [p for i, p in enumerate(exposed) if not any(_is_under(p, q) for q in exposed[:i])]

    argv = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    # Every writable tmpfs gets a size: tmpfs pages are not counted by RLIMIT_AS, and under an unprivileged
    # user namespace the sandbox user owns these mounts.
    for h in hidden:
        if h == "/tmp":
            continue
        argv += ["--perms", "0755", "--size", str(1 << 20), "--tmpfs", h]
    argv += ["--perms", "1777", "--size", str(_TMPFS_BYTES), "--tmpfs", "/tmp"]
    made = set(hidden)
    for p in exposed:  # bring the interpreter back, read-only, through the hidden directories
        mask = next(h for h in hidden if _is_under(p, h))
        parts = p[len(mask):].strip("/").split("/")[:-1]
        cur = mask
        for part in parts:
            cur = cur.rstrip("/") + "/" + part
            if cur not in made:  # bubblewrap would create these 0700, unreadable to the sandbox uid
                argv += ["--perms", "0755", "--dir", cur]
                made.add(cur)
        argv += ["--ro-bind", p, p]
    # Then make the masks and /dev read-only (under a user namespace the sandbox user owns them).
    for h in hidden:
        if h != "/tmp":
            argv += ["--remount-ro", h]
    argv += ["--remount-ro", "/dev", "--perms", "1777", "--size", str(_SHM_BYTES), "--tmpfs", "/dev/shm"]
    argv += ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
             "--hostname", "sandbox", "--die-with-parent", "--new-session", "--clearenv", "--chdir", "/tmp"]
    for k, v in _SANDBOX_ENV.items():
        argv += ["--setenv", k, v]
    if privileged:
        # No user namespace: the supervisor starts as real root (only CAP_SETUID/SETGID kept) and drops to a
        # real unprivileged uid, which RLIMIT_NPROC binds and root-only files refuse.
        argv += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        argv += ["--unshare-user", "--disable-userns"]
    return argv


class RunResult:
    """What came back from one supervisor run."""

    __slots__ = ("frames", "fatal", "done", "timed_out", "stopped", "returncode", "stderr", "error", "mode",
                 "elapsed_s")

    def __init__(self, mode: str):
        self.frames, self.fatal, self.done, self.timed_out, self.stopped = [], None, False, False, False
        self.returncode, self.stderr, self.error, self.mode, self.elapsed_s = None, "", "", mode, 0.0


def _host_pidns() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _launch(job: dict, mode: str, python: str, on_frame, overall_timeout_s: float) -> RunResult:
    result = RunResult(mode)
    start = time.monotonic()
    cfg = {"host_pidns": _host_pidns() if mode == "bwrap" else "", "scratch": "/tmp"}
    uid = cwd = proc = info_r = info_w = None
    info = {"fd": None, "buf": bytearray(), "pidfd": None}
    if mode == "bwrap":
        privileged = os.geteuid() == 0
        argv = bwrap_argv(python, privileged)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    else:
        privileged = False
        argv = []
        env = dict(_SANDBOX_ENV)
    payload = json.dumps(job).encode("utf-8", "surrogatepass")
    frame_cap = 6 * int(job["max_output_bytes"]) + (1 << 16)
    try:
        if mode == "bwrap":
            if privileged:
                uid = _uid_pool.acquire()
                cfg.update(uid=uid, gid=uid)
            info_r, info_w = os.pipe()  # bwrap reports the sandbox init's host pid here; see _stop
            info["fd"] = info_r
            argv += ["--info-fd", str(info_w), "--", python]
        else:
            cwd = tempfile.mkdtemp(prefix="posttrain-grade-")
            env["HOME"] = cfg["scratch"] = cwd
            argv = [python]
        argv += ["-I", "-c", supervisor_source(), "--supervise", json.dumps(cfg)]
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env, cwd=cwd, start_new_session=True, close_fds=True,
                                pass_fds=(info_w,) if info_w is not None else ())
        if info_w is not None:
            os.close(info_w)
            info_w = None
        writer = threading.Thread(target=_feed, args=(proc.stdin, payload), daemon=True)
        writer.start()
        _read_frames(proc, result, on_frame, start + overall_timeout_s, frame_cap, info)
    except OSError as exc:
        result.error = f"could not start the sandbox: {exc}"
    finally:
        if proc is not None:
            _stop(proc, info)
            result.returncode = proc.returncode
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                try:
                    stream.close()
                except OSError:
                    pass
        for fd in (info_r, info_w, info["pidfd"]):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        if uid is not None:
            _uid_pool.release(uid)
        if cwd is not None:
            shutil.rmtree(cwd, ignore_errors=True)
    result.elapsed_s = time.monotonic() - start
    return result


def _take_info(info: dict, final: bool = False) -> None:
    """Parse bwrap's --info-fd JSON ({"child-pid": N}) and pin that pid with a pidfd (no pid-reuse races)."""
    if info["fd"] is None or info["pidfd"] is not None:
        return
    if final:  # drain whatever is there without blocking
        os.set_blocking(info["fd"], False)
        try:
            while True:
                chunk = os.read(info["fd"], 4096)
                if not chunk:
                    break
                info["buf"] += chunk
        except (BlockingIOError, OSError):
            pass
    import re
    m = re.search(rb'"child-pid"\s*:\s*(\d+)\D', bytes(info["buf"]))  # bwrap may write the rest later
    if m:
        try:
            info["pidfd"] = os.pidfd_open(int(m.group(1)))
        except (AttributeError, OSError):
            pass


def _stop(proc, info: dict) -> None:
    """Make sure nothing of the sandbox is left when we return.

    Killing bwrap itself is not enough: its --die-with-parent signal reaches the sandbox's init
    asynchronously, so processes could outlive this call for a moment. Killing the sandbox's init instead
    makes the kernel kill and reap every process in its PID namespace before init exits, and bwrap exits
    only after that; so waiting for bwrap waits for the whole tree."""
    if proc.poll() is not None:
        return
    _take_info(info, final=True)
    if info["pidfd"] is not None:
        try:
            signal.pidfd_send_signal(info["pidfd"], signal.SIGKILL)
            proc.wait(timeout=10)
            return
        except (OSError, subprocess.TimeoutExpired):
            pass
    try:  # fallback mode (or no pid from bwrap): the launcher leads its own process group
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    proc.wait()


def _feed(stream, payload: bytes) -> None:
    try:
        stream.write(payload)
        stream.close()
    except (OSError, ValueError):  # the sandbox died or was killed before reading everything
        pass


def _read_frames(proc, result: RunResult, on_frame, deadline: float, frame_cap: int, info: dict) -> None:
    import selectors
    sel = selectors.DefaultSelector()
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    sel.register(out_fd, selectors.EVENT_READ)
    sel.register(err_fd, selectors.EVENT_READ)
    if info["fd"] is not None:
        sel.register(info["fd"], selectors.EVENT_READ)
    buf, err = bytearray(), bytearray()
    try:
        while sel.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                result.timed_out = True
                return
            for key, _ in sel.select(min(remaining, 1.0)):
                data = os.read(key.fd, 1 << 16)
                if key.fd == info["fd"]:
                    info["buf"] += data
                    _take_info(info)
                    if not data or info["pidfd"] is not None:
                        sel.unregister(key.fd)
                    continue
                if not data:
                    sel.unregister(key.fd)
                    continue
                if key.fd == err_fd:
                    err += data
                    del err[:-4096]
                    continue
                buf += data
                while True:
                    nl = buf.find(b"\n")
                    if nl < 0:
                        break
                    line = bytes(buf[:nl])
                    del buf[:nl + 1]
                    try:
                        frame = json.loads(line)
                    except ValueError:
                        result.error = "malformed frame from the sandbox"
                        return
                    kind = frame.get("t") if isinstance(frame, dict) else None
                    if kind == "test":
                        if frame.get("i") != len(result.frames):
                            result.error = "out-of-order frame from the sandbox"
                            return
                        result.frames.append(frame)
                        try:
                            keep_going = on_frame is None or on_frame(frame)
                        except Exception as exc:  # a malformed frame must not crash the grader
                            result.error = f"bad frame from the sandbox: {type(exc).__name__}: {exc}"
                            return
                        if not keep_going:
                            result.stopped = True
                            return
                    elif kind == "fatal":
                        result.fatal = frame
                    elif kind == "done":
                        result.done = True
                    else:
                        result.error = "unknown frame from the sandbox"
                        return
                if len(buf) > frame_cap:
                    result.error = "oversized frame from the sandbox"
                    return
    finally:
        sel.close()
        result.stderr = err.decode("utf-8", "replace")


def _probe(python: str) -> tuple:
    """Run one tiny program through bubblewrap; (True, '') when the whole path works."""
    if shutil.which("bwrap") is None:
        return False, "bubblewrap (bwrap) is not installed"
    job = {"mode": "stdin", "code": "import sys\nprint(sys.stdin.buffer.readline().decode().strip()[::-1])",
           "fn_name": None, "inputs": ["krow"], "timeout_s": 10.0, "memory_bytes": 1 << 30,
           "max_output_bytes": 1 << 16, "nproc": 32, "nofile": 64,
           "prelude": True}  # the prelude imports stdlib modules after the uid drop: checks they are readable
    try:
        res = _launch(job, "bwrap", python, None, 60.0)
    except Exception as exc:  # layout query failed, etc.
        return False, f"{type(exc).__name__}: {exc}"
    if res.frames and res.frames[0].get("out", "").strip() == "work" and res.done:
        return True, ""
    why = res.error or (res.frames[0].get("detail") if res.frames else "") or res.stderr.strip()
    return False, f"bubblewrap probe failed (rc={res.returncode}): {why[:500]}"


def resolve_mode(requested: str | None = None, python: str | None = None) -> str:
    """'bwrap' or 'none'. `requested` (else $POSTTRAIN_SANDBOX, else 'auto'): 'auto' uses bubblewrap when a
    one-time probe passes and otherwise falls back with a loud warning; 'bwrap' raises SandboxUnavailable
    instead of falling back; 'none' forces the fallback (for tests, or machines known to lack bwrap)."""
    global _warned
    requested = (requested or os.environ.get(ENV_VAR) or "auto").lower()
    if requested in ("none", "fallback", "off"):
        return "none"
    if requested not in ("auto", "bwrap"):
        raise ValueError(f"sandbox must be 'auto', 'bwrap' or 'none', not {requested!r}")
    python = python or sys.executable
    with _lock:
        cached = _probe_cache.get(python)
    if cached is None:
        cached = _probe(python)
        with _lock:
            _probe_cache[python] = cached
    ok, why = cached
    if ok:
        return "bwrap"
    if requested == "bwrap":
        raise SandboxUnavailable(why)
    with _lock:
        first, _warned = not _warned, True
    if first:
        msg = (f"posttrain.grading: bubblewrap sandbox unavailable ({why}); graded programs run with rlimits, "
               "a new session, an empty environment and a temp cwd only -- PARTIAL ISOLATION: they can read "
               "and write your files, use the network and signal your processes. Install bubblewrap.")
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
        log.warning(msg)
    return "none"


def run_job(job: dict, *, sandbox: str | None = None, python: str | None = None, on_frame=None,
            overall_timeout_s: float = 60.0) -> RunResult:
    """Run one program over its test inputs in the sandbox.

    `job`: mode ('stdin' | 'functional'), code, fn_name, inputs (list of str), timeout_s (per test),
    memory_bytes, max_output_bytes, nproc, prelude (bool). `on_frame(frame) -> bool` sees each test's frame
    as it arrives; returning False kills the sandbox at once (used to stop at the first wrong answer).
    """
    python = python or sys.executable
    mode = resolve_mode(sandbox, python)
    return _launch(job, mode, python, on_frame, overall_timeout_s)
