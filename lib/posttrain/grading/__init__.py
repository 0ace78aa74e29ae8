"""The trust layer: math answers by symbolic equivalence, programs by running them in a sandbox."""
from .code import extract_code, grade_code, grade_code_batch, grade_code_verdict
from .math import extract_boxed, grade_math, grade_math_batch, grade_math_verdict
from .verdict import Verdict

__all__ = ["grade_math", "grade_math_batch", "grade_math_verdict", "Verdict", "extract_boxed",
           "grade_code", "grade_code_batch", "grade_code_verdict", "extract_code"]
