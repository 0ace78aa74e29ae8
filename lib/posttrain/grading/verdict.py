"""The one shape every grader returns, so evaluation and the report never branch on the kind of benchmark."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Verdict:
    """Outcome of grading one response.

    correct: the response counts as solved. status: the grader's reason code (each grader lists its STATUSES;
    "correct"/"passed" is the only status with correct=True). reason: a sentence for humans. extracted: what
    was graded (the boxed answer, or the program text), None when nothing could be extracted. details:
    grader-specific facts (for code: num_tests, num_passed, first_failure, sandbox, elapsed_s, semantics).
    """
    correct: bool
    status: str
    reason: str = ""
    extracted: str | None = None
    details: dict = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict:
        return asdict(self)
