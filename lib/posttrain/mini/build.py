"""The miniature's set-up stage: the world's corpus, SFT data, benchmarks, tokenizer and tiny Qwen2 config under
{run_dir}/setup/ (the world: posttrain.mini.world; its design: docs/miniature.md).

    python -m posttrain.mini.build params/mini.yaml [--run-dir DIR] [--force]

`posttrain.pipeline` runs it as the stage `mini_setup`, before the notebooks (01 trains on its corpus and config;
00 measures with its tokenizer); from Python: `build_mini_setup(study.setup, study.run_dir)`.
Idempotent: a finished build leaves setup/setup.json with the params hash; the same params skip the work, other
params rebuild from scratch. SFT rows use the SFT datasets' own prompts (posttrain.prompts), the same code path as
the hub data; benchmark files use the local formats posttrain.eval_sets reads (mini_math*, mini_code).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import sys
from pathlib import Path

from posttrain.mini import world as W
from posttrain.mini.code_tasks import lcb_row
from posttrain.params import MiniSetupParams, load_study, params_hash, repo_relative
from posttrain.prompts import code_sft_messages, math_sft_messages, question_with_starter

# Benchmark name (posttrain.eval_sets) -> (WorldTasks field, file under setup/data).
MATH_SETS = {"mini_math": ("math_test", "mini_math_test.jsonl"),
             "mini_math_competition": ("math_competition", "mini_math_competition.jsonl"),
             "mini_knowledge_probe": ("knowledge_probe", "mini_knowledge_probe.jsonl"),
             "mini_knowledge_seen": ("knowledge_seen", "mini_knowledge_seen.jsonl")}
CODE_SETS = {"mini_code": ("code_test", "mini_code_test.jsonl"),
             "mini_code_competition": ("code_competition", "mini_code_competition.jsonl")}


def _source_digest() -> str:
    # The generators are part of the params: editing them must rebuild the setup, not reuse stale files.
    here = Path(__file__).parent
    return hashlib.sha256(b"".join((here / f).read_bytes() for f in
                                   ("math_tasks.py", "code_tasks.py", "world.py", "tokenizer.py", "build.py"))).hexdigest()[:16]


def setup_paths(run_dir: str | Path) -> dict[str, Path]:
    root = Path(run_dir) / "setup"
    data = root / "data"
    return {"setup_dir": root, "data_dir": data, "math_train": data / "math_train.jsonl",
            "code_train": data / "code_train.jsonl", "corpus": data / "corpus.jsonl",
            **{name: data / file for name, (_, file) in {**MATH_SETS, **CODE_SETS}.items()},
            "fill_in": data / "fill_in.jsonl", "world": data / "world.json", "tokenizer": root / "tokenizer",
            "base_config": root / "base_config", "marker": root / "setup.json"}


def _write_jsonl(path: Path, rows) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
            n += 1
    return n


def world_spec(setup: MiniSetupParams) -> W.WorldSpec:
    """The posttrain.mini.world.WorldSpec of the setup params (its world fields have WorldSpec's names)."""
    return W.WorldSpec(**{f.name: getattr(setup, f.name) for f in dataclasses.fields(W.WorldSpec)})


def build_tasks(setup: MiniSetupParams) -> tuple[W.World, list[str], W.WorldTasks]:
    """The world, its pre-training corpus and every task set (evaluation sets first; SFT pools exclude them)."""
    spec = world_spec(setup)
    world = W.make_world(spec)
    return world, W.build_world_corpus(world, spec), W.build_world_tasks(world, spec)


def _math_row(name: str, i: int, p) -> dict:
    return {"unique_id": f"{name}_{i:04d}", "problem": p.problem, "answer": p.answer, "subject": p.family,
            "level": p.level}


def _code_row(name: str, i: int, task) -> dict:
    return {**lcb_row(task, i), "question_id": f"{name}_{i:04d}"}


def mini_config(setup: MiniSetupParams, tokenizer):
    """The tiny Qwen2 config of the setup params (posttrain.models checks head_dim >= 32 for vLLM)."""
    from posttrain.models import tiny_qwen2_config

    return tiny_qwen2_config(
        max(setup.vocab_size, len(tokenizer)), hidden_size=setup.hidden_size, layers=setup.num_hidden_layers,
        heads=setup.num_attention_heads, kv_heads=setup.num_key_value_heads, intermediate=setup.intermediate_size,
        max_pos=setup.max_position_embeddings, tie_word_embeddings=True, bos_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def setup_hash(setup: MiniSetupParams) -> str:
    return params_hash({"setup": setup.model_dump(mode="json"), "code": _source_digest()})


def setup_is_current(setup: MiniSetupParams, run_dir: str | Path) -> bool:
    """True when {run_dir}/setup/ holds a finished build of these params (and of this code)."""
    marker = setup_paths(run_dir)["marker"]
    return marker.is_file() and json.loads(marker.read_text()).get("params_hash") == setup_hash(setup)


def require_setup(run_dir: str | Path) -> dict[str, Path]:
    """The setup's paths; FileNotFoundError saying how to build it when no finished build is there."""
    paths = setup_paths(run_dir)
    if not paths["marker"].is_file():
        raise FileNotFoundError(
            f"no miniature set-up in {repo_relative(paths['setup_dir'])}: build it first with "
            "`python -m posttrain.pipeline PARAMS --only mini_setup` (or `make demo` / `make smoke`)")
    return paths


def build_mini_setup(setup: MiniSetupParams, run_dir: str | Path, force: bool = False) -> dict[str, str]:
    """Write everything under {run_dir}/setup/ (skipped when setup.json carries the same params hash)."""
    paths = setup_paths(run_dir)
    digest = setup_hash(setup)
    marker = paths["marker"]
    if not force and setup_is_current(setup, run_dir):
        print(f"setup: skipped, {repo_relative(marker)} has params hash {digest}")
        return {k: str(v) for k, v in paths.items()}
    if paths["setup_dir"].exists():
        shutil.rmtree(paths["setup_dir"])

    world, corpus, tasks = build_tasks(setup)
    counts = {
        "math_train": _write_jsonl(paths["math_train"], ({"messages": math_sft_messages(p.problem, p.solution)}
                                                         for p in tasks.math_train)),
        "code_train": _write_jsonl(paths["code_train"], ({"messages": code_sft_messages(
            question_with_starter(t.question, t.starter_code), t.solution)} for t in tasks.code_train)),
        **{name: _write_jsonl(paths[name], (_math_row(name, i, p) for i, p in enumerate(getattr(tasks, field))))
           for name, (field, _) in MATH_SETS.items()},
        **{name: _write_jsonl(paths[name], (_code_row(name, i, t) for i, t in enumerate(getattr(tasks, field))))
           for name, (field, _) in CODE_SETS.items()},
        "fill_in": _write_jsonl(paths["fill_in"], tasks.fill_in),
        "corpus": _write_jsonl(paths["corpus"], ({"text": d} for d in corpus)),
    }
    paths["world"].write_text(json.dumps({"seed": world.seed, "seen": list(world.seen),
                                          "held_out": list(world.held_out),
                                          "facts": {t.name: t.facts for t in world.towns}}, indent=1))
    tokenizer = W.train_world_tokenizer(corpus, tasks, setup.vocab_size)
    tokenizer.save_pretrained(paths["tokenizer"])
    config = mini_config(setup, tokenizer)
    config.save_pretrained(paths["base_config"])
    tokenizer.save_pretrained(paths["base_config"])

    marker.write_text(json.dumps({"params_hash": digest, "params": setup.model_dump(mode="json"),
                                  "counts": counts, "corpus_chars": sum(map(len, corpus)),
                                  "vocab_size": len(tokenizer)}, indent=2))
    print(f"setup: wrote {repo_relative(paths['setup_dir'])} ({counts})")
    return {k: str(v) for k, v in paths.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("params", help="a study params YAML with a `setup` section, e.g. params/mini.yaml")
    ap.add_argument("--run-dir", help="where outputs go (default: the study's run_dir)")
    ap.add_argument("--force", action="store_true", help="rebuild even when setup.json matches")
    args = ap.parse_args(argv)
    study = load_study(args.params, args.run_dir)
    if study.setup is None:
        print(f"{args.params}: no `setup` section: this study uses hub data, nothing to build", file=sys.stderr)
        return 1
    build_mini_setup(study.setup, study.run_dir, force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
