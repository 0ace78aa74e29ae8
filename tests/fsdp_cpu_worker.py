"""Run posttrain.trainer on one rank of a CPU job that Accelerate treats as a GPU job, so FSDP really shards.

Why: Accelerate turns an FSDP config into FSDP only for GPU-type jobs (MULTI_GPU, ...); a CPU job (MULTI_CPU, or
no type at all when use_cpu is false and no GPU exists) silently trains plain DDP, or one unsharded replica, and
posttrain.trainer refuses it (launch.backend 'fsdp2' but not sharded). What this changes, and nothing else: the
job type Accelerate derives from the environment reads MULTI_GPU with the gloo backend, and the device comes from
ACCELERATE_TORCH_DEVICE=cpu (set by the test). From there on every line that runs is Accelerate's and torch's
real FSDP2 path (fully_shard over a gloo process group, DTensor parameters, sharded checkpoints), on CPU tensors.

Used by tests/test_scaleout.py and benchmarks/build_memory.py:
    python -m accelerate.commands.launch --config_file FSDP_YAML --num_processes 2 tests/fsdp_cpu_worker.py ARGS
ARGS go to posttrain.trainer's main(); with `--script PATH` first, PATH runs as __main__ with the rest as its argv.
"""
import os
import runpy
import sys

from accelerate.state import PartialState
from accelerate.utils import DistributedType

_prepare_backend = PartialState._prepare_backend


def _as_gpu_job(self, cpu=False, sagemaker_dp=False, backend=None):
    found_backend, found_type = _prepare_backend(self, cpu, sagemaker_dp, backend)
    if found_type == DistributedType.NO and not cpu and int(os.environ.get("LOCAL_RANK", -1)) != -1:
        return "gloo", DistributedType.MULTI_GPU
    return found_backend, found_type


if __name__ == "__main__":
    PartialState._prepare_backend = _as_gpu_job
    if sys.argv[1:2] == ["--script"]:
        sys.argv = sys.argv[2:]
        runpy.run_path(sys.argv[0], run_name="__main__")
    else:
        from posttrain.trainer import main
        main(sys.argv[1:])
