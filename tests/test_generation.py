"""Generation engines on a tiny random Qwen2 model: HF in-process, vLLM in its worker subprocess (slow).

Run: .venv/bin/python -m pytest tests/test_generation.py -q   (add -m "not slow" to skip vLLM)
"""
import importlib.util
import json

import pytest

from posttrain.generation import GenerationRequest, generate, prompt_seed, resolve_engine


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from fixtures.tiny_model import build_tiny_model
    return str(build_tiny_model(tmp_path_factory.mktemp("tiny")))


def _prompts(tiny, count):
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(tiny)
    return [{"key": {"problem_id": f"p{i}"}, "prompt": tok.apply_chat_template(
        [{"role": "user", "content": f"Solve {i} + 3."}], add_generation_prompt=True, tokenize=False)}
        for i in range(count)]


def _read(files):
    return [json.loads(line) for f in files for line in open(f)]


def test_resolve_engine():
    assert resolve_engine("hf") == "hf" and resolve_engine("vllm") == "vllm"
    expected = "vllm" if importlib.util.find_spec("vllm") else "hf"
    assert resolve_engine("auto") == expected
    with pytest.raises(ValueError, match="engine"):
        resolve_engine("sglang")


def test_prompt_seeds_are_stable_and_distinct():
    assert prompt_seed(0, {"problem_id": "a"}) == prompt_seed(0, {"problem_id": "a"})
    assert len({prompt_seed(0, {"problem_id": str(i)}) for i in range(100)}) == 100
    assert prompt_seed(0, {"problem_id": "a"}) != prompt_seed(1, {"problem_id": "a"})


def test_hf_engine_writes_one_record_per_prompt(tiny, tmp_path):
    req = GenerationRequest(model=tiny, tokenizer=tiny, prompts=_prompts(tiny, 5), output=str(tmp_path / "g.jsonl"),
                            n=3, max_tokens=12)
    rows = _read(generate(req, "hf", progress=False))
    assert [r["key"]["problem_id"] for r in rows] == [f"p{i}" for i in range(5)]
    for r in rows:
        assert len(r["responses"]) == len(r["finish_reasons"]) == len(r["num_tokens"]) == 3
        for reason, count in zip(r["finish_reasons"], r["num_tokens"]):
            # a random model rarely emits EOS within 12 tokens; either way the count obeys the budget
            assert (reason == "length" and count == 12) or (reason == "stop" and 1 <= count <= 12)
    assert len({r["responses"][0] for r in rows}) > 1  # sampling, not one canned string


def test_prompt_longer_than_the_context_is_recorded_as_truncated(tiny, tmp_path):
    long = [{"key": {"problem_id": "long"}, "prompt": "word " * 600}]  # the tiny model's context is 512
    req = GenerationRequest(model=tiny, tokenizer=tiny, prompts=long, output=str(tmp_path / "g.jsonl"), n=2,
                            max_tokens=8)
    (row,) = _read(generate(req, "hf", progress=False))
    assert row["finish_reasons"] == ["length", "length"] and row["num_tokens"] == [0, 0]


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM not installed")
def test_vllm_worker_matches_the_record_format(tiny, tmp_path):
    # two requests (models) in one worker: each gets its own output file with all its prompts
    reqs = [GenerationRequest(model=tiny, tokenizer=tiny, prompts=_prompts(tiny, count),
                              output=str(tmp_path / name / "g.jsonl"), n=2, max_tokens=10)
            for name, count in (("a", 4), ("b", 3))]
    files = generate(reqs, "vllm", progress=False)
    assert [f.parent.name for f in files] == ["a", "b"]
    assert sorted(r["key"]["problem_id"] for r in _read(files[1:])) == ["p0", "p1", "p2"]
    rows = _read(files[:1])
    assert sorted(r["key"]["problem_id"] for r in rows) == ["p0", "p1", "p2", "p3"]
    for r in rows:
        assert len(r["responses"]) == 2 and set(r["finish_reasons"]) <= {"stop", "length"}
        assert all(0 < c <= 10 for c in r["num_tokens"])
        assert all(c == 10 for c, f in zip(r["num_tokens"], r["finish_reasons"]) if f == "length")


def _fake_worker(out, lines: int, code: int = 0):
    """A stand-in for a generation worker: appends `lines` records to `out`, says so in its log, exits `code`."""
    import subprocess
    import sys
    script = (f"import sys\nopen({str(out)!r}, 'a').write('{{}}\\n' * {lines})\n"
              f"print('worker says hi')\nsys.exit({code})")
    log = out.with_suffix(".log")
    return subprocess.Popen([sys.executable, "-c", script], stdout=open(log, "w"), stderr=subprocess.STDOUT), log


@pytest.mark.parametrize("bars_off", [False, True])
def test_follow_workers_prints_one_summary_line(tmp_path, capsys, monkeypatch, bars_off):
    from posttrain.generation import _follow_workers
    # as under the pipeline's TQDM_DISABLE: a disabled bar counts nothing, the summary still must
    monkeypatch.setenv("TQDM_DISABLE", "1" if bars_off else "0")
    out = tmp_path / "shard0.jsonl"
    req = GenerationRequest(model="m", tokenizer="m", prompts=[{"key": i, "prompt": "p"} for i in range(3)],
                            output=str(out), n=4)
    _follow_workers([_fake_worker(out, 3)], [out], [req], "vllm", progress=True)
    summary = [line for line in capsys.readouterr().out.splitlines() if line.startswith("generated")]
    assert len(summary) == 1 and summary[0].startswith("generated 3/3 prompts x n=4 for 1 model(s) with vllm in ")
    assert summary[0].endswith(f"worker log: {out.with_suffix('.log')}")


def test_follow_workers_failure_shows_the_log(tmp_path):
    from posttrain.generation import _follow_workers
    out = tmp_path / "shard0.jsonl"
    req = GenerationRequest(model="m", tokenizer="m", prompts=[{"key": 0, "prompt": "p"}], output=str(out))
    with pytest.raises(RuntimeError, match=r"(?s)generation worker exited with 3; log .*shard0\.log:\nworker says hi"):
        _follow_workers([_fake_worker(out, 0, code=3)], [out], [req], "vllm", progress=False)
