"""Grading throughput and agreement, each against the obvious simpler way, in one run.

Math: MATH-500 gold answers (../shared/data/math500/test.jsonl) graded as responses ending in \\boxed{...}:
half the gold answer itself, half another problem's gold answer (mostly wrong). Compared: grade_math_batch
(parallel worker processes), grade_math called one by one, and Math-Verify's parse+verify called directly
in this process (no timeout protection, no isolation). Agreement with Math-Verify is printed too.

Code: MBPP problems (../shared/data/mbpp/mbpp.jsonl) turned into stdin problems: the reference solution plus
a driver that reads the call's arguments as a Python literal on stdin and prints repr(result); each assert
becomes a test. Tests are repeated --repeat times to look like LiveCodeBench (dozens of tests per problem);
--wrong-frac of the programs are made wrong so that they stop at their first test. Compared on the same
programs/tests, with the same number of worker threads: grade_code_batch (semantics "lcb" and "strict") in
bubblewrap and without it, and a runner-style baseline written like LiveCodeBench's runner minus its
multiprocessing Manager: one `python -c` process per response, no sandbox and no limits, that imports the
prelude, executes the wrapped program once and runs all its tests in order in that process (fake stdin,
captured stdout), stopping at the first failure. The warm sandboxes are started before the timing (their
one-time start is printed separately), as a grading run starts them once and reuses them.

Run agreement (--run-dir runs/smoke): every code sample of a finished run's eval records, graded under
"lcb" and "strict"; prints how often the two verdicts disagree.

Run: .venv/bin/python benchmarks/grading.py [--math-n 200] [--code-n 30] [--repeat 10] [--run-dir runs/smoke]
"""
from __future__ import annotations

import argparse
import ast
import importlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


# ---------------------------------------------------------------- math

def math_pairs(n: int, seed: int = 0) -> list:
    rows = [json.loads(line) for line in (DATA / "math500" / "test.jsonl").read_text().splitlines() if line]
    rng = random.Random(seed)
    rows = rows[:n]
    pairs = []
    for i, row in enumerate(rows):
        answer = row["answer"] if i % 2 == 0 else rng.choice(rows)["answer"]
        pairs.append((f"Working through the problem step by step... so the answer is $\\boxed{{{answer}}}$.",
                      row["answer"]))
    return pairs


def bench_math(n: int, workers: int) -> None:
    from posttrain.grading.math import grade_math, grade_math_batch
    pairs = math_pairs(n)
    print(f"\n== math: {len(pairs)} MATH-500 (response, gold) pairs, {workers} workers ==")

    grade_math_batch(pairs[:4], num_workers=workers)  # start the worker processes outside the timing
    t = time.perf_counter()
    batch = grade_math_batch(pairs, num_workers=workers)
    t_batch = time.perf_counter() - t

    t = time.perf_counter()
    single = [grade_math(r, g) for r, g in pairs]
    t_single = time.perf_counter() - t

    from math_verify import parse, verify
    parse("\\boxed{1}")  # import-time and first-call costs outside the timing
    t = time.perf_counter()
    mv = []
    for response, gold in pairs:
        try:
            mv.append(bool(verify(parse("\\boxed{" + gold + "}"), parse(response))))
        except Exception:
            mv.append(False)
    t_mv = time.perf_counter() - t

    ours = [v.correct for v in batch]
    rate = lambda sec: len(pairs) / sec
    print(f"grade_math_batch        {rate(t_batch):8.1f} answers/s  ({t_batch:.2f} s)")
    print(f"grade_math (one by one) {rate(t_single):8.1f} answers/s  ({t_single:.2f} s)")
    print(f"Math-Verify direct      {rate(t_mv):8.1f} answers/s  ({t_mv:.2f} s)")
    print(f"ratio batch / Math-Verify  {t_mv / t_batch:.2f}x;  one-by-one / Math-Verify  {t_mv / t_single:.2f}x")
    print(f"correct: ours {sum(ours)}, Math-Verify {sum(mv)}; agree on {sum(a == b for a, b in zip(ours, mv))}"
          f"/{len(pairs)}; batch == one-by-one on {sum(a == b for a, b in zip(ours, single))}/{len(pairs)}")


# ---------------------------------------------------------------- code

DRIVER = """
import ast as _ast, sys as _sys
_args = _ast.literal_eval(_sys.stdin.read())
print(repr({fn}(*_args)))
"""


def mbpp_problems(n: int, repeat: int, wrong_frac: float, seed: int = 0) -> list:
    """(program, tests) pairs built from MBPP asserts of the form `assert f(literals) == literal`."""
    rng = random.Random(seed)
    wrong = set(rng.sample(range(n), round(n * wrong_frac)))
    problems = []
    for line in (DATA / "mbpp" / "mbpp.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row.get("test_setup_code"):
            continue
        tests, fn = [], None
        for a in row["test_list"]:
            try:
                node = ast.parse(a).body[0]
                cmp = node.test
                call, expected = cmp.left, cmp.comparators[0]
                if not (isinstance(cmp.ops[0], ast.Eq) and isinstance(call, ast.Call) and not call.keywords):
                    raise ValueError
                args = tuple(ast.literal_eval(x) for x in call.args)
                value = ast.literal_eval(expected)
            except Exception:
                tests = []
                break
            fn = call.func.id if isinstance(call.func, ast.Name) else None
            tests.append({"input": repr(args), "output": repr(value), "testtype": "stdin"})
        if not tests or fn is None:
            continue
        code = row["code"].replace("\r\n", "\n")
        if len(problems) in wrong:  # wrap the result in a list: the printed value changes, the first test fails
            code += f"\n_orig_{fn} = {fn}\ndef {fn}(*a):\n    return [_orig_{fn}(*a)]\n"
        problems.append((code + "\n" + DRIVER.format(fn=fn), tests * repeat))
        if len(problems) == n:
            break
    return problems


# The runner-style baseline's process: exec the wrapped module once, then every test in order in it.
RUNNER = r"""
import io, json, sys, types
from decimal import Decimal
job = json.loads(sys.stdin.read())
real_stdin, real_stdout = sys.stdin, sys.stdout

def lines(text):
    return [l.strip() for l in text.strip().split("\n")]

def same(got, exp):
    g, e = lines(got), lines(exp)
    if len(g) != len(e):
        return False
    for a, b in zip(g, e):
        if a == b:
            continue
        try:
            if [Decimal(t) for t in a.split()] != [Decimal(t) for t in b.split()]:
                return False
        except Exception:
            return False
    return True

ok = True
try:
    module = types.ModuleType("tmp_sol")
    exec(job["code"], module.__dict__)
    for text, expected in zip(job["inputs"], job["outputs"]):
        sys.stdin, sys.stdout = io.StringIO(text), io.StringIO()
        try:
            module.wrapped_function()
        except SystemExit:
            pass
        got = sys.stdout.getvalue()
        sys.stdin, sys.stdout = real_stdin, real_stdout
        if not same(got, expected):
            ok = False
            break
except BaseException:
    ok = False
sys.stdin, sys.stdout = real_stdin, real_stdout
print(int(ok))
"""


def runner_style(program: str, tests: list, timeout_s: float) -> bool:
    """One unsandboxed process per response running all its tests (see RUNNER); no limits but a time-out."""
    from posttrain.grading.code import lcb_module_text
    text, _ = lcb_module_text(program, "stdin")
    job = {"code": text, "inputs": [t["input"] for t in tests], "outputs": [t["output"] for t in tests]}
    try:
        out = subprocess.run([sys.executable, "-I", "-c", RUNNER], input=json.dumps(job), capture_output=True,
                             text=True, timeout=(timeout_s + 1) * len(tests) + 5).stdout
    except subprocess.TimeoutExpired:
        return False
    return out.strip() == "1"


def bench_code(n: int, repeat: int, wrong_frac: float, workers: int, timeout_s: float, rounds: int) -> None:
    from posttrain.grading import sandbox
    from posttrain.grading.code import grade_code_batch
    problems = mbpp_problems(n, repeat, wrong_frac)
    items = [{"response": f"```python\n{p}\n```", "tests": t} for p, t in problems]
    total_tests = sum(len(t) for _, t in problems)
    print(f"\n== code: {len(items)} MBPP programs x {total_tests / len(items):.0f} stdin tests "
          f"({total_tests} tests), {workers} workers, sandbox={sandbox.resolve_mode()} ==")

    configs = [("lcb", "bwrap"), ("lcb", "none"), ("strict", "bwrap"), ("strict", "none")]
    t = time.perf_counter()
    for semantics, mode in configs:  # start `workers` warm sandboxes of each kind before the timing
        grade_code_batch(items[:workers], timeout_s, num_workers=workers, semantics=semantics, sandbox=mode)
    print(f"one-time start of {sandbox.idle_count()} warm sandboxes (with a first job each): "
          f"{time.perf_counter() - t:.2f} s")

    runners = [(f"grade_code_batch {semantics:6s} ({'bubblewrap' if mode == 'bwrap' else 'no sandbox'})",
                lambda s=semantics, m=mode: [v.correct for v in grade_code_batch(
                    items, timeout_s, num_workers=workers, semantics=s, sandbox=m)])
               for semantics, mode in configs]
    with ThreadPoolExecutor(workers) as pool:
        runners.append(("runner-style baseline (no sandbox)",
                        lambda: list(pool.map(lambda pt: runner_style(pt[0], pt[1], timeout_s), problems))))
        times = {label: [] for label, _ in runners}
        results = {}
        for _ in range(rounds):  # interleaved rounds, so that load from elsewhere hits every runner alike
            for label, fn in runners:
                t = time.perf_counter()
                results[label] = fn()
                times[label].append(time.perf_counter() - t)
    # tests/s = tests in the workload / median wall time; every runner stops a failing program at its first failure
    base = statistics.median(times[runners[-1][0]])
    for label, _ in runners:
        sec = statistics.median(times[label])
        print(f"{label:38s} {total_tests / sec:8.1f} tests/s  {len(items) / sec:6.1f} programs/s  "
              f"(median of {rounds}: {sec:.2f} s, {sum(results[label])} passed)  {base / sec:.2f}x the baseline")
    first = results[runners[0][0]]
    agree = sum(all(r[i] == first[i] for r in results.values()) for i in range(len(items)))
    print(f"all five agree on {agree}/{len(items)} programs")
    one_test_costs(timeout_s)


def one_test_costs(timeout_s: float, calls: int = 20) -> None:
    """Wall time of one one-test program, warm sandbox vs the baseline's fresh process."""
    from posttrain.grading.code import grade_code
    response, tests = "```python\nprint(input())\n```", [{"input": "7", "output": "7", "testtype": "stdin"}]
    costs = {}
    for label, fn in (("grade_code lcb, bubblewrap", lambda: grade_code(response, tests, semantics="lcb")),
                      ("grade_code strict, bubblewrap", lambda: grade_code(response, tests, semantics="strict")),
                      ("runner-style baseline", lambda: runner_style("print(input())", tests, timeout_s))):
        assert fn(), label
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        costs[label] = (time.perf_counter() - t) / calls * 1000
    print("one-test program: " + "; ".join(f"{k} {v:.1f} ms" for k, v in costs.items()))


# ---------------------------------------------------------------- a finished run: lcb vs strict

def _eval_sets():
    return importlib.import_module("posttrain.eval_sets")


def run_code_items(run_dir: Path) -> list:
    """Grading items for every code sample in `run_dir`'s eval records (their benchmarks loaded the way the
    run's params say)."""
    import yaml
    sets = _eval_sets()
    params = yaml.safe_load((run_dir / "params.resolved.yaml").read_text())
    data_dir = (params.get("evaluate") or {}).get("data_dir")
    problems, items = {}, []
    for path in sorted((run_dir / "eval").rglob("*.jsonl")):
        for line in path.read_text().splitlines():
            rec = json.loads(line) if line.strip() else None
            if not rec or sets.get_spec(rec["benchmark"]).domain != "code":
                continue
            if rec["benchmark"] not in problems:
                problems[rec["benchmark"]] = {p.id: p for p in sets.load_benchmark(rec["benchmark"], data_dir)}
            problem = problems[rec["benchmark"]].get(rec["problem_id"])
            if problem is None:
                raise KeyError(f"{path}: problem {rec['problem_id']!r} is not in benchmark {rec['benchmark']!r}")
            items += [sets.grading_item(problem, r) for r in rec["responses"]]
    return items


def bench_run_agreement(run_dir: Path, workers: int, timeout_s: float) -> None:
    from posttrain.grading.code import grade_code_batch
    items = run_code_items(run_dir)
    print(f"\n== lcb vs strict on the code samples of {run_dir} ({len(items)} samples) ==")
    if not items:
        print("no code samples")
        return
    lcb = grade_code_batch(items, timeout_s, num_workers=workers, semantics="lcb")
    strict = grade_code_batch(items, timeout_s, num_workers=workers, semantics="strict")
    differ = [i for i, (a, b) in enumerate(zip(lcb, strict)) if a.correct != b.correct]
    statuses = {}
    for a, b in zip(lcb, strict):
        statuses[(a.status, b.status)] = statuses.get((a.status, b.status), 0) + 1
    print(f"pass/fail disagree on {len(differ)}/{len(items)} samples ({100 * len(differ) / len(items):.1f}%); "
          f"passed: lcb {sum(v.correct for v in lcb)}, strict {sum(v.correct for v in strict)}")
    print("status pairs (lcb, strict): " + ", ".join(f"{k[0]}/{k[1]} {v}" for k, v in sorted(statuses.items())))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--math-n", type=int, default=200, help="MATH-500 pairs (max 500)")
    parser.add_argument("--code-n", type=int, default=30, help="MBPP programs")
    parser.add_argument("--repeat", type=int, default=10, help="repeat each program's tests this many times")
    parser.add_argument("--wrong-frac", type=float, default=0.2, help="fraction of programs made wrong")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--timeout", type=float, default=6.0, help="per-test time limit, seconds")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds for code (median)")
    parser.add_argument("--skip-math", action="store_true")
    parser.add_argument("--skip-code", action="store_true")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="a finished run (e.g. runs/smoke): lcb/strict disagreement on its code samples")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    if not args.skip_math:
        bench_math(args.math_n, args.workers)
    if not args.skip_code:
        bench_code(args.code_n, args.repeat, args.wrong_frac, args.workers, args.timeout, args.rounds)
    if args.run_dir is not None:
        bench_run_agreement(args.run_dir, args.workers, args.timeout)


if __name__ == "__main__":
    main()
