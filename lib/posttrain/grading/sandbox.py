"""Process isolation for graded programs: the bubblewrap launcher and a pool of warm sandboxes.

Model-written code is hostile by default (it loops, floods, forks, deletes, phones home, kills its parent),
so every program runs inside a bubblewrap sandbox, and everything that decides a verdict stays outside it.
The program that runs *inside* is ``posttrain.grading.sandbox_supervisor`` (sent as source text to
``python -I -c``, so it needs no file access there); this module starts it, sends it jobs, reads its frames
with an overall deadline, and kills the whole sandbox when a job overruns or the sandbox misbehaves.
Comparison against expected outputs happens in the caller (``posttrain.grading.code``).

Warm sandboxes: starting bubblewrap, an interpreter and LiveCodeBench's stdlib prelude costs ~40 ms, more
than most programs take to run, so a started sandbox is kept and reused: its supervisor forks a fresh child
for every job (and every test, under strict semantics) from a state no program has touched, and after each
job kills every process the job left and empties /tmp and /dev/shm. A sandbox whose job ran past its
deadline, or whose supervisor died or spoke out of turn, is killed and never reused. Idle sandboxes are
closed at exit (or by ``close_idle()``).

Sandbox layout (bubblewrap): read-only ``/``; private ``/tmp``, ``/proc``, ``/dev``; ``/home``, ``/root``,
``/run``, ``/mnt``... and the grader's working directory hidden under empty tmpfs, with only the Python
installation bound back read-only; new PID, network (loopback only, nothing listening), IPC and UTS
namespaces; an empty environment. When the grader runs as root, the supervisor drops to an unprivileged uid
(one per sandbox, from a per-process pool) before reading any job (root is exempt from RLIMIT_NPROC, and a
real non-root uid cannot read root-only files); otherwise bubblewrap runs unprivileged in a new user
namespace. Each program process gets RLIMIT_AS (memory), RLIMIT_CPU, RLIMIT_FSIZE (caps stdout too: it is a
file), RLIMIT_NPROC (bounds fork bombs) and RLIMIT_CORE=0; ``kill(-1)`` after each job is scoped to the
sandbox's PID namespace, so daemons cannot outlive the job that spawned them.

Fallback (no bubblewrap, or ``POSTTRAIN_SANDBOX=none``): the same supervisor, run directly with rlimits, a
new session, an empty environment and a temporary cwd; it becomes a child subreaper to kill escaped daemons.
That is partial isolation (the filesystem, network and other processes of the same user are reachable) and
a loud warning says so once.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import queue
import re
import selectors
import signal
import shutil
import subprocess
import sys
import tempfile
import threading
import time
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


class SandboxUnavailable(RuntimeError):
    """bubblewrap was required (POSTTRAIN_SANDBOX=bwrap or sandbox='bwrap') but does not work here."""


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




def supervisor_source() -> str:
    """The text of the in-sandbox supervisor program, as `python -c` runs it inside the sandbox."""
    with _lock:
        if "source" not in _supervisor_cache:
            path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_supervisor.py")
            with open(path, encoding="utf-8") as f:
                _supervisor_cache["source"] = f.read()
        return _supervisor_cache["source"]


_supervisor_cache: dict = {}


class RunResult:
    """What came back from one job."""

    __slots__ = ("frames", "fatal", "done", "timed_out", "stopped", "returncode", "stderr", "error", "mode",
                 "elapsed_s")

    def __init__(self, mode: str):
        self.frames, self.fatal, self.done, self.timed_out, self.stopped = [], None, False, False, False
        self.returncode, self.stderr, self.error, self.mode, self.elapsed_s = None, "", "", mode, 0.0


class SandboxBroken(RuntimeError):
    """The sandbox process died or broke the protocol; it is closed and must not be reused."""


def _host_pidns() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


_STARTUP_TIMEOUT_S = 60.0
_STOP_GRACE_S = 10.0  # after a stop, how long the supervisor gets to clean up and say done


class _Spawner:
    """Starts sandbox processes from one long-lived thread.

    bubblewrap's --die-with-parent (PR_SET_PDEATHSIG) fires when the *thread* that started it exits, not the
    process; sandboxes started from a batch's worker threads would be killed when the batch ends. Starting
    them all from this thread, which lives as long as the process, keeps warm sandboxes alive between batches
    and still kills them when the grader dies."""

    def __init__(self):
        self.pid, self.requests, self.thread = None, None, None

    def popen(self, argv: list, **kwargs) -> subprocess.Popen:
        with _lock:
            if self.pid != os.getpid() or self.thread is None or not self.thread.is_alive():
                self.pid, self.requests = os.getpid(), queue.Queue()
                self.thread = threading.Thread(target=self._serve, args=(self.requests,), daemon=True,
                                               name="posttrain-sandbox-spawner")
                self.thread.start()
            requests = self.requests
        done = {"event": threading.Event()}
        requests.put((argv, kwargs, done))
        done["event"].wait()
        if "error" in done:
            raise done["error"]
        return done["proc"]

    @staticmethod
    def _serve(requests) -> None:
        while True:
            argv, kwargs, done = requests.get()
            try:
                done["proc"] = subprocess.Popen(argv, **kwargs)
            except BaseException as exc:  # handed to the caller
                done["error"] = exc
            done["event"].set()


_spawn = _Spawner().popen


class WarmSandbox:
    """One running supervisor (inside bubblewrap, or the fallback) that serves one job at a time."""

    def __init__(self, mode: str, python: str):
        self.mode, self.python, self.key = mode, python, _pool_key(mode, python)
        self.proc, self.uid, self.cwd, self.info = None, None, None, {"fd": None, "buf": bytearray(), "pidfd": None}
        self.buf, self.err, self.jobs = bytearray(), bytearray(), 0
        self.broken = False
        try:
            self._start()
            self._await({"ready"}, time.monotonic() + _STARTUP_TIMEOUT_S, None, None)
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        cfg = {"host_pidns": _host_pidns() if self.mode == "bwrap" else "", "scratch": "/tmp"}
        info_w = None
        if self.mode == "bwrap":
            privileged = os.geteuid() == 0
            argv = bwrap_argv(self.python, privileged)
            env, cwd = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, None
            if privileged:
                self.uid = _uid_pool.acquire()
                cfg.update(uid=self.uid, gid=self.uid)
            info_r, info_w = os.pipe()  # bwrap reports the sandbox init's host pid here; see _kill
            self.info["fd"] = info_r
            argv += ["--info-fd", str(info_w), "--", self.python]
        else:
            env = dict(_SANDBOX_ENV)
            self.cwd = cwd = tempfile.mkdtemp(prefix="posttrain-grade-")
            env["HOME"] = cfg["scratch"] = cwd
            argv = [self.python]
        argv += ["-I", "-c", supervisor_source(), "--serve", json.dumps(cfg)]
        try:
            self.proc = _spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=env, cwd=cwd, start_new_session=True, close_fds=True,
                               pass_fds=(info_w,) if info_w is not None else ())
        finally:
            if info_w is not None:
                os.close(info_w)
        for stream in (self.proc.stdout, self.proc.stderr):
            os.set_blocking(stream.fileno(), False)

    def _await(self, kinds: set, deadline: float, job_id, on_frame, result: RunResult | None = None) -> dict:
        """Read frames until one of `kinds` (for this job) arrives; test frames go to `on_frame`.

        Raises TimeoutError at the deadline and SandboxBroken when the sandbox dies or speaks out of turn."""
        sel = selectors.DefaultSelector()
        out_fd, err_fd = self.proc.stdout.fileno(), self.proc.stderr.fileno()
        sel.register(out_fd, selectors.EVENT_READ)
        sel.register(err_fd, selectors.EVENT_READ)
        if self.info["fd"] is not None and self.info["pidfd"] is None:
            sel.register(self.info["fd"], selectors.EVENT_READ)
        try:
            while True:
                frame = self._next_frame()
                if frame is not None:
                    kind = frame.get("t")
                    if kind in ("test", "fatal", "done") and frame.get("job") != job_id:
                        continue  # a late frame of a job we already stopped
                    if kind in kinds:
                        return frame
                    if kind == "test" and on_frame is not None:
                        on_frame(frame)
                    elif kind == "fatal" and result is not None:
                        result.fatal = frame
                    elif kind not in ("test", "fatal"):
                        raise SandboxBroken(f"unexpected frame {kind!r} from the sandbox")
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                for key, _ in sel.select(min(remaining, 1.0)):
                    try:
                        data = os.read(key.fd, 1 << 16)
                    except BlockingIOError:
                        continue
                    if key.fd == self.info["fd"]:
                        self.info["buf"] += data
                        _take_info(self.info)
                        if not data or self.info["pidfd"] is not None:
                            sel.unregister(key.fd)
                    elif key.fd == err_fd:
                        self.err += data
                        del self.err[:-4096]
                        if not data:
                            sel.unregister(err_fd)
                    elif not data:
                        raise SandboxBroken("the sandbox exited")
                    else:
                        self.buf += data
                if len(self.buf) > self.frame_cap:
                    raise SandboxBroken("oversized frame from the sandbox")
        finally:
            sel.close()

    frame_cap = 6 * (64 << 20) + (1 << 16)

    def _next_frame(self) -> dict | None:
        nl = self.buf.find(b"\n")
        if nl < 0:
            return None
        line = bytes(self.buf[:nl])
        del self.buf[:nl + 1]
        try:
            frame = json.loads(line)
        except ValueError:
            raise SandboxBroken("malformed frame from the sandbox") from None
        if not isinstance(frame, dict):
            raise SandboxBroken("malformed frame from the sandbox")
        return frame

    def run(self, job: dict, on_frame, overall_timeout_s: float) -> RunResult:
        """Send one job; collect its frames until done. `on_frame(frame) -> bool`: False stops the job."""
        result = RunResult(self.mode)
        start = time.monotonic()
        self.jobs += 1
        job_id = self.jobs
        self.frame_cap = 6 * int(job["max_output_bytes"]) + (1 << 16)

        def take(frame: dict) -> None:
            if result.stopped:
                return
            if frame.get("i") != len(result.frames):
                raise SandboxBroken("out-of-order frame from the sandbox")
            result.frames.append(frame)
            try:
                keep_going = on_frame is None or on_frame(frame)
            except Exception as exc:  # a malformed frame must not crash the grader
                result.error = f"bad frame from the sandbox: {type(exc).__name__}: {exc}"
                keep_going = False
            if not keep_going:
                result.stopped = True
                self._send({"t": "stop", "job": job_id})

        try:
            self._send(dict(job, t="job", id=job_id))
            self._await({"done"}, start + overall_timeout_s, job_id, take, result)
            result.done = not result.stopped
        except TimeoutError:
            if result.stopped:  # it was told to stop and did not finish cleaning up in time
                self.close()
            else:
                result.timed_out = True
                self.close()
        except (SandboxBroken, OSError) as exc:
            self.close()
            if not result.stopped and not result.error:
                why = str(exc) if isinstance(exc, SandboxBroken) else f"sandbox I/O failed: {exc}"
                why += f" (exit status {self.proc.returncode})"
                tail = self.err.decode("utf-8", "replace").strip()[-500:]
                result.error = f"{why}: {tail}" if tail else why
        result.stderr = self.err.decode("utf-8", "replace")
        result.returncode = self.proc.returncode if self.proc is not None else None
        result.elapsed_s = time.monotonic() - start
        return result

    def _send(self, message: dict) -> None:
        data = (json.dumps(message) + "\n").encode("utf-8", "surrogatepass")
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (OSError, ValueError) as exc:
            raise SandboxBroken(f"could not send to the sandbox: {exc}") from None

    def _drain_err(self) -> None:
        """Keep the last words of a dead supervisor (its stderr) for the error message."""
        try:
            while True:
                data = os.read(self.proc.stderr.fileno(), 1 << 16)
                if not data:
                    return
                self.err += data
                del self.err[:-4096]
        except (OSError, ValueError):
            return

    @property
    def alive(self) -> bool:
        return not self.broken and self.proc is not None and self.proc.poll() is None

    def close(self) -> None:
        """Kill the whole sandbox (every process in it) and free what it held."""
        self.broken = True
        if self.proc is not None:
            _kill(self.proc, self.info)
            self._drain_err()
            for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                try:
                    stream.close()
                except (OSError, ValueError):
                    pass
        for key in ("fd", "pidfd"):
            if self.info[key] is not None:
                try:
                    os.close(self.info[key])
                except OSError:
                    pass
                self.info[key] = None
        if self.uid is not None:
            _uid_pool.release(self.uid)
            self.uid = None
        if self.cwd is not None:
            shutil.rmtree(self.cwd, ignore_errors=True)
            self.cwd = None


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
    m = re.search(rb'"child-pid"\s*:\s*(\d+)\D', bytes(info["buf"]))  # bwrap may write the rest later
    if m:
        try:
            info["pidfd"] = os.pidfd_open(int(m.group(1)))
        except (AttributeError, OSError):
            pass


def _kill(proc, info: dict) -> None:
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


# ---------------------------------------------------------------- the pool of warm sandboxes

_MAX_IDLE_PER_KEY = 64
_idle: dict = {}
_idle_pid = os.getpid()


def _pool_key(mode: str, python: str) -> tuple:
    # A sandbox hides the grader's cwd of the moment it started, so a new cwd needs new sandboxes.
    return (mode, python, os.path.realpath(os.getcwd()), os.environ.get(HIDE_ENV_VAR, ""))


def _acquire(mode: str, python: str) -> WarmSandbox:
    global _idle, _idle_pid
    key = _pool_key(mode, python)
    with _lock:
        if _idle_pid != os.getpid():  # a forked copy of the grader must not share its parent's sandboxes
            _idle, _idle_pid = {}, os.getpid()
        stack = _idle.get(key, [])
        while stack:
            box = stack.pop()
            if box.alive:
                return box
    return WarmSandbox(mode, python)


def _release(box: WarmSandbox) -> None:
    if box.alive and _idle_pid == os.getpid():
        with _lock:
            stack = _idle.setdefault(box.key, [])
            if len(stack) < _MAX_IDLE_PER_KEY:
                stack.append(box)
                return
    box.close()


def idle_count(mode: str | None = None) -> int:
    """How many warm sandboxes ('bwrap' or 'none' ones, or all) wait in this process's pool."""
    with _lock:
        if _idle_pid != os.getpid():
            return 0
        return sum(len(v) for k, v in _idle.items() if mode is None or k[0] == mode)


def close_idle() -> None:
    """Close every warm sandbox of this process (they are closed at exit anyway)."""
    with _lock:
        boxes = [b for v in _idle.values() for b in v] if _idle_pid == os.getpid() else []
        _idle.clear()
    for box in boxes:
        box.close()


atexit.register(close_idle)


# ---------------------------------------------------------------- probing and running

_PROBE_JOB = {"semantics": "strict", "mode": "stdin",
              "code": "import sys\nprint(sys.stdin.buffer.readline().decode().strip()[::-1])",
              "fn_name": None, "inputs": ["krow"], "timeout_s": 10.0, "memory_bytes": 1 << 30,
              "max_output_bytes": 1 << 16, "nproc": 32, "nofile": 64,
              "prelude": True}  # the prelude imports stdlib modules after the uid drop: checks they are readable


def _probe(python: str) -> tuple:
    """Run one tiny program through bubblewrap; (True, '') when the whole path works."""
    if shutil.which("bwrap") is None:
        return False, "bubblewrap (bwrap) is not installed"
    try:
        box = WarmSandbox("bwrap", python)
    except Exception as exc:  # layout query failed, bwrap refused, etc.
        return False, f"{type(exc).__name__}: {exc}"
    res = box.run(_PROBE_JOB, None, 60.0)
    if res.frames and res.frames[0].get("out", "").strip() == "work" and res.done:
        _release(box)
        return True, ""
    box.close()
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
    """Run one program over its test inputs in a warm sandbox.

    `job`: semantics ('lcb' | 'strict'), mode ('stdin' | 'functional'), code, fn_name, inputs (list of str),
    timeout_s (per test), memory_bytes, max_output_bytes, nproc, nofile, prelude (bool), preimport, and for
    lcb solution_class (bool). `on_frame(frame) -> bool` sees each test's frame as it arrives; returning
    False stops the job at once (used to stop at the first wrong answer).
    """
    python = python or sys.executable
    mode = resolve_mode(sandbox, python)
    try:
        box = _acquire(mode, python)
    except Exception as exc:
        result = RunResult(mode)
        result.error = f"could not start the sandbox: {type(exc).__name__}: {exc}"
        return result
    try:
        return box.run(job, on_frame, overall_timeout_s)
    finally:
        _release(box)
