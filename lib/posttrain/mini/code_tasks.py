"""mini-code: generated programming tasks with reference solutions and LiveCodeBench-format tests.

A task is a family with parameters (filter × reducer over a list of integers, string transforms, FizzBuzz
variants, sums of multiples) in one of two modes: `stdin` (read input, print) or `functional` (a `class Solution`
method, LCB's call-based tests: one JSON argument per input line, a JSON output). Expected outputs come from a
Python reference function, independent of the solution text. Train and test are split by *task* (family, params,
mode), not by text: a seeded ~20% of tasks are held out for the test set, so test problems are new
parameterizations and unseen combinations, never a train task with a different example.
"""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from typing import Any, Callable

FILTERS = {  # name -> (phrase, condition on x or None, uses k)
    "all": ("the numbers", None),
    "even": ("the even numbers", "x % 2 == 0"),
    "odd": ("the odd numbers", "x % 2 == 1"),
    "above": ("the numbers greater than {k}", "x > {k}"),
    "below": ("the numbers less than {k}", "x < {k}"),
    "multiple": ("the multiples of {k}", "x % {k} == 0"),
}
REDUCERS = {  # name -> (phrase, expression over vals, needs a non-empty selection, returns a list)
    "sum": ("the sum of", "sum(vals)", False, False),
    "count": ("the count of", "len(vals)", False, False),
    "max": ("the largest of", "max(vals)", True, False),
    "min": ("the smallest of", "min(vals)", True, False),
    "sorted": ("in increasing order", "sorted(vals)", True, True),
    "desc": ("in decreasing order", "sorted(vals, reverse=True)", True, True),
}
STRING_OPS = {  # name -> (task phrase, expression over s, reference)
    "reverse": ("the string reversed", "s[::-1]", lambda s, c: s[::-1]),
    "upper": ("the string in upper case", "s.upper()", lambda s, c: s.upper()),
    "vowels": ("the number of vowels (a, e, i, o, u) in the string", 'sum(1 for ch in s if ch in "aeiou")',
               lambda s, c: sum(ch in "aeiou" for ch in s)),
    "palindrome": ("whether the string is a palindrome", "s == s[::-1]", lambda s, c: s == s[::-1]),
    "count_char": ('the number of times the letter "{c}" appears in the string', 's.count("{c}")',
                   lambda s, c: s.count(c)),
}


@dataclass(frozen=True)
class CodeTask:
    key: str  # family/params/mode: the unit of the train/test split
    title: str
    question: str  # statement with one worked example
    mode: str  # "stdin" or "functional"
    func_name: str | None
    starter_code: str  # "" for stdin tasks
    reasoning: str
    code: str  # reference program
    tests: list[dict] = field(default_factory=list)  # [{"input", "output", "testtype"}]; tests[0] is the example

    @property
    def solution(self) -> str:
        """The SFT target: a reasoning line, then the program in a ```python fence."""
        return f"{self.reasoning}\n```python\n{self.code}\n```"


@dataclass(frozen=True)
class _Spec:
    key: str
    title: str
    mode: str
    func_name: str
    describe_stdin: str  # what to print
    describe_functional: str  # what to return
    arg_name: str
    arg_type: str
    ret_type: str
    body: list[str]  # statements computing `result` from the argument
    reasoning: str
    make_input: Callable[[random.Random], Any]
    reference: Callable[[Any], Any]
    input_kind: str  # "list", "str", "int"


def _camel(*words: str) -> str:
    return words[0] + "".join(w[:1].upper() + w[1:] for w in words[1:])


def _list_spec(filt: str, red: str, k: int, mode: str) -> _Spec:
    phrase, cond = FILTERS[filt]
    red_phrase, expr, nonempty, is_list = REDUCERS[red]
    phrase, cond = phrase.format(k=k), cond.format(k=k) if cond else None
    what = f"{phrase} {red_phrase}" if is_list else f"{red_phrase} {phrase}"
    select = f"vals = [x for x in nums if {cond}]" if cond else "vals = nums"
    keep = {"all": "all the numbers", "even": "the even numbers", "odd": "the odd numbers",
            "above": f"the numbers above {k}", "below": f"the numbers below {k}",
            "multiple": f"the multiples of {k}"}[filt]
    action = {"sum": "add them up", "count": "count them", "max": "take the largest", "min": "take the smallest",
              "sorted": "sort them", "desc": "sort them in reverse"}[red]
    check = (lambda x: eval(cond, {}, {"x": x})) if cond else (lambda x: True)

    def make_input(rng: random.Random) -> list[int]:
        while True:
            nums = [rng.randint(0, 30) for _ in range(rng.randint(1, 8))]
            if not nonempty or any(check(x) for x in nums):
                return nums

    def reference(nums: list[int]) -> Any:
        vals = [x for x in nums if check(x)]
        return {"sum": sum, "count": len, "max": max, "min": min, "sorted": sorted,
                "desc": lambda v: sorted(v, reverse=True)}[red](vals)

    suffix = {"all": "", "even": "Even", "odd": "Odd", "above": f"Above{k}", "below": f"Below{k}",
              "multiple": f"MultiplesOf{k}"}[filt]
    return _Spec(key=f"list/{filt}/{k}/{red}/{mode}", title=f"{red} of {keep}", mode=mode,
                 func_name=_camel(red, suffix or "All"), describe_stdin=f"Print {what}",
                 describe_functional=f"Return {what}", arg_name="nums", arg_type="list[int]",
                 ret_type="list[int]" if is_list else "int", body=[select, f"result = {expr}"],
                 reasoning=f"Keep {keep} and {action}.", make_input=make_input, reference=reference,
                 input_kind="list")


def _string_spec(op: str, c: str, mode: str) -> _Spec:
    phrase, expr, ref = STRING_OPS[op]
    phrase, expr = phrase.format(c=c), expr.format(c=c)
    ret = {"reverse": "str", "upper": "str", "palindrome": "bool"}.get(op, "int")

    def make_input(rng: random.Random) -> str:
        letters = "abcdeio" + (c if c.isalpha() else "")  # c is "-" for ops without a letter parameter
        s = "".join(rng.choice(letters) for _ in range(rng.randint(1, 9)))
        return s + s[::-1][1:] if op == "palindrome" and rng.random() < 0.5 else s

    reference = (lambda s: ref(s, c))
    body = [f"result = {expr}"]
    if op == "palindrome" and mode == "stdin":
        body = [f'result = "Yes" if {expr} else "No"']
        reference = (lambda s: "Yes" if ref(s, c) else "No")
    describe = phrase + (' ("Yes" or "No")' if op == "palindrome" else "")
    return _Spec(key=f"str/{op}/{c if op == 'count_char' else '-'}/{mode}", title=op.replace("_", " "), mode=mode,
                 func_name=_camel(op.split("_")[0], c.upper() if op == "count_char" else "String"),
                 describe_stdin=f"Print {describe}", describe_functional=f"Return {phrase}", arg_name="s",
                 arg_type="str", ret_type=ret, body=body, reasoning=f"Compute {phrase}.",
                 make_input=make_input, reference=reference, input_kind="str")


def _fizzbuzz_spec(a: int, b: int, mode: str) -> _Spec:
    def word(i: int) -> str:
        return "FizzBuzz" if i % a == 0 and i % b == 0 else "Fizz" if i % a == 0 else "Buzz" if i % b == 0 else str(i)
    body = ["result = []", "for i in range(1, n + 1):",
            f"    if i % {a} == 0 and i % {b} == 0:", '        result.append("FizzBuzz")',
            f"    elif i % {a} == 0:", '        result.append("Fizz")',
            f"    elif i % {b} == 0:", '        result.append("Buzz")',
            "    else:", "        result.append(str(i))"]
    rule = (f'for each i from 1 to n: "FizzBuzz" if i is a multiple of both {a} and {b}, "Fizz" if only of {a}, '
            f'"Buzz" if only of {b}, otherwise i itself')
    return _Spec(key=f"fizzbuzz/{a}/{b}/{mode}", title=f"fizzbuzz {a} {b}", mode=mode, func_name=f"fizzBuzz{a}{b}",
                 describe_stdin=f"Print, one per line, {rule}", describe_functional=f"Return a list of strings, {rule}",
                 arg_name="n", arg_type="int", ret_type="list[str]", body=body,
                 reasoning=f"Loop from 1 to n and test divisibility by {a} and {b}.",
                 make_input=lambda rng: rng.randint(1, 16), reference=lambda n: [word(i) for i in range(1, n + 1)],
                 input_kind="int")


def _multiples_spec(k: int, mode: str) -> _Spec:
    return _Spec(key=f"multiples/{k}/{mode}", title=f"sum of multiples of {k}", mode=mode,
                 func_name=f"sumOfMultiples{k}UpToN",
                 describe_stdin=f"Print the sum of the multiples of {k} from 1 to n",
                 describe_functional=f"Return the sum of the multiples of {k} from 1 to n", arg_name="n",
                 arg_type="int", ret_type="int", body=[f"result = sum(i for i in range(1, n + 1) if i % {k} == 0)"],
                 reasoning=f"Add up every i from 1 to n divisible by {k}.", make_input=lambda rng: rng.randint(1, 60),
                 reference=lambda n: sum(i for i in range(1, n + 1) if i % k == 0), input_kind="int")


def all_specs() -> list[_Spec]:
    """Every task in the family space (~430), in a fixed order."""
    specs = []
    for mode in ("stdin", "functional"):
        for filt in FILTERS:
            for k in (range(2, 10) if "{k}" in FILTERS[filt][0] else [0]):
                specs += [_list_spec(filt, red, k, mode) for red in REDUCERS]
        for op in STRING_OPS:
            specs += [_string_spec(op, c, mode) for c in ("abcdeio" if op == "count_char" else "-")]
        specs += [_fizzbuzz_spec(a, b, mode) for a in range(2, 8) for b in range(a + 1, 8)]
        specs += [_multiples_spec(k, mode) for k in range(2, 10)]
    return specs


def is_test_task(key: str, seed: int, test_fraction: float = 0.2) -> bool:
    """Seeded, stable assignment of a task to the test side of the split."""
    digest = hashlib.sha256(f"mini-code:{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < test_fraction


# ---------------------------------------------------------------------------------------------- rendering


def _stdin_text(kind: str, value: Any) -> str:
    if kind == "list":
        return f"{len(value)}\n{' '.join(map(str, value))}\n"
    return f"{value}\n"


def _stdout_text(value: Any) -> str:
    if isinstance(value, list):
        return ("\n".join(value) if value and isinstance(value[0], str) else " ".join(map(str, value))) + "\n"
    return f"{value}\n"


def _read_lines(kind: str, arg: str) -> list[str]:
    if kind == "list":
        return ["n = int(input())", f"{arg} = list(map(int, input().split()))"]
    return [f"{arg} = input()" if kind == "str" else f"{arg} = int(input())"]


def _print_line(spec: _Spec) -> str:
    if spec.ret_type == "list[str]":
        return 'print("\\n".join(result))'
    if spec.ret_type == "list[int]":
        return 'print(" ".join(map(str, result)))'
    return "print(result)"


def _input_format(kind: str) -> str:
    return {"list": "The first line contains n, the second line n integers separated by spaces.",
            "str": "One line with a string of lowercase letters.", "int": "One line with an integer n."}[kind]


def render_task(spec: _Spec, rng: random.Random, num_tests: int = 5) -> CodeTask:
    inputs: list[Any] = []
    for _ in range(num_tests * 10):
        x = spec.make_input(rng)
        if x not in inputs:
            inputs.append(x)
        if len(inputs) == num_tests:
            break
    outputs = [spec.reference(x) for x in inputs]
    if spec.mode == "stdin":
        tests = [{"input": _stdin_text(spec.input_kind, x), "output": _stdout_text(y), "testtype": "stdin"}
                 for x, y in zip(inputs, outputs)]
        code = "\n".join(_read_lines(spec.input_kind, spec.arg_name) + spec.body + [_print_line(spec)])
        question = (f"{spec.describe_stdin}.\n\nInput\n{_input_format(spec.input_kind)}\n\nExample\nInput:\n"
                    f"{tests[0]['input']}Output:\n{tests[0]['output']}").rstrip()
        func_name, starter = None, ""
    else:
        tests = [{"input": json.dumps(x), "output": json.dumps(y), "testtype": "functional"}
                 for x, y in zip(inputs, outputs)]
        signature = f"def {spec.func_name}(self, {spec.arg_name}: {spec.arg_type}) -> {spec.ret_type}:"
        starter = f"class Solution:\n    {signature}\n        "
        code = "\n".join(["class Solution:", f"    {signature}"] + [f"        {line}" for line in spec.body] +
                         ["        return result"])
        question = (f"Given {spec.arg_name}, {spec.describe_functional[0].lower()}{spec.describe_functional[1:]}.\n\n"
                    f"Example\nInput: {spec.arg_name} = {tests[0]['input']}\nOutput: {tests[0]['output']}")
        func_name = spec.func_name
    return CodeTask(key=spec.key, title=spec.title, question=question, mode=spec.mode, func_name=func_name,
                    starter_code=starter, reasoning=spec.reasoning, code=code, tests=tests)


def generate_code(count: int, seed: int, split: str, test_fraction: float = 0.2) -> list[CodeTask]:
    """`count` distinct problems (by question text) from the tasks on `split`'s side ("train" or "test")."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    specs = [s for s in all_specs() if is_test_task(s.key, seed, test_fraction) == (split == "test")]
    rng = random.Random(f"mini-code:{seed}:{split}")
    rng.shuffle(specs)  # then cycle: every task of the split appears before any appears twice
    seen, out = set(), []
    for i in range(count * 20):
        if len(out) == count:
            break
        task = render_task(specs[i % len(specs)], rng)
        if task.question not in seen:
            seen.add(task.question)
            out.append(task)
    if len(out) < count:
        raise ValueError(f"could only generate {len(out)} distinct {split} code problems of {count}")
    return out


def lcb_row(task: CodeTask, index: int, num_public: int = 1) -> dict:
    """A row in LiveCodeBench code_generation_lite's schema (test lists as JSON strings)."""
    return {"question_id": f"mini_code_{index:04d}", "question_title": task.title, "question_content": task.question,
            "platform": "mini", "contest_date": "2025-01-01T00:00:00", "contest_id": "mini", "difficulty": "easy",
            "starter_code": task.starter_code, "public_test_cases": json.dumps(task.tests[:num_public]),
            "private_test_cases": json.dumps(task.tests[num_public:]),
            "metadata": json.dumps({"func_name": task.func_name}) if task.func_name else "{}"}
