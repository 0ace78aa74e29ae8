"""mini-math: procedurally generated math problems with short step-by-step solutions ending in \\boxed{answer}.

Four families (arithmetic chains, multiply-then-adjust word problems, linear equations, remainders), each at
three levels: 1 and 2 make the training set and the in-distribution test set, 3 (more steps, bigger numbers,
compositions) the "competition" set. Every answer is computed, never typed; solutions are ~30-90 tokens so a tiny
model with a 512-token context can learn them. Deterministic for a seed.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from fractions import Fraction

NAMES = ["Ava", "Ben", "Mia", "Leo", "Zoe", "Sam", "Ivy", "Max", "Ada", "Tom"]
ITEMS = ["apples", "pencils", "stickers", "marbles", "cookies", "books", "coins", "cards"]
CONTAINERS = ["boxes", "bags", "jars", "packs"]
FAMILIES = ("arithmetic", "groups", "linear", "remainder")


@dataclass(frozen=True)
class MathProblem:
    problem: str
    solution: str  # short step-by-step text ending in \boxed{answer}
    answer: str  # LaTeX: an integer or \frac{p}{q} (with a leading minus when negative)
    family: str
    level: int


def format_answer(value: Fraction | int) -> str:
    value = Fraction(value)
    if value.denominator == 1:
        return str(value.numerator)
    sign = "-" if value < 0 else ""
    return f"{sign}\\frac{{{abs(value.numerator)}}}{{{value.denominator}}}"


def finish_solution(steps: list[str], answer: Fraction | int) -> str:
    """Solution lines ending in the boxed answer, as every generated math problem writes it."""
    return "\n".join(steps + [f"The answer is \\boxed{{{format_answer(answer)}}}."])


def arithmetic(rng: random.Random, level: int) -> MathProblem:
    num_ops, hi = {1: (2, 20), 2: (3, 50), 3: (4, 99)}[level]
    terms = [rng.randint(1, hi) for _ in range(num_ops + 1)]
    ops = [rng.choice("+-") for _ in range(num_ops)]
    expr, total, steps = str(terms[0]), terms[0], []
    for op, t in zip(ops, terms[1:]):
        new = total + t if op == "+" else total - t
        steps.append(f"{total} {op} {t} = {new}.")
        expr, total = f"{expr} {op} {t}", new
    return MathProblem(f"Compute {expr}.", finish_solution(steps, total), format_answer(total), "arithmetic", level)


def groups(rng: random.Random, level: int) -> MathProblem:
    name, item, box = rng.choice(NAMES), rng.choice(ITEMS), rng.choice(CONTAINERS)
    lo_hi = {1: (2, 9), 2: (3, 12), 3: (6, 25)}[level]
    count, per = rng.randint(*lo_hi), rng.randint(*lo_hi)
    total = count * per
    text = f"{name} has {count} {box} with {per} {item} in each. "
    steps = [f"{count} * {per} = {total}."]
    events = {1: 1, 2: 2, 3: 3}[level]
    for i in range(events):
        if i % 2 == 0:
            k = rng.randint(1, total - 1)
            text += f"{'Then' if i else ''} {name} gives away {k} {item}. ".replace("  ", " ").lstrip()
            steps.append(f"{total} - {k} = {total - k}.")
            total -= k
        else:
            k = rng.randint(1, {2: 30, 3: 60}[level])
            text += f"Then {name} buys {k} more {item}. "
            steps.append(f"{total} + {k} = {total + k}.")
            total += k
    text += f"How many {item} does {name} have now?"
    return MathProblem(text, finish_solution(steps, total), format_answer(total), "groups", level)


def _term(a: int) -> str:
    return "x" if a == 1 else f"{a}x"


def linear(rng: random.Random, level: int) -> MathProblem:
    if level == 3:  # unknown on both sides: a x + b = c x + d
        a, c = rng.sample(range(2, 13), 2)
        if a < c:
            a, c = c, a
        b, d = _nonzero(rng, 30), _nonzero(rng, 30)
        x = Fraction(d - b, a - c)
        text = f"Solve for x: {_term(a)} {_sign(b)} = {_term(c)} {_sign(d)}."
        steps = [f"Move the x terms to the left: {_term(a - c)} {_sign(b)} = {d}.",
                 f"{_undo(b)}: {_term(a - c)} = {d - b}.",
                 f"Divide both sides by {a - c}: x = {format_answer(x)}."]
        return MathProblem(text, finish_solution(steps, x), format_answer(x), "linear", level)
    a = rng.randint(2, 9 if level == 1 else 12)
    if level == 1:  # integer answer, positive numbers
        x, b = rng.randint(1, 12), rng.randint(1, 20)
        c = a * x + b
    else:  # any sign, answers may be fractions
        b, c = _nonzero(rng, 30), rng.randint(-30, 30)
        x = Fraction(c - b, a)
    text = f"Solve for x: {_term(a)} {_sign(b)} = {c}."
    steps = [f"{_undo(b)}: {_term(a)} = {c - b}.",
             f"Divide both sides by {a}: x = {format_answer(x)}."]
    return MathProblem(text, finish_solution(steps, x), format_answer(x), "linear", level)


def _sign(b: int) -> str:
    return f"+ {b}" if b >= 0 else f"- {-b}"


def _undo(b: int) -> str:
    return f"Subtract {b} from both sides" if b > 0 else f"Add {-b} to both sides"


def _nonzero(rng: random.Random, bound: int) -> int:
    return rng.choice([v for v in range(-bound, bound + 1) if v])


def remainder(rng: random.Random, level: int) -> MathProblem:
    m = rng.randint(2, 9 if level < 3 else 13)
    if level == 3:  # remainder of a product
        p, q = rng.randint(11, 60), rng.randint(11, 60)
        n = p * q
        text = f"What is the remainder when {p} * {q} is divided by {m}?"
        steps = [f"{p} * {q} = {n}."]
    else:
        n = rng.randint(10, 100 if level == 1 else 999)
        text = f"What is the remainder when {n} is divided by {m}?"
        steps = []
    q_, r = divmod(n, m)
    steps += [f"{m} * {q_} = {m * q_}.", f"{n} - {m * q_} = {r}."]
    return MathProblem(text, finish_solution(steps, r), format_answer(r), "remainder", level)


GENERATORS = {"arithmetic": arithmetic, "groups": groups, "linear": linear, "remainder": remainder}


def generate_math(count: int, seed: int, levels: tuple[int, ...], exclude: set[str] = frozenset(),
                  max_tries_factor: int = 50) -> list[MathProblem]:
    """`count` distinct problems (by text, none in `exclude`), families round-robin, levels drawn from `levels`."""
    if not levels or any(lv not in (1, 2, 3) for lv in levels):
        raise ValueError(f"levels must be a non-empty subset of (1, 2, 3), got {levels}")
    rng = random.Random(f"mini-math:{seed}:{levels}")
    seen, out = set(exclude), []
    for i in range(count * max_tries_factor):
        if len(out) == count:
            break
        problem = GENERATORS[FAMILIES[i % len(FAMILIES)]](rng, rng.choice(levels))
        if problem.problem not in seen:
            seen.add(problem.problem)
            out.append(problem)
    if len(out) < count:
        raise ValueError(f"could only generate {len(out)} distinct math problems of {count} (levels {levels})")
    return out


def check_answer(problem: MathProblem) -> bool:
    """Recompute the answer from the problem text alone (an independent check of the generator)."""
    text = problem.problem
    if problem.family == "arithmetic":
        value: Fraction | int = eval(text.removeprefix("Compute ").rstrip("."))  # digits, + and - only
    elif problem.family == "remainder":
        expr = text.split("when ")[1].split(" is divided")[0]
        value = eval(expr) % int(text.split("divided by ")[1].rstrip("?"))
    elif problem.family == "linear":
        left, right = text.removeprefix("Solve for x: ").rstrip(".").split(" = ")
        a, b = _parse_side(left)
        c, d = _parse_side(right)
        value = Fraction(d - b, a - c)
    else:  # groups: replay the events
        words = text.replace(".", "").split()
        value = int(words[2]) * int(words[5])
        for i, w in enumerate(words):
            if w == "away":
                value -= int(words[i + 1])
            elif w == "buys":
                value += int(words[i + 1])
    return format_answer(value) == problem.answer


def _parse_side(side: str) -> tuple[int, int]:
    """'3x + 5' -> (3, 5); '-4' -> (0, -4); 'x - 2' -> (1, -2)."""
    parts = side.split(" ")
    if "x" not in parts[0]:
        return 0, int(parts[0])
    coef = parts[0][:-1]
    a = int(coef) if coef else 1
    b = int(parts[2]) * (1 if parts[1] == "+" else -1) if len(parts) == 3 else 0
    return a, b
