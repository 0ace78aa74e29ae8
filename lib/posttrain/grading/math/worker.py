r"""Persistent worker processes that run the math grader's rules under a hard per-request timeout.

Why processes: sympy can hang on an adversarial answer (``9^{9^{9^{9}}}``) and Math-Verify's SIGALRM timeout only
works on the main thread. Each worker is a plain ``python -c`` child on pipes (not fork/spawn of the caller, so it
never inherits torch or CUDA state). It loads the rules module from its file inside a private package, so the
``posttrain`` package (and torch) is never imported there, answers one JSON request per line and is killed when a
request overruns its timeout; a replacement starts in the background. POSIX only (``select`` on pipes).

This module knows nothing about math: the pool is told which module file and which handler function to serve
(request dict -> reply dict); a handler that raises is answered with an error verdict's fields
(``correct=False, status="error", reason=...``).
"""
from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

__all__ = ["WorkerPool", "WorkerTimeout", "WorkerError", "serve"]

_WORKER_START_TIMEOUT_S = 120.0
_MEMORY_LIMIT_BYTES = 4 * 1024 ** 3  # a runaway expression should fail with MemoryError, not take the machine down


class WorkerTimeout(Exception):
    """The request overran its timeout; the worker that held it has been killed."""


class WorkerError(RuntimeError):
    """A worker could not start, or died while handling a request."""


# ------------------------------------------------------------------------------------------------------------
# Inside the worker process
# ------------------------------------------------------------------------------------------------------------
def serve(handler: Callable[[dict], dict], warmup: Iterable[dict] = ()) -> None:
    """Worker loop: one JSON request per stdin line, one JSON reply per line on the original stdout."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything a library prints goes to stderr, never into the protocol stream
    import logging
    for name in ("math_verify", "latex2sympy2_extended"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if soft == resource.RLIM_INFINITY or soft > _MEMORY_LIMIT_BYTES:
            resource.setrlimit(resource.RLIMIT_AS, (_MEMORY_LIMIT_BYTES, hard))
    except (ImportError, ValueError, OSError):
        pass
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for request in warmup:  # pay the imports and the parser's first call before declaring readiness
        handler(request)
    proto.write("READY\n")
    for line in sys.stdin:
        try:
            reply = handler(json.loads(line))
        except Exception as e:  # noqa: BLE001 - any failure is one request's "error", the worker lives on
            reply = {"correct": False, "status": "error", "reason": f"{type(e).__name__}: {str(e)[:300]}"}
        proto.write(json.dumps(reply) + "\n")


# The child imports the rules module (and this one) inside a private package whose path is their folders, so
# relative imports between the grader's files work while no posttrain package __init__ ever runs.
_BOOTSTRAP = """\
import importlib, sys, types
rules_dir, module, handler, warmup, worker_dir = sys.argv[1:6]
pkg = types.ModuleType("_posttrain_grading_worker")
pkg.__path__ = [rules_dir] if rules_dir == worker_dir else [rules_dir, worker_dir]
sys.modules[pkg.__name__] = pkg
rules = importlib.import_module(pkg.__name__ + "." + module)
worker = importlib.import_module(pkg.__name__ + "." + {worker_module!r})
worker.serve(getattr(rules, handler), getattr(rules, warmup, ()))
""".format(worker_module=Path(__file__).stem)


# ------------------------------------------------------------------------------------------------------------
# In the caller's process
# ------------------------------------------------------------------------------------------------------------
class _Worker:
    """One worker subprocess and its pipes."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None,
                                     close_fds=True, start_new_session=True)
        self._buf = b""
        try:
            line = self._readline(time.monotonic() + _WORKER_START_TIMEOUT_S)
        except WorkerError:
            line = "<exited>"
        if line != "READY":
            self.kill()
            raise WorkerError(f"grading worker did not start (got {line!r})")

    def _readline(self, deadline: float) -> str | None:
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                return None
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise WorkerError("grading worker exited")
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode()

    def request(self, request: dict, timeout_s: float) -> dict | None:
        """The worker's reply, or None on timeout (the caller must then kill this worker)."""
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise WorkerError(f"grading worker pipe closed: {e}") from e
        line = self._readline(time.monotonic() + timeout_s)
        return None if line is None else json.loads(line)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except Exception:  # noqa: BLE001 - already gone
            pass
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except Exception:  # noqa: BLE001
                pass


class WorkerPool:
    """Workers serving `handler` of the module file `module_path`, shared by all threads of this process.

    Each request holds one worker exclusively; a request that overruns its timeout kills its worker.
    `warmup` names a list of requests in that module that each worker runs before it declares itself ready.
    """

    def __init__(self, module_path: str | os.PathLike, handler: str, warmup: str = "WARMUP_REQUESTS") -> None:
        path = Path(module_path).resolve()
        self._argv = [sys.executable, "-c", _BOOTSTRAP, str(path.parent), path.stem, handler, warmup,
                      str(Path(__file__).resolve().parent)]
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._count = 0
        self._pid = os.getpid()
        self.max_workers = max(2, os.cpu_count() or 1)
        atexit.register(self.shutdown)

    def call(self, request: dict, timeout_s: float, want_workers: int | None = None) -> dict:
        """The handler's reply to `request`. Raises WorkerTimeout after `timeout_s`, WorkerError on a crash."""
        worker = self._acquire(want_workers)
        healthy = False
        try:
            reply = worker.request(request, timeout_s)
            if reply is None:
                raise WorkerTimeout(f"exceeded {timeout_s:g} s; worker killed")
            healthy = True
            return reply
        finally:
            self._release(worker, healthy)

    def _check_fork(self) -> None:
        if os.getpid() != self._pid:  # a forked child must not share its parent's pipes
            self._idle, self._count, self._pid = [], 0, os.getpid()

    def _acquire(self, want: int | None = None) -> _Worker:
        with self._cond:
            self._check_fork()
            if want:
                self.max_workers = max(self.max_workers, want)
            while True:
                while self._idle:
                    w = self._idle.pop()
                    if w.alive():
                        return w
                    w.kill()  # died while idle (e.g. killed from outside): drop it
                    self._count -= 1
                if self._count < self.max_workers:
                    self._count += 1
                    break
                self._cond.wait()
        try:
            return _Worker(self._argv)
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise

    def _release(self, worker: _Worker, healthy: bool) -> None:
        if healthy and worker.alive():
            with self._cond:
                self._idle.append(worker)
                self._cond.notify()
            return
        worker.kill()
        with self._cond:
            self._count -= 1
            self._cond.notify()
        # Start the replacement now, so the next item does not pay the start-up inside its own wait.
        threading.Thread(target=self._prespawn, daemon=True).start()

    def _prespawn(self) -> None:
        with self._cond:
            if self._count >= self.max_workers or self._idle:
                return
            self._count += 1
        try:
            w = _Worker(self._argv)
        except BaseException:  # noqa: BLE001 - the next acquire will try again and report
            with self._cond:
                self._count -= 1
                self._cond.notify()
            return
        with self._cond:
            self._idle.append(w)
            self._cond.notify()

    def shutdown(self) -> None:
        """Kill the idle workers (busy ones are killed by their request's end or timeout)."""
        with self._cond:
            if os.getpid() != self._pid:
                return
            idle, self._idle = self._idle, []
            self._count -= len(idle)
        for w in idle:
            w.kill()
