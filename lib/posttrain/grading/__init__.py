"""The trust layer: math answers by symbolic equivalence, programs by running them in a sandbox."""
from .code import CodeVerdict, extract_code, grade_code, grade_code_batch, grade_code_verdict
from .math import MathVerdict, extract_boxed, grade_math, grade_math_batch

__all__ = ["grade_math", "grade_math_batch", "MathVerdict", "extract_boxed",
           "grade_code", "grade_code_batch", "grade_code_verdict", "CodeVerdict", "extract_code"]
