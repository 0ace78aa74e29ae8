"""The math grader's worker pool, kept importable here: it lives in `grading/math/worker.py`."""
from .math.worker import WorkerError, WorkerPool, WorkerTimeout, serve

__all__ = ["WorkerPool", "WorkerTimeout", "WorkerError", "serve"]
