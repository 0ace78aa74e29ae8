"""Benchmarks as data: one declarative `BenchmarkSpec` per benchmark, one loader for all of them.

A spec names where the rows live (hub dataset or a file under `data_dir`), which row fields hold the id, the
problem, the answer or the tests, and which grader scores it with which semantics (`grader_label`, recorded in every
results row). `load_benchmark` turns rows into `Problem`s; rows that
cannot be graded (no answer, no tests) are returned beside them in `ProblemSet.ungradable`, never dropped silently.

LiveCodeBench private tests are stored as base64(zlib(pickle(json string))). They are unpickled with a restricted
unpickler that refuses every class (a pickled `str` needs none), so a tampered file raises instead of running code.
Run the tests with `.venv/bin/python -m pytest tests/test_eval_sets.py -q`.
"""
from __future__ import annotations

import base64
import io
import json
import pickle
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from posttrain.params import REPO_ROOT
from posttrain.records import read_jsonl

SHARED_DATA_DIR = REPO_ROOT.parent / "shared" / "data"


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    domain: Literal["math", "code"]
    format: Literal["math", "lcb", "humaneval", "mbpp", "gsm8k"]  # which row → Problem mapping applies
    local_path: str | None  # relative to data_dir: a .jsonl file, or a dir of *.jsonl files (LCB's hub layout)
    hub_id: str | None = None
    hub_config: str | None = None
    hub_split: str = "test"
    hub_files: tuple[str, ...] = ()  # read these jsonl files from the hub repo instead of `datasets.load_dataset`
    # Field names, first present wins (hub and local copies of one benchmark name their fields differently).
    id_fields: tuple[str, ...] = ("id", "unique_id", "problem_idx", "question_id", "task_id")
    problem_fields: tuple[str, ...] = ("problem", "question", "question_content", "text", "prompt")
    answer_fields: tuple[str, ...] = ("answer", "expected_answer")
    row_filter: tuple[str, str] | None = None  # (field, substring) a row must contain, e.g. one year of AIME
    date_window: tuple[str, str] | None = None  # LCB: contest_date in [start, end), ISO dates
    grader: Literal["math", "code"] = "math"
    # Code only: how a response is run and compared (posttrain.grading.code): "lcb" = LiveCodeBench's runner's
    # verdicts, "strict" = the program as a real interpreter runs it.
    semantics: Literal["lcb", "strict"] | None = None
    stands_in_for: str = ""  # a miniature set: the paper's benchmark(s) it replaces in the tables
    note: str = ""
    probe: bool = False  # not a paper benchmark: the report keeps it out of Tables 1-3 and the claims

    def __post_init__(self):
        if (self.grader == "code") != (self.semantics is not None):
            raise ValueError(f"benchmark {self.name!r}: a code benchmark needs semantics 'lcb' or 'strict', a math "
                             f"one none (grader={self.grader!r}, semantics={self.semantics!r})")

    @property
    def grader_label(self) -> str:
        """What produced the verdicts: "math", "code:lcb" or "code:strict" (results.csv's `grader` column)."""
        return self.grader if self.semantics is None else f"{self.grader}:{self.semantics}"


def _math(name, local, hub, **kw) -> BenchmarkSpec:
    return BenchmarkSpec(name=name, domain="math", format="math", local_path=local, hub_id=hub, **kw)


# LCB release_v6 = test.jsonl .. test6.jsonl of livecodebench/code_generation_lite (the releases are cumulative).
_LCB_FILES = ("test.jsonl", "test2.jsonl", "test3.jsonl", "test4.jsonl", "test5.jsonl", "test6.jsonl")


def _lcb(name, window, note) -> BenchmarkSpec:
    return BenchmarkSpec(name=name, domain="code", format="lcb", grader="code", semantics="lcb",
                         local_path="livecodebench/code_generation_lite", hub_id="livecodebench/code_generation_lite",
                         hub_files=_LCB_FILES, date_window=window, note=note)


BENCHMARKS: dict[str, BenchmarkSpec] = {s.name: s for s in [
    _math("math500", "math500/test.jsonl", "HuggingFaceH4/MATH-500"),
    # The hub copy holds AIME 2022-2024; its rows carry an AoPS url naming the year.
    _math("aime24", "aime_2024/aime_2024_matharena.jsonl", "AI-MO/aimo-validation-aime", hub_split="train",
          row_filter=("url", "2024_AIME")),
    _math("aime25", "aime_2025/aime_2025_matharena.jsonl", "MathArena/aime_2025", hub_split="train"),
    _math("hmmt_feb25", "hmmt_feb_2025/hmmt_feb_2025_matharena.jsonl", "MathArena/hmmt_feb_2025", hub_split="train"),
    _math("hmmt_nov25", None, "MathArena/hmmt_nov_2025", hub_split="train", note="hub only (no offline copy)"),
    BenchmarkSpec("gsm8k", "math", "gsm8k", "gsm8k/test.jsonl", "openai/gsm8k", hub_config="main"),
    _lcb("lcb_v5", ("2024-08-01", "2025-02-01"), "release_v6 rows dated 2024-08-01 .. 2025-01-31"),
    _lcb("lcb_v6", ("2024-08-01", "2025-05-01"), "release_v6 rows dated 2024-08-01 .. 2025-04-30"),
    # HumanEval/MBPP are not LiveCodeBench problems: their asserts run after the solution as one real program, so
    # they are graded as a real interpreter runs them.
    BenchmarkSpec("humaneval", "code", "humaneval", "humaneval/HumanEval.jsonl", "openai/openai_humaneval",
                  grader="code", semantics="strict"),
    BenchmarkSpec("mbpp", "code", "mbpp", "mbpp/mbpp.jsonl", "google-research-datasets/mbpp", hub_config="full",
                  grader="code", semantics="strict"),
    # The miniature's generated benchmarks (posttrain.mini writes them to {run_dir}/setup/data). mini_code is in
    # LiveCodeBench's format and stands in for LCB, so it is graded by LCB's rules: its numbers then mean what the
    # paper's LCB numbers mean, and the miniature exercises the grading path of paper-scale runs.
    _math("mini_math", "mini_math_test.jsonl", None, stands_in_for="MATH-500"),
    _math("mini_math_competition", "mini_math_competition.jsonl", None,
          stands_in_for="competition-math average (AIME 24, AIME 25, HMMT Feb 25, HMMT Nov 25)"),
    BenchmarkSpec("mini_code", "code", "lcb", "mini_code_test.jsonl", None, grader="code", semantics="lcb",
                  stands_in_for="LiveCodeBench v5 and v6"),
    BenchmarkSpec("mini_code_competition", "code", "lcb", "mini_code_competition.jsonl", None, grader="code",
                  semantics="lcb", stands_in_for="harder code (compositions never trained on)"),
    # Probes, not paper benchmarks: questions that need a town's facts, which only pre-training text states for
    # held-out towns (and SFT's knowledge questions also teach for seen ones). The report keeps them apart.
    _math("mini_knowledge_probe", "mini_knowledge_probe.jsonl", None, probe=True,
          note="facts of held-out towns (only the pre-training text states them)"),
    _math("mini_knowledge_seen", "mini_knowledge_seen.jsonl", None, probe=True,
          note="facts of SFT-seen towns (questions not in SFT)"),
]}

# The paper's competition-math average (Table 1) and its columns (Table 2); the miniature has one generated set.
PAPER_COMPETITIONS = ("aime24", "aime25", "hmmt_feb25", "hmmt_nov25")
COMPETITION_MATH = PAPER_COMPETITIONS + ("mini_math_competition",)
BENCHMARK_DOMAIN = {name: spec.domain for name, spec in BENCHMARKS.items()}
PROBES = tuple(name for name, spec in BENCHMARKS.items() if spec.probe)


@dataclass
class Problem:
    id: str
    benchmark: str
    domain: Literal["math", "code"]
    problem: str
    answer: str | None = None  # math gold
    tests: list[dict] = field(default_factory=list)  # code: [{"input", "output", "testtype"}]
    fn_name: str | None = None  # code, functional tests: the method/function the tests call
    starter_code: str = ""
    test_program: str | None = None  # HumanEval/MBPP: assert code appended to the solution (see grading_item)
    metadata: dict[str, Any] = field(default_factory=dict)


class ProblemSet(list):
    """The gradable problems (a list), with `.ungradable`: [{"row", "id", "reason"}] for rows left out."""

    def __init__(self, problems=(), ungradable=None, benchmark: str = ""):
        super().__init__(problems)
        self.ungradable: list[dict] = ungradable or []
        self.benchmark = benchmark


def get_spec(name: str) -> BenchmarkSpec:
    if name not in BENCHMARKS:
        raise KeyError(f"unknown benchmark {name!r}; known: {sorted(BENCHMARKS)}")
    return BENCHMARKS[name]


def decode_lcb_tests(raw: Any, *, where: str = "") -> list[dict]:
    """LCB test cases: a JSON list, or the private-test encoding base64 → zlib → pickle → JSON string."""
    if isinstance(raw, list):
        return raw
    if not isinstance(raw, str) or not raw.strip():
        return []
    text = raw.strip()
    if not text.startswith("["):
        try:
            text = _RefuseClassesUnpickler(io.BytesIO(zlib.decompress(base64.b64decode(text)))).load()
        except Exception as e:
            raise ValueError(f"{where}: test cases are neither JSON nor LCB's base64/zlib/pickle encoding ({e})") from e
    tests = json.loads(text) if isinstance(text, str) else text
    if not isinstance(tests, list):
        raise ValueError(f"{where}: test cases decode to {type(tests).__name__}, expected a list")
    return tests


def encode_lcb_tests(tests: list[dict]) -> str:
    """The inverse of decode_lcb_tests' private form (for fixtures)."""
    return base64.b64encode(zlib.compress(pickle.dumps(json.dumps(tests)))).decode()


class _RefuseClassesUnpickler(pickle.Unpickler):
    # A pickled JSON string needs no class; anything asking for one is not LCB data and must not run.
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from LCB test data")


def _first(row: dict, names: tuple[str, ...]) -> Any:
    for n in names:
        if n in row and row[n] is not None and row[n] != "":
            return row[n]
    return None


def read_rows(spec: BenchmarkSpec, data_dir: str | Path | None) -> list[dict]:
    """Raw rows: from `data_dir/<local_path>` when data_dir is given, else from the hub."""
    if data_dir is not None:
        if spec.local_path is None:
            raise FileNotFoundError(f"benchmark {spec.name!r} has no offline copy ({spec.note}); "
                                    f"load it from the hub {spec.hub_id!r} with evaluate.data_dir: null")
        path = Path(data_dir) / spec.local_path
        if path.is_dir():
            files = sorted(path.glob("*.jsonl"))
            if not files:
                raise FileNotFoundError(f"benchmark {spec.name!r}: no *.jsonl files in {path}")
            return [r for f in files for r in read_jsonl(f)]
        if not path.is_file():
            raise FileNotFoundError(f"benchmark {spec.name!r}: local file not found: {path}")
        return read_jsonl(path)
    if spec.hub_id is None:
        raise FileNotFoundError(f"benchmark {spec.name!r} exists only as local files ({spec.local_path}); "
                                "set evaluate.data_dir")
    try:
        if spec.hub_files:  # LCB's loading script is not supported by current `datasets`; read its files directly
            from huggingface_hub import hf_hub_download
            return [r for fn in spec.hub_files
                    for r in read_jsonl(Path(hf_hub_download(spec.hub_id, fn, repo_type="dataset")))]
        from datasets import load_dataset
        return [dict(r) for r in load_dataset(spec.hub_id, spec.hub_config, split=spec.hub_split)]
    except Exception as e:
        raise RuntimeError(f"benchmark {spec.name!r}: could not load {spec.hub_id!r} from the hub ({e}); "
                           "offline, set evaluate.data_dir to a folder with local copies") from e


def _to_problem(spec: BenchmarkSpec, row: dict, index: int) -> tuple[Problem | None, str | None]:
    """(Problem, None) or (None, why it cannot be graded)."""
    pid = _first(row, spec.id_fields)
    pid = str(pid) if pid is not None else f"{spec.name}/{index}"
    base = dict(id=pid, benchmark=spec.name, domain=spec.domain)
    fmt = spec.format
    if fmt in ("math", "gsm8k"):
        text, answer = _first(row, spec.problem_fields), _first(row, spec.answer_fields)
        if fmt == "gsm8k" and isinstance(answer, str):
            answer = answer.split("####")[-1].strip().replace(",", "") if "####" in answer else None
        if not text:
            return None, "no problem text"
        if answer is None or str(answer).strip() == "":
            return None, "no answer"
        meta = {k: row[k] for k in ("subject", "level", "competition", "url") if k in row}
        return Problem(**base, problem=str(text), answer=str(answer).strip(), metadata=meta), None
    if fmt == "lcb":
        where = f"{spec.name} row {index} ({pid})"
        tests = decode_lcb_tests(row.get("public_test_cases"), where=where + " public_test_cases") + \
            decode_lcb_tests(row.get("private_test_cases"), where=where + " private_test_cases")
        meta_raw = row.get("metadata") or "{}"
        meta = json.loads(meta_raw) if isinstance(meta_raw, str) else dict(meta_raw)
        if not row.get("question_content"):
            return None, "no question_content"
        if not tests:
            return None, "no test cases"
        bad = [t for t in tests if not {"input", "output", "testtype"} <= set(t)]
        if bad:
            return None, f"test case missing input/output/testtype: {bad[0]}"
        fn_name = meta.get("func_name")
        if any(t["testtype"] == "functional" for t in tests) and not fn_name:
            return None, "functional tests but no metadata.func_name"
        info = {k: row.get(k) for k in ("question_title", "platform", "contest_date", "difficulty") if k in row}
        return Problem(**base, problem=row["question_content"], tests=tests, fn_name=fn_name,
                       starter_code=row.get("starter_code") or "", metadata=info), None
    if fmt == "humaneval":
        if not row.get("test") or not row.get("entry_point"):
            return None, "no test or entry_point"
        return Problem(**base, problem=row["prompt"], starter_code=row["prompt"], fn_name=row["entry_point"],
                       test_program=f"{row['test']}\ncheck({row['entry_point']})\n"), None
    if fmt == "mbpp":
        asserts = list(row.get("test_list") or []) + list(row.get("challenge_test_list") or [])
        if not asserts:
            return None, "no test_list"
        text = f"{row['text']}\nYour code should pass these tests:\n" + "\n".join(row["test_list"])
        setup = row.get("test_setup_code") or ""
        return Problem(**base, problem=text, test_program=setup + "\n" + "\n".join(asserts) + "\n"), None
    raise ValueError(f"{spec.name}: unknown format {fmt!r}")


def _in_window(row: dict, window: tuple[str, str], where: str) -> bool:
    date = row.get("contest_date")
    if not date:
        raise ValueError(f"{where}: no contest_date, needed for the date window {window}")
    return window[0] <= str(date)[:10] < window[1]


def load_benchmark(name: str, data_dir: str | Path | None = None, limit: int | None = None) -> ProblemSet:
    """Problems of one benchmark (a list), in file order; `.ungradable` lists the rows left out and why."""
    spec = get_spec(name)
    rows = read_rows(spec, data_dir)
    if spec.row_filter and data_dir is None:  # local copies hold one year already
        key, sub = spec.row_filter
        rows = [r for r in rows if sub in str(r.get(key, ""))]
    if spec.date_window:
        rows = [r for i, r in enumerate(rows) if _in_window(r, spec.date_window, f"{name} row {i}")]
    problems, ungradable, seen = [], [], set()
    for i, row in enumerate(rows):
        problem, why = _to_problem(spec, row, i)
        if problem is not None and problem.id in seen:
            problem, why = None, f"duplicate id {problem.id!r}"
        if problem is None:
            ungradable.append({"row": i, "id": _first(row, spec.id_fields), "reason": why})
            continue
        seen.add(problem.id)
        problems.append(problem)
    if limit is not None:
        problems = problems[:limit]
    return ProblemSet(problems, ungradable, benchmark=name)


def prompt_messages(problem: Problem, template: str | None = None) -> list[dict]:
    """Chat messages for one problem, in the paper's zero-shot templates (posttrain.prompts)."""
    from posttrain.prompts import code_eval_messages, math_eval_messages
    if problem.domain == "math":
        return math_eval_messages(problem.problem, template or "boxed")
    return code_eval_messages(problem.problem, problem.starter_code, template or "lcb")


def render_prompt(problem: Problem, tokenizer, template: str | None = None) -> str:
    """The prompt string the model sees: the messages through the tokenizer's chat template."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat_template; evaluation "
                         "renders prompts through the chat template of the model under test")
    return tokenizer.apply_chat_template(prompt_messages(problem, template), add_generation_prompt=True,
                                         tokenize=False)


def grading_item(problem: Problem, response: str) -> dict:
    """The code grader's input for one sample: the raw response (the grader extracts the program by its semantics,
    the benchmark's `semantics`) and the tests. HumanEval/MBPP asserts become one stdin test: the grader appends
    `test_program` (the asserts, then a print of a sentinel) to the extracted solution, so any failing assert (a
    non-zero exit) fails the sample."""
    item = {"response": response, "tests": problem.tests, "fn_name": problem.fn_name}
    if problem.test_program is not None:
        item.update(tests=[{"input": "", "output": ASSERTS_PASSED, "testtype": "stdin"}], fn_name=None,
                    test_program=f"{problem.test_program}\nprint({ASSERTS_PASSED!r})\n")
    return item


ASSERTS_PASSED = "__ALL_ASSERTS_PASSED__"
