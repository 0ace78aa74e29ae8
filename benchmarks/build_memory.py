"""Peak memory per rank while building a scratch-arm model for FSDP2 training: 1 process vs 2 processes (CPU, gloo).

    .venv/bin/python benchmarks/build_memory.py                    # the 1.5B architecture, 1 then 2 processes
    .venv/bin/python benchmarks/build_memory.py --arch tiny --processes 2

Each rank runs posttrain.trainer's path for a scratch arm under launch.backend fsdp2: build on the meta device
(posttrain.models.build_model(on_meta=True)), shard with Accelerate's FSDP2 wrapping, then fill only its own shards
with the depth-scaled init (posttrain.trainer.shard_scratch_model), in fp32. Accelerate runs FSDP only for GPU-type
jobs, so the ranks go through tests/fsdp_cpu_worker.py, which makes this CPU job one (see its docstring).

Peak = the rank's maximum resident set (ru_maxrss), which includes the imported libraries: `before` is the same
measure just before building. The 1.5B architecture is Qwen2.5-1.5B's published config (1.54B parameters, tied
embeddings), written out here because this machine has no model hub.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULT = "[build_memory] "
ARCHS = {  # Qwen2.5-1.5B's config.json, and a tiny one to try the script quickly
    "1.5B": dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                 num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=131072, rope_theta=1e6,
                 rms_norm_eps=1e-6, tie_word_embeddings=True),
    "tiny": dict(vocab_size=2048, hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=1024, tie_word_embeddings=True),
}


def max_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def worker(config_dir: str) -> None:
    """One rank: build, shard, initialize; print this rank's figures as one JSON line."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DistributedType

    from posttrain.models import build_model
    from posttrain.params import ModelParams
    from posttrain.trainer import shard_scratch_model

    accelerator = Accelerator()  # the FSDP plugin comes from the environment `accelerate launch` set
    if accelerator.distributed_type != DistributedType.FSDP:
        raise SystemExit(f"not an FSDP job ({accelerator.distributed_type}): run through tests/fsdp_cpu_worker.py")
    model_params = ModelParams(name_or_path=config_dir, init="scratch", init_seed=0)
    before, start = max_rss_gib(), time.perf_counter()
    model = build_model(model_params, dtype=torch.float32, on_meta=True)
    shard_scratch_model(accelerator, model, model_params, torch.float32)
    local = sum(p.to_local().numel() for p in model.parameters())
    total = sum(p.numel() for p in model.parameters())
    print(RESULT + json.dumps({"rank": accelerator.process_index, "processes": accelerator.num_processes,
                               "params_total": total, "params_on_rank": local, "before_GiB": round(before, 2),
                               "peak_GiB": round(max_rss_gib(), 2), "seconds": round(time.perf_counter() - start, 1)}),
          flush=True)


def launch(processes: int, config_dir: Path, work: Path) -> list[dict]:
    import yaml

    config = yaml.safe_load((REPO / "configs" / "accelerate" / "fsdp2.yaml").read_text())
    config |= {"mixed_precision": "no", "num_processes": processes, "main_process_port": 0}
    config_file = work / f"fsdp2_cpu_{processes}.yaml"
    config_file.write_text(yaml.safe_dump(config))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config_file), "--num_processes",
           str(processes), str(REPO / "tests" / "fsdp_cpu_worker.py"), "--script", __file__, "--worker",
           str(config_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "ACCELERATE_TORCH_DEVICE": "cpu"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    if done.returncode:
        raise SystemExit(f"{processes}-process build failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return sorted((json.loads(line[len(RESULT):]) for line in done.stdout.splitlines() if line.startswith(RESULT)),
                  key=lambda row: row["rank"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", choices=sorted(ARCHS), default="1.5B")
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--worker", metavar="CONFIG_DIR", help=argparse.SUPPRESS)  # one rank, inside the launch
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker)
    from transformers import Qwen2Config

    with tempfile.TemporaryDirectory() as tmp:
        Qwen2Config(**ARCHS[args.arch]).save_pretrained(tmp)
        for n in args.processes:
            for row in launch(n, Path(tmp), Path(tmp)):
                print(f"arch={args.arch} processes={n} rank={row['rank']} params={row['params_total'] / 1e9:.3f}B "
                      f"on_rank={row['params_on_rank'] / 1e9:.3f}B before={row['before_GiB']:.2f}GiB "
                      f"peak={row['peak_GiB']:.2f}GiB build_s={row['seconds']}", flush=True)


if __name__ == "__main__":
    main()
