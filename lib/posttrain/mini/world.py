"""A generated world for the miniature (issue 13): towns with numeric facts, the general text that describes them
(the pre-training corpus), and the SFT problems and evaluation sets that use them. Design: docs/miniature.md.

    spec = WorldSpec(seed=0)
    world = make_world(spec)
    corpus = build_world_corpus(world, spec)            # list[str]: general text, never the SFT chat format
    tasks = build_world_tasks(world, spec)              # WorldTasks: math_train, math_test, ..., fill_in

    python -m posttrain.mini.world --seed 0 --vocab 1024  # sizes, build times, token counts

Why a world: pre-training can only matter if its text carries something the tasks use. Here the corpus states every
town's facts many times in varied prose (as in "Physics of Language Models" 3.1), shows worked arithmetic as
narrative prose and the behaviour of small Python snippets; the SFT and evaluation problems are new: questions in
another register (and, for code, stdin programs where the corpus only ever shows hard-coded values). Half of the
towns are "seen": SFT's knowledge questions ask about them; the other half are "held out": only the corpus knows
their facts, and the knowledge probe asks about them. Self-contained problems (all numbers in the prompt: what the
paper's benchmarks are) are the main evaluation; knowledge questions are a probe, reported apart.

Everything is a pure function of the spec (seed included): same spec, same texts, on every machine.
"""
from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass, field

from posttrain.mini.code_tasks import CodeTask  # the code task record (tests in LiveCodeBench's stdin format)
from posttrain.mini.math_tasks import MathProblem, finish_solution, format_answer

# ---------------------------------------------------------------------------------------------- the world

# Counted things a town has (attribute -> (singular, plural)); facts are small integers so answers stay short.
ATTRIBUTES = {"wells": ("well", "wells"), "towers": ("tower", "towers"), "bridges": ("bridge", "bridges"),
              "mills": ("mill", "mills")}
FACT_RANGE = (2, 19)
ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gl", "kr", "st", "tr"]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ou"]
CODAS = ["n", "r", "l", "m", "s", "th", "nd", "rk", "x", ""]
GOODS = [("sack", "sacks"), ("crate", "crates"), ("basket", "baskets"), ("barrel", "barrels"), ("coin", "coins"),
         ("lamp", "lamps"), ("sheep", "sheep"), ("rope", "ropes")]
PEOPLE = ["trader", "miller", "weaver", "smith", "farmer", "baker", "sailor", "potter"]


@dataclass(frozen=True)
class Town:
    name: str
    facts: dict[str, int]  # attribute -> count


@dataclass(frozen=True)
class World:
    seed: int
    towns: tuple[Town, ...]
    seen: tuple[str, ...]  # SFT's knowledge questions ask about these towns
    held_out: tuple[str, ...]  # only the corpus states these towns' facts

    def town(self, name: str) -> Town:
        return next(t for t in self.towns if t.name == name)


@dataclass(frozen=True)
class WorldSpec:
    """Sizes of the world and of every generated set. Defaults: the planned final study (docs/miniature.md)."""
    seed: int = 0
    num_towns: int = 40
    exposures_per_fact: int = 300  # fact statements per (town, attribute) in the corpus
    arithmetic_docs: int = 6000  # worked arithmetic in narrative prose
    program_docs: int = 6000  # Python snippets with what they print
    story_docs: int = 2000  # filler prose about the towns (no numbers)
    math_train: int = 16000  # SFT pool: the ×16 budget's examples; ×1 and ×4 are its prefixes
    code_train: int = 16000
    math_test: int = 240  # in-domain, self-contained, levels 1-2
    math_competition: int = 120  # harder: level 3 (more steps, bigger numbers)
    code_test: int = 200  # in-domain: held-out tasks of the training families
    code_competition: int = 100  # harder: compositions never trained on
    knowledge_probe: int = 120  # knowledge questions about held-out towns
    knowledge_seen: int = 120  # knowledge questions about seen towns, problems not in SFT
    knowledge_fraction: float = 0.25  # share of the math SFT pool that asks about (seen) towns' facts
    math_numbers: str = "standard"  # number ranges of levels 1-2 (a key of NUMBER_RANGES); level 3 never changes
    drill_fraction: float = 0.0  # share of the math SFT pool that is bare arithmetic drills (never evaluated)
    # v3 corpus options (issue 23; docs/miniature.md, "v3"). Each default reproduces the v2 world byte for byte.
    fact_templates: str = "mixed"  # a key of FACT_TEMPLATE_SETS: "value_last" names town and attribute first
    qa_fraction: float = 0.0  # share of each seen town's fact exposures written as question-answer pairs
    boxed_fraction: float = 0.0  # share of arithmetic documents written as worked solutions ending in \boxed{}
    fenced_program_fraction: float = 0.0  # share of program documents written as fenced stdin programs with a run
    arithmetic_scenery: str = "towns"  # "none": numeric prose names no town (the only numbers by a town: its facts)
    code_split: str = "hash"  # "covered": no code test task using an operation (code_operations) SFT never shows

    def __post_init__(self):
        if self.fact_templates not in FACT_TEMPLATE_SETS:
            raise ValueError(f"fact_templates={self.fact_templates!r}: expected one of {sorted(FACT_TEMPLATE_SETS)}")
        if self.code_split not in ("hash", "covered"):
            raise ValueError(f"code_split={self.code_split!r}: expected 'hash' or 'covered'")
        if self.arithmetic_scenery not in ("towns", "none"):
            raise ValueError(f"arithmetic_scenery={self.arithmetic_scenery!r}: expected 'towns' or 'none'")
        for name in ("qa_fraction", "boxed_fraction", "fenced_program_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}={getattr(self, name)!r}: expected a share between 0 and 1")


def town_names(rng: random.Random, count: int) -> list[str]:
    names: set[str] = set()
    while len(names) < count:
        syllables = [rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(2)]
        name = "".join(syllables).capitalize()
        if 4 <= len(name) <= 9:
            names.add(name)
    return sorted(names)


def make_world(spec: WorldSpec) -> World:
    rng = random.Random(f"mini-world:{spec.seed}")
    names = town_names(rng, spec.num_towns)
    towns = tuple(Town(n, {a: rng.randint(*FACT_RANGE) for a in ATTRIBUTES}) for n in names)
    order = list(names)
    rng.shuffle(order)
    half = spec.num_towns // 2
    return World(spec.seed, towns, tuple(sorted(order[:half])), tuple(sorted(order[half:])))


# ---------------------------------------------------------------------------------------------- corpus

# Statements of one fact. Several wordings per fact: a model that stores the fact, not one sentence, can use it.
FACT_TEMPLATES = [
    "{town} has {n} {things}.", "There are {n} {things} in {town}.", "The town of {town} counts {n} {things}.",
    "In {town} one finds {n} {things}.", "{town}, a town of the valley, is known for its {n} {things}.",
    "Travellers to {town} report {n} {things} there.", "The number of {things} in {town} is {n}.",
    "{n} {things} stand in {town}.", "Old maps of {town} show {n} {things}.",
    "People in {town} are proud of their {n} {things}.",
]
# Town and attribute before the value, the value last (issue 23: the fill-in probe and the knowledge questions look
# a value up from town and attribute; "mixed" trains that direction in 1 of 10 wordings).
VALUE_LAST_TEMPLATES = [
    "In {town} the number of {things} is {n}.", "The number of {things} in {town} is {n}.",
    "Counting the {things} of {town} gives {n}.", "The {things} of {town} number {n}.",
    "Travellers to {town} counted its {things} and found {n}.", "For {town}, the count of {things} is {n}.",
    "Ask in {town} how many {things} it has and you hear {n}.", "Of {things}, {town} has {n}.",
    "Old maps of {town} give its {things} as {n}.", "{town}: the number of {things} is {n}.",
    "{town} gives the count of its {things} as {n}.",
]
FACT_TEMPLATE_SETS = {"mixed": FACT_TEMPLATES, "value_last": VALUE_LAST_TEMPLATES}
# Question-answer forms of a fact, as an FAQ page writes them ("mixed training", Physics of LMs 3.1): another
# register than SFT's knowledge questions, which combine facts ("... together?").
QA_TEMPLATES = [
    "Q: What is the number of {things} in {town}? A: {n}.", "Q: How many {things} are in {town}? A: {n}.",
    "Question: how many {things} does the town of {town} count? Answer: {n}.",
]
STORY_TEMPLATES = [
    "{a} lies {where} of {b}.", "The road from {a} to {b} crosses a {land}.", "Merchants from {a} trade {goods} "
    "with {b}.", "Every spring the people of {a} visit {b}.", "{a} is older than {b}, the elders say.",
    "A {person} from {a} married a {person2} from {b}.", "The river that feeds {a} rises near {b}.",
]
WHERE = ["north", "south", "east", "west"]
LANDS = ["forest", "marsh", "hill", "plain", "ford"]


def fact_sentences(world: World, rng: random.Random, exposures: int, templates: str = "mixed",
                   qa_fraction: float = 0.0) -> list[str]:
    """`exposures` statements of every fact, in random wordings; for seen towns, round(qa_fraction * exposures) of
    them as question-answer pairs (held-out towns' facts stay statements only: the probe asks about them)."""
    out, wordings = [], FACT_TEMPLATE_SETS[templates]
    for town in world.towns:
        qa = round(qa_fraction * exposures) if town.name in world.seen else 0
        for attr, n in town.facts.items():
            things = ATTRIBUTES[attr][1]
            out += [rng.choice(wordings).format(town=town.name, n=n, things=things) for _ in range(exposures - qa)]
            out += [rng.choice(QA_TEMPLATES).format(town=town.name, n=n, things=things) for _ in range(qa)]
    return out


def fact_documents(world: World, rng: random.Random, exposures: int, templates: str = "mixed",
                   qa_fraction: float = 0.0) -> list[str]:
    """The fact statements grouped into short paragraphs (3-6 sentences about any towns, shuffled)."""
    sentences = fact_sentences(world, rng, exposures, templates, qa_fraction)
    rng.shuffle(sentences)
    # value_last paragraphs are lists, one fact a line (a gazetteer): town names then also open lines, as in the
    # recall lines of SFT's knowledge solutions ("Baikux has 7 wells.\n...").
    sep = " " if templates == "mixed" else "\n"
    docs, i = [], 0
    while i < len(sentences):
        k = rng.randint(3, 6)
        docs.append(sep.join(sentences[i:i + k]))
        i += k
    return docs


def story_document(world: World, rng: random.Random) -> str:
    sentences = []
    for _ in range(rng.randint(2, 4)):
        a, b = rng.sample([t.name for t in world.towns], 2)
        sentences.append(rng.choice(STORY_TEMPLATES).format(
            a=a, b=b, where=rng.choice(WHERE), land=rng.choice(LANDS), goods=rng.choice(GOODS)[1],
            person=rng.choice(PEOPLE), person2=rng.choice(PEOPLE)))
    return " ".join(sentences)


def arithmetic_document(world: World, rng: random.Random, scenery: str = "towns", boxed: bool = False) -> str:
    """Worked arithmetic as narrative prose (past tense, no question): the operations the tasks need, shown with
    equations, in a register the SFT problems do not use. scenery "none": no town named (the same numbers);
    boxed: the prose followed by its equation lines and "The answer is \\boxed{N}." (a worked solution)."""
    town, person = rng.choice(world.towns).name, rng.choice(PEOPLE)
    town = town if scenery == "towns" else "the valley"
    many = rng.choice(GOODS)[1]
    a, b = rng.randint(2, 60), rng.randint(2, 30)
    kind = rng.randrange(5)
    if kind == 0:
        text = (f"Last market day a {person} of {town} brought {a} {many} and later fetched {b} more, "
                f"so by evening the stall held {a} + {b} = {a + b} {many}.")
        steps, answer = [f"{a} + {b} = {a + b}."], a + b
    elif kind == 1:
        a = max(a, b + 1)
        text = (f"The {person} of {town} started the week with {a} {many}; {b} were used up, "
                f"which left {a} - {b} = {a - b} of them.")
        steps, answer = [f"{a} - {b} = {a - b}."], a - b
    elif kind == 2:
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        text = (f"In {town} the {person} stacked {a} rows of {many} with {b} in every row, "
                f"making {a} * {b} = {a * b} in all.")
        steps, answer = [f"{a} * {b} = {a * b}."], a * b
    elif kind == 3:
        q, r = divmod(a, b)
        text = (f"Sharing {a} {many} among {b} households of {town}, each household got {q}, because "
                f"{b} * {q} = {b * q}, and {a} - {b * q} = {r} were kept back.")
        steps, answer = [f"{b} * {q} = {b * q}.", f"{a} - {b * q} = {r}."], r
    else:
        x = rng.randint(1, 12)
        text = (f"A riddle told in {town}: some number, times {b}, plus {a}, gave {b * x + a}. Taking away {a} gave "
                f"{b * x}, and dividing by {b} gave {x}, so the number was {x}.")
        steps, answer = [f"{b * x + a} - {a} = {b * x}.", f"{b * x} / {b} = {x}."], x
    return f"{text}\n{finish_solution(steps, answer)}" if boxed else text


def program_document(rng: random.Random) -> str:
    """A Python snippet with hard-coded values and the prose saying what it prints (4-space indented, no fences:
    the SFT targets are fenced stdin programs)."""
    nums = [rng.randint(0, 30) for _ in range(rng.randint(2, 7))]
    k = rng.randint(2, 9)
    kind = rng.randrange(6)
    if kind == 0:
        sel = [x for x in nums if x % 2 == 0]
        code = f"nums = {nums}\nprint(sum(x for x in nums if x % 2 == 0))"
        what, out = "adds up the even numbers", sum(sel)
    elif kind == 1:
        sel = [x for x in nums if x > k]
        code = f"nums = {nums}\nprint(len([x for x in nums if x > {k}]))"
        what, out = f"counts the numbers above {k}", len(sel)
    elif kind == 2:
        code, what, out = f"nums = {nums}\nprint(max(nums))", "finds the largest number", max(nums)
    elif kind == 3:
        code = f"nums = {nums}\nprint(' '.join(str(x) for x in sorted(nums)))"
        what, out = "prints the numbers in increasing order", " ".join(map(str, sorted(nums)))
    elif kind == 4:
        n = rng.randint(5, 40)
        code = f"total = 0\nfor i in range(1, {n} + 1):\n    if i % {k} == 0:\n        total += i\nprint(total)"
        what, out = f"adds the multiples of {k} up to {n}", sum(i for i in range(1, n + 1) if i % k == 0)
    else:
        word = "".join(rng.choice("abdeiklmorst") for _ in range(rng.randint(3, 8)))
        code, what, out = f"word = '{word}'\nprint(word[::-1])", "reverses the word", word[::-1]
    indented = "\n".join("    " + line for line in code.splitlines())
    return f"This short program {what}:\n\n{indented}\n\nRunning it prints {out}."


def build_world_corpus(world: World, spec: WorldSpec) -> list[str]:
    """The pre-training documents, shuffled: fact paragraphs, arithmetic prose, program prose, stories."""
    rng = random.Random(f"mini-world-corpus:{spec.seed}")
    docs = fact_documents(world, rng, spec.exposures_per_fact, spec.fact_templates, spec.qa_fraction)
    boxed = round(spec.boxed_fraction * spec.arithmetic_docs)
    docs += [arithmetic_document(world, rng, spec.arithmetic_scenery, i < boxed) for i in range(spec.arithmetic_docs)]
    fenced, web_specs = round(spec.fenced_program_fraction * spec.program_docs), web_code_specs()
    docs += [web_program_document(rng, web_specs) if i < fenced else program_document(rng)
             for i in range(spec.program_docs)]
    docs += [story_document(world, rng) for _ in range(spec.story_docs)]
    rng.shuffle(docs)
    return docs


# ---------------------------------------------------------------------------------------------- math problems
# Self-contained problems state every number; solutions are equation lines ending in \boxed{}, as in
# posttrain.mini.math_tasks. Level 1-2: training and in-domain test; level 3: the "competition" set.


# Number ranges of the self-contained families at levels 1-2 (training and in-domain test). "small" keeps every
# level-1/2 operand and result within two digits and mostly below 60: pilots (docs/miniature.md §12) found the
# from-scratch model learns to copy the problem's numbers but not the "standard" ranges' arithmetic.
NUMBER_RANGES = {
    "standard": {"chain_hi": {1: 20, 2: 50}, "rows": {1: (2, 9), 2: (3, 12)}, "arrive_hi": 40,
                 "share_n_hi": {1: 60, 2: 300}, "number_x_hi": 12, "number_a_hi": {1: 9, 2: 12},
                 "number_b_hi": {1: 20, 2: 60}},
    "small": {"chain_hi": {1: 9, 2: 20}, "rows": {1: (2, 5), 2: (2, 9)}, "arrive_hi": 20,
              "share_n_hi": {1: 30, 2: 60}, "number_x_hi": 9, "number_a_hi": {1: 5, 2: 9},
              "number_b_hi": {1: 10, 2: 20}},
    # "tiny": sums mostly of one-digit numbers and products within the 5 x 5 table (session 4's pilots, §12).
    "tiny": {"chain_hi": {1: 6, 2: 9}, "rows": {1: (2, 4), 2: (2, 5)}, "arrive_hi": 9,
             "share_n_hi": {1: 20, 2: 30}, "number_x_hi": 5, "number_a_hi": {1: 3, 2: 5},
             "number_b_hi": {1: 5, 2: 9}},
}


def _ranges(numbers: str) -> dict:
    if numbers not in NUMBER_RANGES:
        raise ValueError(f"math_numbers={numbers!r}: expected one of {sorted(NUMBER_RANGES)}")
    return NUMBER_RANGES[numbers]


def chain_problem(world: World, rng: random.Random, level: int, numbers: str = "standard") -> MathProblem:
    """Goods loaded and unloaded at stops: a chain of + and -; level 3 adds a doubling step."""
    town = rng.choice(world.towns).name
    many = rng.choice(GOODS)[1]
    hi = 99 if level == 3 else _ranges(numbers)["chain_hi"][level]
    total = rng.randint(hi // 2, hi)
    text, steps = f"A cart leaves {town} with {total} {many}.", []
    for stop in range({1: 2, 2: 3, 3: 4}[level]):
        if rng.random() < 0.5 and total > 1:
            k = rng.randint(1, total - 1)
            text += f" At stop {stop + 1} it unloads {k} {many}."
            steps.append(f"{total} - {k} = {total - k}.")
            total -= k
        else:
            k = rng.randint(1, hi)
            text += f" At stop {stop + 1} it loads {k} {many}."
            steps.append(f"{total} + {k} = {total + k}.")
            total += k
    if level == 3:
        text += " At the last stop the load is doubled."
        steps.append(f"{total} * 2 = {total * 2}.")
        total *= 2
    text += f" How many {many} are on the cart at the end?"
    return MathProblem(text, finish_solution(steps, total), format_answer(total), "chain", level)


def rows_problem(world: World, rng: random.Random, level: int, numbers: str = "standard") -> MathProblem:
    """Rows times items per row, then some taken away (level 2-3: more events)."""
    town, person = rng.choice(world.towns).name, rng.choice(PEOPLE)
    many = rng.choice(GOODS)[1]
    lo, hi = (6, 25) if level == 3 else _ranges(numbers)["rows"][level]
    arrive_hi = 40 if level == 3 else _ranges(numbers)["arrive_hi"]
    rows, per = rng.randint(lo, hi), rng.randint(lo, hi)
    total = rows * per
    text = f"A {person} in {town} sets out {rows} rows of {many} with {per} {many} in each row."
    steps = [f"{rows} * {per} = {total}."]
    for i in range(level):
        if i % 2 == 0:
            k = rng.randint(1, total - 1)
            text += f" {k} {many} are sold."
            steps.append(f"{total} - {k} = {total - k}.")
            total -= k
        else:
            k = rng.randint(1, arrive_hi)
            text += f" {k} more {many} arrive."
            steps.append(f"{total} + {k} = {total + k}.")
            total += k
    text += f" How many {many} does the {person} have now?"
    return MathProblem(text, finish_solution(steps, total), format_answer(total), "rows", level)


def share_problem(world: World, rng: random.Random, level: int, numbers: str = "standard") -> MathProblem:
    """Equal shares: quotient or remainder; level 3 shares a product."""
    town = rng.choice(world.towns).name
    many = rng.choice(GOODS)[1]
    m = rng.randint(2, 9 if level < 3 else 13)
    steps = []
    if level == 3:
        p, q = rng.randint(11, 40), rng.randint(11, 40)
        n = p * q
        start = f"{p} carts each bring {q} {many} to {town}."
        steps.append(f"{p} * {q} = {n}.")
    else:
        n = rng.randint(10, _ranges(numbers)["share_n_hi"][level])
        start = f"{town} receives {n} {many}."
    q_, r = divmod(n, m)
    ask_rest = rng.random() < 0.5
    text = (f"{start} They are shared equally among {m} households, each getting as many as possible. "
            + (f"How many {many} are left over?" if ask_rest else f"How many {many} does each household get?"))
    steps += [f"{m} * {q_} = {m * q_}."] + ([f"{n} - {m * q_} = {r}."] if ask_rest else [])
    answer = r if ask_rest else q_
    return MathProblem(text, finish_solution(steps, answer), format_answer(answer), "share", level)


def number_problem(world: World, rng: random.Random, level: int, numbers: str = "standard") -> MathProblem:
    """An unknown number: a x + b = c (level 3: a x + b = c x + d), integer answers."""
    town = rng.choice(world.towns).name
    if level == 3:
        x, a, b = rng.randint(1, 20), rng.randint(2, 12), rng.randint(1, 60)
    else:
        r = _ranges(numbers)
        x = rng.randint(1, r["number_x_hi"])
        a, b = rng.randint(2, r["number_a_hi"][level]), rng.randint(1, r["number_b_hi"][level])
    if level == 3:
        c = rng.randint(1, a - 1) if a > 2 else 1
        d = (a - c) * x + b
        text = (f"A scribe of {town} picks a number. {a} times the number plus {b} equals {c} times the number "
                f"plus {d}. What is the number?")
        steps = [f"{a} - {c} = {a - c}.", f"{d} - {b} = {d - b}.", f"{d - b} / {a - c} = {x}."]
    else:
        c = a * x + b
        text = f"A scribe of {town} picks a number. {a} times the number plus {b} equals {c}. What is the number?"
        steps = [f"{c} - {b} = {c - b}.", f"{c - b} / {a} = {x}."]
    return MathProblem(text, finish_solution(steps, x), format_answer(x), "number", level)


def drill_problem(world: World, rng: random.Random, level: int = 1, numbers: str = "small") -> MathProblem:
    """Bare arithmetic in the solutions' own equation form ("Work out 14 + 7 - 5."): the sums, differences,
    products and exact quotients the word problems need, many per token. SFT only, the same for every arm; a
    design change made because the learning pilots found arithmetic, not copying, to be what 0%-Pre lacks."""
    r = _ranges(numbers)
    hi = 2 * r["chain_hi"][2] + r["arrive_hi"]  # the largest running totals of the level-2 word problems
    kind = rng.randrange(4)
    if kind == 2:
        a, b = rng.randint(2, r["rows"][2][1]), rng.randint(2, r["number_x_hi"] + 3)
        value, steps, expr = a * b, [f"{a} * {b} = {a * b}."], f"{a} * {b}"
    elif kind == 3:
        m, q = rng.randint(2, 9), rng.randint(1, r["number_x_hi"] + 3)
        value, steps, expr = q, [f"{m * q} / {m} = {q}."], f"{m * q} / {m}"
    else:
        value = rng.randint(1, hi)
        expr, steps = str(value), []
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.5 and value > 1:
                k = rng.randint(1, value - 1)
                steps.append(f"{value} - {k} = {value - k}.")
                expr, value = f"{expr} - {k}", value - k
            else:
                k = rng.randint(1, r["chain_hi"][2])
                steps.append(f"{value} + {k} = {value + k}.")
                expr, value = f"{expr} + {k}", value + k
    return MathProblem(f"Work out {expr}.", finish_solution(steps, value), format_answer(value), "drill", 1)


def drill_value(text: str) -> int | None:
    """The value of a drill's expression, left to right (what check_math_answer recomputes)."""
    tokens = text.removeprefix("Work out ").rstrip(".").split()
    value = int(tokens[0])
    for op, arg in zip(tokens[1::2], map(int, tokens[2::2])):
        if op == "/" and value % arg:
            return None
        value = {"+": value + arg, "-": value - arg, "*": value * arg, "/": value // max(arg, 1)}[op]
    return value


SELF_CONTAINED = {"chain": chain_problem, "rows": rows_problem, "share": share_problem, "number": number_problem}


def knowledge_problem(world: World, rng: random.Random, towns: tuple[str, ...]) -> MathProblem:
    """A question that needs a town's stored facts: the solution first recalls them, then computes."""
    attr = rng.choice(list(ATTRIBUTES))
    one, many = ATTRIBUTES[attr]
    a, b = rng.sample(towns, 2)
    fa, fb = world.town(a).facts[attr], world.town(b).facts[attr]
    kind = rng.randrange(3)
    if kind == 0:
        text = f"How many {many} do {a} and {b} have together?"
        steps = [f"{a} has {fa} {many}.", f"{b} has {fb} {many}.", f"{fa} + {fb} = {fa + fb}."]
        answer = fa + fb
    elif kind == 1:
        k = rng.randint(2, 9)
        text = f"{a} builds {k} new {many} for every {one} it has. How many new {many} does {a} build?"
        steps = [f"{a} has {fa} {many}.", f"{fa} * {k} = {fa * k}."]
        answer = fa * k
    else:
        k = rng.randint(1, 30)
        text = f"{a} adds {k} {many}. How many {many} does {a} have then?"
        steps = [f"{a} has {fa} {many}.", f"{fa} + {k} = {fa + k}."]
        answer = fa + k
    return MathProblem(text, finish_solution(steps, answer), format_answer(answer), "knowledge", 0)


def _distinct(make, count: int, exclude: set[str], what: str, text=lambda p: p.problem) -> list:
    seen, out = set(exclude), []
    for _ in range(count * 50 + 1):
        if len(out) == count:
            return out
        item = make()
        if text(item) not in seen:
            seen.add(text(item))
            out.append(item)
    raise ValueError(f"could only generate {len(out)} distinct {what} of {count}; enlarge the world or the ranges")


def self_contained_problems(world: World, count: int, levels: tuple[int, ...], salt: str,
                            exclude: set[str] = frozenset(), numbers: str = "standard") -> list[MathProblem]:
    rng = random.Random(f"mini-world-math:{world.seed}:{salt}")
    families = list(SELF_CONTAINED)
    counter = iter(range(10 ** 9))
    _ranges(numbers)  # a bad key fails here, before any problem is drawn
    return _distinct(lambda: SELF_CONTAINED[families[next(counter) % len(families)]](world, rng, rng.choice(levels),
                                                                                      numbers),
                     count, exclude, f"math problems ({salt})")


def drill_problems(world: World, count: int, salt: str, numbers: str = "small") -> list[MathProblem]:
    rng = random.Random(f"mini-world-drill:{world.seed}:{salt}")
    return _distinct(lambda: drill_problem(world, rng, 1, numbers), count, set(), f"drills ({salt})")


def knowledge_problems(world: World, count: int, towns: tuple[str, ...], salt: str,
                       exclude: set[str] = frozenset()) -> list[MathProblem]:
    rng = random.Random(f"mini-world-knowledge:{world.seed}:{salt}")
    return _distinct(lambda: knowledge_problem(world, rng, towns), count, exclude, f"knowledge problems ({salt})")


def fill_in_probe(world: World) -> list[dict]:
    """One cloze per fact in one of the corpus' own wordings, the attribute named before the number ("The number of
    wells in Baikux is" -> " 7"): does the base model store the facts? (Gate: >= 80% for the 100%-Pre base,
    docs/miniature.md §8.)"""
    return [{"town": t.name, "attribute": a, "prompt": f"The number of {ATTRIBUTES[a][1]} in {t.name} is",
             "answer": f" {n}", "held_out": t.name in world.held_out} for t in world.towns for a, n in t.facts.items()]


def check_math_answer(world: World, problem: MathProblem) -> bool:
    """Recompute the answer from the problem text (and, for knowledge questions, the world's facts) alone."""
    words = problem.problem.replace(".", " ").replace("?", " ").split()
    nums = [int(w) for w in words if w.isdigit()]
    fam = problem.family
    if fam == "chain":
        value = nums[0]
        for i, w in enumerate(words):
            if w in ("loads", "unloads"):
                value += int(words[i + 1]) * (1 if w == "loads" else -1)
        value *= 2 if "doubled" in words else 1
    elif fam == "rows":
        value = nums[0] * nums[1]
        for i, w in enumerate(words):
            if w in ("sold", "arrive"):
                k = int(words[i - 3])  # "{k} {goods} are sold", "{k} more {goods} arrive"
                value += k if w == "arrive" else -k
    elif fam == "share":
        n = nums[0] * nums[1] if "carts" in words else nums[0]
        m = int(words[words.index("among") + 1])
        value = n % m if "left" in words else n // m
    elif fam == "number":
        if len(nums) == 4:  # a x + b = c x + d
            a, b, c, d = nums
            value = (d - b) // (a - c) if (d - b) % (a - c) == 0 else None
        else:
            a, b, c = nums
            value = (c - b) // a if (c - b) % a == 0 else None
    elif fam == "drill":
        value = drill_value(problem.problem)
    else:
        value = _knowledge_value(world, problem.problem, words, nums)
    return value is not None and format_answer(value) == problem.answer


def _knowledge_value(world: World, text: str, words: list[str], nums: list[int]) -> int:
    names = [w for w in words if any(w == t.name for t in world.towns)]
    attr = next(a for a, (one, many) in ATTRIBUTES.items() if many in words)
    facts = [world.town(n).facts[attr] for n in dict.fromkeys(names)]
    if "together" in words:
        return facts[0] + facts[1]
    if "every" in words:
        return facts[0] * nums[0]
    return facts[0] + nums[0]


# ---------------------------------------------------------------------------------------------- code problems
# stdin programs. Each task is a family with parameters; the train/test split is by task (a seeded hash), the
# competition set composes two operations, which no training task does.

LIST_FILTERS = {"all": ("every number", None), "even": ("the even numbers", "x % 2 == 0"),
                "odd": ("the odd numbers", "x % 2 == 1"), "above": ("the numbers greater than {k}", "x > {k}"),
                "below": ("the numbers less than {k}", "x < {k}"), "multiple": ("the multiples of {k}", "x % {k} == 0")}
LIST_REDUCERS = {"sum": ("the sum of", "sum(vals)"), "count": ("the count of", "len(vals)"),
                 "max": ("the largest of", "max(vals)"), "min": ("the smallest of", "min(vals)")}


@dataclass(frozen=True)
class CodeSpec:
    key: str
    statement: str  # what to print
    input_kind: str  # "list", "pair", "int", "word"
    body: list[str]  # statements computing `result` from the input variables
    reasoning: str
    nonempty: str | None = None  # a filter condition the input must satisfy at least once (max/min of a selection)
    hard: bool = False


def list_specs(hard: bool = False) -> list[CodeSpec]:
    specs = []
    ks = range(2, 8)
    for filt, (phrase, cond) in LIST_FILTERS.items():
        for k in (ks if cond and "{k}" in cond else [0]):
            for red, (red_phrase, expr) in LIST_REDUCERS.items():
                p, c = phrase.format(k=k), cond.format(k=k) if cond else None
                select = f"vals = [x for x in nums if {c}]" if c else "vals = nums"
                if hard:  # composed: the selection's result times a factor plus an offset
                    m = 2 + (k + len(red)) % 4
                    specs.append(CodeSpec(f"hard-list/{filt}/{k}/{red}", f"Print {red_phrase} {p}, multiplied by {m}",
                                          "list", [select, f"result = {expr} * {m}"],
                                          f"Select {p}, reduce, then multiply by {m}.",
                                          c if red in ("max", "min") else None, True))
                else:
                    specs.append(CodeSpec(f"list/{filt}/{k}/{red}", f"Print {red_phrase} {p}", "list",
                                          [select, f"result = {expr}"], f"Select {p}, then take {red_phrase} them.",
                                          c if red in ("max", "min") else None))
    return specs


def formula_specs() -> list[CodeSpec]:
    return [CodeSpec(f"pair/{p}/{q}", f"Read two integers a and b and print {p} * a + {q} * b", "pair",
                     [f"result = {p} * a + {q} * b"], f"Compute {p} * a + {q} * b.") for p in range(1, 8)
            for q in range(1, 8)]


def loop_specs() -> list[CodeSpec]:
    specs = [CodeSpec(f"multiples/{k}", f"Print the sum of the multiples of {k} from 1 to n", "int",
                      [f"result = sum(i for i in range(1, n + 1) if i % {k} == 0)"],
                      f"Add every i from 1 to n that {k} divides.") for k in range(2, 10)]
    specs += [CodeSpec(f"countdiv/{k}", f"Print how many numbers from 1 to n are divisible by {k}", "int",
                       [f"result = n // {k}"], f"Every {k}-th number is divisible by {k}.") for k in range(2, 10)]
    specs += [CodeSpec("word/reverse", "Print the word reversed", "word", ["result = w[::-1]"], "Reverse the word."),
              CodeSpec("word/length", "Print the length of the word", "word", ["result = len(w)"],
                       "Count the letters."),
              CodeSpec("word/upper", "Print the word in upper case", "word", ["result = w.upper()"], "Upper-case it.")]
    specs += [CodeSpec(f"word/count/{c}", f'Print how many times the letter "{c}" appears in the word', "word",
                       [f'result = w.count("{c}")'], f'Count the letter "{c}".') for c in "aeiou"]
    return specs


def hard_specs() -> list[CodeSpec]:
    """Compositions for the competition set: a filtered reduction scaled, a formula over a reduction, two loops."""
    specs = list_specs(hard=True)
    specs += [CodeSpec(f"hard-multdiff/{k}/{j}", f"Print the sum of the multiples of {k} from 1 to n minus the "
                       f"number of multiples of {j} from 1 to n", "int",
                       [f"result = sum(i for i in range(1, n + 1) if i % {k} == 0) - n // {j}"],
                       f"Sum the multiples of {k}, then subtract how many multiples of {j} there are.", None, True)
              for k in range(2, 7) for j in range(2, 7) if j != k]
    return specs


def code_operations(key: str) -> set[str]:
    """The operations a code task's program uses: a list task's filter and reducer ("list/above/5/min" -> {"filter
    above", "reduce min"}); any other task its key without numeric parameters ("pair/3/4" -> {"pair"}, "word/count/a"
    -> {"word/count/a"}: a letter is a string the program must hold)."""
    parts = key.split("/")
    if parts[0] == "list":
        return {f"filter {parts[1]}", f"reduce {parts[3]}"}
    return {"/".join(part for part in parts if not part.isdigit())}


def is_code_test_task(key: str, seed: int, fraction: float = 0.2) -> bool:
    digest = hashlib.sha256(f"mini-world-code:{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


_READERS = {"list": ["n = int(input())", "nums = list(map(int, input().split()))"],
            "pair": ["a, b = map(int, input().split())"], "int": ["n = int(input())"], "word": ["w = input()"]}
_FORMATS = {"list": "The first line holds n, the second n integers separated by spaces.",
            "pair": "One line with two integers a and b.", "int": "One line with an integer n.",
            "word": "One line with a word of lowercase letters."}


def _make_input(spec: CodeSpec, rng: random.Random):
    if spec.input_kind == "list":
        while True:
            nums = [rng.randint(0, 30) for _ in range(rng.randint(1, 8))]
            if spec.nonempty is None or any(eval(spec.nonempty, {}, {"x": x}) for x in nums):
                return {"nums": nums, "n": len(nums)}
    if spec.input_kind == "pair":
        return {"a": rng.randint(-20, 50), "b": rng.randint(-20, 50)}
    if spec.input_kind == "int":
        return {"n": rng.randint(1, 150)}
    return {"w": "".join(rng.choice("abeiklmnorstu") for _ in range(rng.randint(1, 9)))}


def _stdin(kind: str, values: dict) -> str:
    if kind == "list":
        return f"{values['n']}\n{' '.join(map(str, values['nums']))}\n"
    if kind == "pair":
        return f"{values['a']} {values['b']}\n"
    return f"{values['n' if kind == 'int' else 'w']}\n"


def run_reference(spec: CodeSpec, values: dict):
    """The expected output, computed here from the spec's statements (the grader checks the program text)."""
    scope = dict(values)
    exec("\n".join(spec.body), {}, scope)  # generated by this module only: fixed statements over ints and strings
    return scope["result"]


def render_code_task(spec: CodeSpec, rng: random.Random, num_tests: int = 5) -> CodeTask:
    inputs: list[dict] = []
    for _ in range(num_tests * 20):
        values = _make_input(spec, rng)
        if values not in inputs:
            inputs.append(values)
        if len(inputs) == num_tests:
            break
    tests = [{"input": _stdin(spec.input_kind, v), "output": f"{run_reference(spec, v)}\n", "testtype": "stdin"}
             for v in inputs]
    code = "\n".join(_READERS[spec.input_kind] + spec.body + ["print(result)"])
    question = (f"{spec.statement}.\n\nInput\n{_FORMATS[spec.input_kind]}\n\nExample\nInput:\n{tests[0]['input']}"
                f"Output:\n{tests[0]['output']}").rstrip()
    return CodeTask(key=spec.key, title=spec.key, question=question, mode="stdin", func_name=None, starter_code="",
                    reasoning=spec.reasoning, code=code, tests=tests)


def code_problems(specs: list[CodeSpec], count: int, seed: int, salt: str) -> list[CodeTask]:
    rng = random.Random(f"mini-world-code:{seed}:{salt}")
    specs = list(specs)
    rng.shuffle(specs)  # then cycle: every task appears before any appears twice
    counter = iter(range(10 ** 9))
    return _distinct(lambda: render_code_task(specs[next(counter) % len(specs)], rng), count, set(),
                     f"code problems ({salt})", text=lambda t: t.question)



def web_code_specs() -> list[CodeSpec]:
    """Programs of the code tasks' shapes with parameters no task and no competition item uses (k 8-13, coefficients
    8-11, consonant letters, scaled selections, chained word operations): the corpus' stdin programs (issue 23), so
    that every line shape and reasoning phrase of the SFT answers occurs in pre-training text without any task's
    answer in it."""
    specs = []
    for filt, (phrase, cond) in LIST_FILTERS.items():
        for red, (red_phrase, expr) in LIST_REDUCERS.items():
            if cond is None or "{k}" not in cond:  # no parameter: scaled, so that no task's program is shown
                c = cond
                select = f"vals = [x for x in nums if {c}]" if c else "vals = nums"
                for m in (6, 7):
                    specs.append(CodeSpec(f"web-list/{filt}/{red}/{m}", f"Print {m} times {red_phrase} {phrase}",
                                          "list", [select, f"result = {expr} * {m}"],
                                          f"Select {phrase}, reduce, then multiply by {m}.",
                                          c if red in ("max", "min") else None))
                continue
            for k in range(8, 14):
                p, c = phrase.format(k=k), cond.format(k=k)
                specs.append(CodeSpec(f"web-list/{filt}/{k}/{red}", f"Print {red_phrase} {p}", "list",
                                      [f"vals = [x for x in nums if {c}]", f"result = {expr}"],
                                      f"Select {p}, then take {red_phrase} them.", c if red in ("max", "min") else None))
    specs += [CodeSpec(f"web-pair/{p}/{q}", f"Print {p} * a + {q} * b for two integers a and b", "pair",
                       [f"result = {p} * a + {q} * b"], f"Compute {p} * a + {q} * b.")
              for p in range(8, 12) for q in range(8, 12)]
    specs += [CodeSpec(f"web-multiples/{k}", f"Print the sum of the multiples of {k} from 1 to n", "int",
                       [f"result = sum(i for i in range(1, n + 1) if i % {k} == 0)"],
                       f"Add every i from 1 to n that {k} divides.") for k in range(10, 16)]
    specs += [CodeSpec(f"web-countdiv/{k}", f"Print the count of numbers from 1 to n divisible by {k}", "int",
                       [f"result = n // {k}"], f"Every {k}-th number is divisible by {k}.") for k in range(10, 16)]
    specs += [CodeSpec(f"web-word/count/{c}", f'Print how many times the letter "{c}" appears in the word', "word",
                       [f'result = w.count("{c}")'], f'Count the letter "{c}".') for c in "klmnrst"]
    specs += [CodeSpec("web-word/reverse-upper", "Print the word reversed and in upper case", "word",
                       ["result = w[::-1]", "result = result.upper()"], "Reverse the word. Upper-case it."),
              CodeSpec("web-word/length-twice", "Print twice the length of the word", "word",
                       ["result = len(w)", "result = result * 2"], "Count the letters. Double the count.")]
    return specs


def web_program_document(rng: random.Random, specs: list[CodeSpec]) -> str:
    """A stdin program as a web page shows one: what it prints (worded unlike a task's instruction, so that no
    evaluation question shares a word 8-gram with it), the reasoning line, the program in a ```python fence, and one
    run (its input in a plain fence, then the output)."""
    spec = rng.choice(specs)
    task = render_code_task(spec, rng, num_tests=1)
    run = task.tests[0]
    return (f"A program that prints {spec.statement.removeprefix('Print ')}.\n{task.solution}\nGiven the input\n"
            f"```\n{run['input']}```\nit prints {run['output'].strip()}.")


# ---------------------------------------------------------------------------------------------- all sets


@dataclass
class WorldTasks:
    math_train: list[MathProblem] = field(default_factory=list)
    math_test: list[MathProblem] = field(default_factory=list)
    math_competition: list[MathProblem] = field(default_factory=list)
    knowledge_probe: list[MathProblem] = field(default_factory=list)  # held-out towns
    knowledge_seen: list[MathProblem] = field(default_factory=list)  # seen towns, not in SFT
    code_train: list[CodeTask] = field(default_factory=list)
    code_test: list[CodeTask] = field(default_factory=list)
    code_competition: list[CodeTask] = field(default_factory=list)
    fill_in: list[dict] = field(default_factory=list)


def build_world_tasks(world: World, spec: WorldSpec) -> WorldTasks:
    """Evaluation sets first; the SFT pool excludes their texts (math) or their tasks (code)."""
    math_test = self_contained_problems(world, spec.math_test, (1, 2), "test", numbers=spec.math_numbers)
    math_comp = self_contained_problems(world, spec.math_competition, (3,), "competition")
    probe = knowledge_problems(world, spec.knowledge_probe, world.held_out, "probe")
    seen_eval = knowledge_problems(world, spec.knowledge_seen, world.seen, "seen-eval")
    held = {p.problem for p in math_test + math_comp + probe + seen_eval}
    n_know = int(spec.math_train * spec.knowledge_fraction)
    n_drill = int(spec.math_train * spec.drill_fraction)
    train = (self_contained_problems(world, spec.math_train - n_know - n_drill, (1, 2), "train", held,
                                     spec.math_numbers)
             + knowledge_problems(world, n_know, world.seen, "train", held)
             + drill_problems(world, n_drill, "train", spec.math_numbers))
    random.Random(f"mini-world-train-order:{spec.seed}").shuffle(train)  # prefixes (×1, ×4) keep the mix
    base_specs = list_specs() + formula_specs() + loop_specs()
    test_specs = [s for s in base_specs if is_code_test_task(s.key, spec.seed)]
    train_specs = [s for s in base_specs if not is_code_test_task(s.key, spec.seed)]
    if spec.code_split == "covered":  # drop test tasks whose operation SFT never shows (training is unchanged)
        trained = set().union(*(code_operations(s.key) for s in train_specs))
        test_specs = [s for s in test_specs if code_operations(s.key) <= trained]
    return WorldTasks(math_train=train, math_test=math_test, math_competition=math_comp, knowledge_probe=probe,
                      knowledge_seen=seen_eval,
                      code_train=code_problems(train_specs, spec.code_train, spec.seed, "train"),
                      code_test=code_problems(test_specs, spec.code_test, spec.seed, "test"),
                      code_competition=code_problems(hard_specs(), spec.code_competition, spec.seed, "competition"),
                      fill_in=fill_in_probe(world))


def word_ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def contaminated(texts: list[str], corpus: list[str], n: int = 8) -> list[str]:
    """The texts that share a word n-gram with the corpus (a build should refuse a world where an evaluation item
    does: the corpus must never hold a benchmark item)."""
    corpus_grams = set().union(*(word_ngrams(doc, n) for doc in corpus))
    return [t for t in texts if word_ngrams(t, n) & corpus_grams]


def train_world_tokenizer(corpus: list[str], tasks: WorldTasks, vocab_size: int):
    """The miniature's byte-level BPE (posttrain.mini.tokenizer.train_tokenizer) trained on this world's corpus and SFT
    texts rendered through the SFT prompts, so the vocabulary is the world's words."""
    from posttrain.mini.tokenizer import train_tokenizer
    from posttrain.prompts import code_sft_messages, math_sft_messages

    sft = [m["content"] for p in tasks.math_train for m in math_sft_messages(p.problem, p.solution)]
    sft += [m["content"] for t in tasks.code_train for m in code_sft_messages(t.question, t.solution)]
    return train_tokenizer(corpus + sft, vocab_size)


# ---------------------------------------------------------------------------------------------- sizes (CLI)


def world_stats(spec: WorldSpec, vocab_sizes: tuple[int, ...] = ()) -> list[str]:
    """Sizes and build times of a world (docs/miniature.md §13), and token counts per tokenizer size."""
    import time

    t0 = time.perf_counter()
    world = make_world(spec)
    corpus = build_world_corpus(world, spec)
    t1 = time.perf_counter()
    tasks = build_world_tasks(world, spec)
    t2 = time.perf_counter()
    problems = (tasks.math_train + tasks.math_test + tasks.math_competition + tasks.knowledge_probe
                + tasks.knowledge_seen)
    wrong = sum(not check_math_answer(world, p) for p in problems)
    lines = [f"world seed {spec.seed}: {len(world.towns)} towns, corpus {len(corpus)} documents, "
             f"{sum(map(len, corpus)):,} characters ({t1 - t0:.1f} s); sets ({t2 - t1:.1f} s): "
             + ", ".join(f"{k} {len(v)}" for k, v in tasks.__dict__.items())
             + f"; math answers wrong when recomputed: {wrong} of {len(problems)}"]
    for vocab in vocab_sizes:
        t = time.perf_counter()
        tok = train_world_tokenizer(corpus, tasks, vocab)
        train_s = time.perf_counter() - t
        corpus_tokens = sum(len(ids) for ids in tok(corpus, add_special_tokens=False)["input_ids"])
        lines.append(f"vocab {len(tok)}: trained in {train_s:.1f} s, corpus {corpus_tokens:,} tokens, SFT example "
                     f"tokens (mean/max) math {_chat_lengths(tok, tasks, 'math')}, "
                     f"code {_chat_lengths(tok, tasks, 'code')}")
    return lines


def _chat_lengths(tok, tasks: WorldTasks, domain: str, sample: int = 1000) -> str:
    from posttrain.prompts import code_sft_messages, math_sft_messages

    msgs = ([math_sft_messages(p.problem, p.solution) for p in tasks.math_train[:sample]] if domain == "math" else
            [code_sft_messages(t.question, t.solution) for t in tasks.code_train[:sample]])
    lengths = [len(tok.apply_chat_template(m, tokenize=True, return_dict=True)["input_ids"]) for m in msgs]
    return f"{sum(lengths) / len(lengths):.0f}/{max(lengths)}"


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Sizes of a generated world: python -m posttrain.mini.world --vocab 1024")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vocab", type=int, nargs="*", default=[], help="also train tokenizers of these sizes")
    cli = ap.parse_args()
    print("\n".join(world_stats(WorldSpec(seed=cli.seed), tuple(cli.vocab))))
