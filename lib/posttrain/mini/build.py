"""The miniature's set-up stage: task data, benchmarks, corpus, tokenizer and tiny Qwen2 config under {run_dir}/setup/.

    python -m posttrain.mini.build params/mini.yaml [--run-dir DIR] [--force]

`posttrain.pipeline` runs it as the stage `mini_setup`, before the notebooks (01 trains on its corpus and config;
00 measures with its tokenizer); from Python: `build_mini_setup(study.setup, study.run_dir)`.
Idempotent: a finished build leaves setup/setup.json with the params hash; the same params skip the work, other
params rebuild from scratch. SFT rows use the SFT datasets' own prompts (posttrain.prompts), the same code path as
the hub data; benchmark files use the local formats posttrain.eval_sets reads (mini_math*, mini_code).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

from posttrain.mini.code_tasks import generate_code, lcb_row
from posttrain.mini.corpus import build_corpus
from posttrain.mini.math_tasks import generate_math
from posttrain.params import MiniSetupParams, load_study, params_hash, repo_relative
from posttrain.prompts import code_sft_messages, math_sft_messages, question_with_starter

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MATH_TRAIN_LEVELS, MATH_COMPETITION_LEVELS = (1, 2), (3,)


def _source_digest() -> str:
    # The generators are part of the params: editing them must rebuild the setup, not reuse stale files.
    here = Path(__file__).parent
    return hashlib.sha256(b"".join((here / f).read_bytes() for f in
                                   ("math_tasks.py", "code_tasks.py", "corpus.py", "build.py"))).hexdigest()[:16]


def setup_paths(run_dir: str | Path) -> dict[str, Path]:
    root = Path(run_dir) / "setup"
    data = root / "data"
    return {"setup_dir": root, "data_dir": data, "math_train": data / "math_train.jsonl",
            "code_train": data / "code_train.jsonl", "corpus": data / "corpus.jsonl",
            "mini_math": data / "mini_math_test.jsonl", "mini_math_competition": data / "mini_math_competition.jsonl",
            "mini_code": data / "mini_code_test.jsonl", "tokenizer": root / "tokenizer",
            "base_config": root / "base_config", "marker": root / "setup.json"}


def _write_jsonl(path: Path, rows) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
            n += 1
    return n


def build_tasks(setup: MiniSetupParams) -> dict[str, list]:
    """All generated problems. Test sets first; the training set excludes their texts (math) or tasks (code)."""
    math_test = generate_math(setup.math_test, setup.seed, MATH_TRAIN_LEVELS)
    math_comp = generate_math(setup.math_competition, setup.seed + 1, MATH_COMPETITION_LEVELS)
    held_out = {p.problem for p in math_test + math_comp}
    math_train = generate_math(setup.math_train, setup.seed + 2, MATH_TRAIN_LEVELS, exclude=held_out)
    return {"math_train": math_train, "math_test": math_test, "math_competition": math_comp,
            "code_train": generate_code(setup.code_train, setup.seed, "train"),
            "code_test": generate_code(setup.code_test, setup.seed, "test")}


def train_tokenizer(texts, vocab_size: int):
    """Byte-level BPE with Qwen2's normalizer and pre-tokenizer (digits one by one), as a fast HF tokenizer.

    The pipeline must equal Qwen2Tokenizer's: AutoTokenizer on a dir whose config says qwen2 rebuilds it that way.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from posttrain.data import CHATML_TEMPLATE_WITH_GENERATION
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                 additional_special_tokens=["<|im_start|>"], model_max_length=1_000_000)
    hf.chat_template = CHATML_TEMPLATE_WITH_GENERATION  # the template SFT uses (assistant_only_loss markers)
    return hf


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

    tasks = build_tasks(setup)
    counts = {
        "math_train": _write_jsonl(paths["math_train"], ({"messages": math_sft_messages(p.problem, p.solution)}
                                                         for p in tasks["math_train"])),
        "code_train": _write_jsonl(paths["code_train"], ({"messages": code_sft_messages(
            question_with_starter(t.question, t.starter_code), t.solution)}
                                                         for t in tasks["code_train"])),
        "mini_math": _write_jsonl(paths["mini_math"], (
            {"unique_id": f"mini_math_{i:04d}", "problem": p.problem, "answer": p.answer, "subject": p.family,
             "level": p.level} for i, p in enumerate(tasks["math_test"]))),
        "mini_math_competition": _write_jsonl(paths["mini_math_competition"], (
            {"unique_id": f"mini_math_competition_{i:04d}", "problem": p.problem, "answer": p.answer,
             "subject": p.family, "level": p.level} for i, p in enumerate(tasks["math_competition"]))),
        "mini_code": _write_jsonl(paths["mini_code"], (lcb_row(t, i) for i, t in enumerate(tasks["code_test"]))),
    }
    corpus = build_corpus(setup.corpus_max_chars, seed=setup.seed)
    counts["corpus"] = _write_jsonl(paths["corpus"], ({"text": d} for d in corpus))

    # The tokenizer sees the corpus and the tasks as the models will: SFT rows rendered through the chat template.
    task_texts = [m["content"] for path in (paths["math_train"], paths["code_train"])
                  for line in open(path) for m in json.loads(line)["messages"]]
    tokenizer = train_tokenizer(corpus + task_texts, setup.vocab_size)
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
