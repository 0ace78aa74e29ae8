"""Scale-out: the accelerate configs, the launch checks, slurm_train.sh, sharded scratch init, and (slow tier)
two-process training on CPU, DDP and FSDP2, against a one-process run.

Run: OMP_NUM_THREADS=1 .venv/bin/python -m pytest tests/test_scaleout.py -x -q    (~1-2 min; the slow tier most)
"""
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from posttrain.models import tiny_qwen2_config
from posttrain.params import REPO_ROOT, ModelParams, RunParams
from posttrain.runs import checkpoint_dir, list_checkpoints, list_snapshots, read_done, read_loss_log
from posttrain.training import LaunchConfigError, check_accelerate_config, launch_command, start_job, stop_job

CONFIGS = REPO_ROOT / "configs" / "accelerate"
CPU_WORKER = REPO_ROOT / "tests" / "fsdp_cpu_worker.py"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from fixtures.toy_task import write_reverse_task
    return write_reverse_task(tmp_path_factory.mktemp("scaleout"), num_rows=200)


def run_params(d: Path, name: str, backend: str = "local", processes: int = 1, **training) -> RunParams:
    return RunParams.model_validate({
        "name": name, "arm": "0%-Pre", "size": "mini", "domain": "math", "output_dir": str(d / name),
        "model": {"name_or_path": str(d / "base"), "init": "scratch"},
        "data": {"source": "messages_jsonl", "path": str(d / "sft.jsonl")},
        "training": {"stage": "sft", "max_length": 64, "tokens_per_step": 512, "per_device_batch_size": 2,
                     "max_steps": 12, "warmup_steps": 2, "learning_rate": 3e-3, "save_steps": 4, "logging_steps": 1,
                     "use_cpu": backend != "fsdp2", "bf16": False, "gradient_checkpointing": False, **training},
        "launch": {"backend": backend, "gpus_per_machine": processes}})


def paper_like(backend: str, bf16: bool = True) -> RunParams:
    return RunParams.model_validate({
        "name": "x", "arm": "0%-Pre", "size": "1.5B", "domain": "math", "output_dir": "o",
        "model": {"name_or_path": "Qwen/Qwen2.5-1.5B", "init": "scratch"}, "data": {"source": "messages_jsonl"},
        "training": {"stage": "sft", "bf16": bf16}, "launch": {"backend": backend, "gpus_per_machine": 8}})


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


# ------------------------------------------------------------------------------------------------ configs


def test_deepspeed_plugin_builds_from_the_repo_yaml_and_conflicts_fail(tmp_path, monkeypatch):
    """Accelerate's own launcher code turns the YAML into the workers' environment (its DeepSpeed launcher is
    replaced by a recorder: no process starts, no GPU needed); the plugin every worker builds is built from it."""
    import accelerate.commands.launch as accelerate_launch
    from accelerate.utils import DeepSpeedPlugin
    from accelerate.utils.launch import prepare_deepspeed_cmd_env

    def worker_env(config_file: Path) -> dict:
        recorded = {}
        monkeypatch.setattr(accelerate_launch, "deepspeed_launcher",
                            lambda args: recorded.update(prepare_deepspeed_cmd_env(args)[1]))
        args = accelerate_launch.launch_command_parser().parse_args(
            ["--config_file", str(config_file), "--num_processes", "8", "train.py"])
        accelerate_launch.launch_command(args)
        return {k: v for k, v in recorded.items() if k.startswith("ACCELERATE_")}

    monkeypatch.chdir(REPO_ROOT)  # the YAML names ds_zero3.json relative to the repository root
    env = worker_env(CONFIGS / "deepspeed_zero3.yaml")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    plugin = DeepSpeedPlugin()
    assert plugin.zero3_init_flag and plugin.hf_ds_config.config["zero_optimization"]["stage"] == 3
    check_accelerate_config(paper_like("deepspeed_zero3"), CONFIGS / "deepspeed_zero3.yaml")

    # The bug this guards: mixed_precision next to deepspeed_config_file makes every worker raise.
    clash = yaml.safe_load((CONFIGS / "deepspeed_zero3.yaml").read_text()) | {"mixed_precision": "bf16"}
    clash_file = write_yaml(tmp_path / "clash.yaml", clash)
    for key, value in worker_env(clash_file).items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValueError, match="will be ignored"):
        DeepSpeedPlugin()
    with pytest.raises(LaunchConfigError, match="mixed_precision must not be set next to deepspeed_config_file"):
        check_accelerate_config(paper_like("deepspeed_zero3"), clash_file)


@pytest.mark.parametrize("backend", ["single_gpu", "ddp", "fsdp2", "deepspeed_zero3"])
def test_repo_configs_match_the_paper_params(backend, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # any working directory: config files are found from the repository root
    cmd = launch_command(paper_like(backend), "p.yaml")
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]  # never a bare `accelerate` from PATH
    assert cmd[-4:] == ["-m", "posttrain.trainer", "--params", "p.yaml"]


BAD_CONFIGS = [  # (params backend, params bf16, the YAML, the field the error must name)
    ("fsdp2", False, {"distributed_type": "FSDP", "mixed_precision": "bf16", "fsdp_config": {"fsdp_version": 2}},
     "mixed_precision: bf16 contradicts training.bf16: false"),
    ("ddp", True, {"distributed_type": "MULTI_GPU", "mixed_precision": "no"},
     "mixed_precision: no contradicts training.bf16: true"),
    ("fsdp2", True, {"distributed_type": "FSDP", "use_cpu": True, "mixed_precision": "bf16",
                     "fsdp_config": {"fsdp_version": 2}}, "use_cpu: true with distributed_type: FSDP"),
    ("ddp", True, {"distributed_type": "MULTI_CPU", "mixed_precision": "bf16"}, "distributed_type: MULTI_CPU"),
    ("fsdp2", True, {"distributed_type": "MULTI_GPU", "mixed_precision": "bf16"},
     "distributed_type: MULTI_GPU but launch.backend 'fsdp2' needs FSDP"),
    ("fsdp2", True, {"distributed_type": "FSDP", "mixed_precision": "bf16", "fsdp_config": {"fsdp_version": 1}},
     "fsdp_config.fsdp_version must be 2"),
]


@pytest.mark.parametrize("backend,bf16,config,message", BAD_CONFIGS)
def test_launch_refuses_a_config_that_would_not_do_what_the_params_ask(tmp_path, backend, bf16, config, message):
    path = write_yaml(tmp_path / "accelerate.yaml", config)
    with pytest.raises(LaunchConfigError, match=message.replace("(", r"\(")):
        launch_command(paper_like(backend, bf16), "p.yaml", accelerate_config=path)


def test_worker_refuses_a_job_that_differs_from_the_params(setup, monkeypatch):
    """The same rules inside the job (for a hand-typed `accelerate launch`): this process is a one-process job."""
    from posttrain.trainer import check_job_matches_params

    fp32 = SimpleNamespace(bf16=False, mixed_precision="no")
    check_job_matches_params(run_params(setup, "ok"), fp32)
    with pytest.raises(ValueError, match=r"launch.num_machines × launch.gpus_per_machine = 2 .* runs 1"):
        check_job_matches_params(run_params(setup, "x", "ddp", 2), fp32)
    with pytest.raises(ValueError, match=r"mixed_precision \(bf16, env ACCELERATE_MIXED_PRECISION\) contradicts"):
        check_job_matches_params(run_params(setup, "x"), SimpleNamespace(bf16=False, mixed_precision="bf16"))
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(ValueError, match="launch.backend is 'fsdp2' but this job is not sharded"):
        check_job_matches_params(run_params(setup, "x", "fsdp2", 1), fp32)
    with pytest.raises(ValueError, match="launch.backend is 'local' but the accelerate config turns on FSDP"):
        check_job_matches_params(run_params(setup, "x"), fp32)


# ------------------------------------------------------------------------------------------------ slurm


STUB_SRUN = """#!/bin/bash
# One "node": drop srun's options, run the command with this node's SLURM_NODEID.
while [[ "$1" == --* ]]; do shift; done
SLURM_NODEID=0 exec "$@"
"""
STUB_SCONTROL = """#!/bin/bash
case "$1 $2" in
  "show hostnames") echo node001 ;;
  "show job") echo "JobId=$3 JobName=posttrain"; echo "   Command=%s %s" ;;
esac
"""


@pytest.mark.slow  # a real (2-step) training run behind the stubs
def test_slurm_script_runs_without_a_venv_from_any_directory(setup, tmp_path):
    """sbatch runs a copy of the script from a spool dir, in the submission dir, with no venv on PATH."""
    params = run_params(setup, "slurm", max_steps=2, save_steps=2)
    params_path = write_yaml(tmp_path / "run.yaml", params.model_dump(mode="json"))
    bin_dir, spool, submit = tmp_path / "bin", tmp_path / "spool", tmp_path / "submit"
    for d in (bin_dir, spool, submit):
        d.mkdir()
    (bin_dir / "srun").write_text(STUB_SRUN)
    (bin_dir / "scontrol").write_text(STUB_SCONTROL % (REPO_ROOT / "scripts" / "slurm_train.sh", params_path))
    for stub in ("srun", "scontrol"):
        (bin_dir / stub).chmod(0o755)
    (spool / "slurm_script").write_text((REPO_ROOT / "scripts" / "slurm_train.sh").read_text())
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(PATH=f"{bin_dir}:/usr/bin:/bin", SLURM_JOB_ID="42", SLURM_NNODES="1", SLURM_JOB_NODELIST="node001",
               SLURM_SUBMIT_DIR=str(submit), OMP_NUM_THREADS="1")
    done = subprocess.run(["bash", str(spool / "slurm_script"), "../run.yaml"], cwd=submit, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert f"per node: {REPO_ROOT}/.venv/bin/python -m posttrain.trainer --params {params_path}" in done.stdout
    assert read_done(params)["global_step"] == 2


# ------------------------------------------------------------------------------------------------ sharded init


@pytest.mark.parametrize("tied", [True, False])
def test_sharded_scratch_init_has_the_depth_scaled_statistics(tmp_path, tied):
    """A meta-device build gets, after to_empty + initialize_sharded_scratch_, exactly the values (hence the
    statistics) of a whole-model build: the shard-by-shard path draws the same whole tensors in the same order."""
    import torch

    from posttrain.models import build_model, depth_scale_bound, initialize_sharded_scratch_

    tiny_qwen2_config(300, hidden_size=64, heads=2, kv_heads=1, intermediate=128, layers=2,
                      tie_word_embeddings=tied).save_pretrained(tmp_path)
    model_params = ModelParams(name_or_path=str(tmp_path), init="scratch", init_seed=7)
    whole = build_model(model_params, dtype=torch.float32)
    meta = build_model(model_params, dtype=torch.float32, on_meta=True)
    assert all(p.is_meta for p in meta.parameters()) and not any(b.is_meta for b in meta.buffers())
    initialize_sharded_scratch_(meta, model_params, "cpu", torch.float32)
    for (name, a), b in zip(whole.state_dict().items(), meta.state_dict().values()):
        assert torch.equal(a, b), name
    w = meta.model.layers[1].mlp.down_proj.weight
    bound = depth_scale_bound(w.shape[1], w.shape[0], 2, "paper")
    assert w.abs().max() <= bound and w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert torch.equal(meta.model.rotary_emb.inv_freq, whole.model.rotary_emb.inv_freq)
    assert (meta.lm_head.weight is meta.model.embed_tokens.weight) == tied
    assert meta.lm_head.weight.std().item() == pytest.approx(0.02, rel=0.1)


# ------------------------------------------------------------------------------------------------ two processes


def cpu_accelerate_config(d: Path, kind: str) -> Path:
    """CPU stand-ins for configs/accelerate/{ddp,fsdp2}.yaml (same keys, no GPU, fp32)."""
    if kind == "ddp":  # DDP over gloo: Accelerate's documented CPU path (MULTI_GPU type + use_cpu)
        config = {"distributed_type": "MULTI_GPU", "use_cpu": True, "mixed_precision": "no"}
    else:  # the repo's FSDP2 YAML with fp32; the worker makes Accelerate take the GPU-type path (fsdp_cpu_worker)
        config = yaml.safe_load((CONFIGS / "fsdp2.yaml").read_text()) | {"mixed_precision": "no"}
    base = {"compute_environment": "LOCAL_MACHINE", "num_machines": 1, "machine_rank": 0, "rdzv_backend": "static",
            "same_network": True, "main_process_port": 0}
    return write_yaml(d / f"cpu_{kind}.yaml", base | config)


def two_process_command(d: Path, params: RunParams, kind: str) -> list[str]:
    params_path = write_yaml(d / f"{params.name}.yaml", params.model_dump(mode="json"))
    cmd = launch_command(params, params_path, accelerate_config=cpu_accelerate_config(d, kind))
    if kind == "fsdp2":  # the same arguments, run through the CPU-as-GPU wrapper instead of `-m posttrain.trainer`
        cmd[cmd.index("-m", 3):cmd.index("-m", 3) + 2] = [str(CPU_WORKER)]
    return cmd


def job_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_TORCH_DEVICE": "cpu"}


def run_job_logged(cmd: list[str], log: Path) -> None:
    with log.open("a") as f:
        code = subprocess.run(cmd, env=job_env(), stdout=f, stderr=subprocess.STDOUT, timeout=600).returncode
    assert code == 0, log.read_text()[-4000:]


def assert_same_curve(got: list[dict], want: list[dict], first_steps: int, rel_first: float, rel_all: float):
    assert [r["step"] for r in got] == [r["step"] for r in want]  # continuous, no duplicated step
    assert [r["tokens"] for r in got] == [r["tokens"] for r in want]  # same tokens per optimizer step
    for r, w in zip(got, want):
        rel = rel_first if r["step"] <= first_steps else rel_all
        assert r["loss"] == pytest.approx(w["loss"], rel=rel), (r["step"], r["loss"], w["loss"])


@pytest.fixture(scope="module")
def one_process(setup):
    from posttrain.trainer import train_in_process

    params = run_params(setup, "one_process")
    train_in_process(params)
    return params


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(setup, one_process):
    params = run_params(setup, "ddp2", "ddp", 2)
    run_job_logged(two_process_command(setup, params, "ddp"), setup / "ddp2.log")
    done, reference = read_done(params), read_done(one_process)
    assert done["world_size"] == 2 and done["tokens_per_step"] == reference["tokens_per_step"]
    assert done["gradient_accumulation_steps"] * 2 == reference["gradient_accumulation_steps"]
    assert_same_curve(read_loss_log(params.output_dir), read_loss_log(one_process.output_dir), 4, 1e-5, 1e-4)


@pytest.mark.slow
def test_two_process_fsdp2_shards_matches_one_process_and_resumes_after_a_kill(setup, one_process):
    import torch
    from transformers import AutoModelForCausalLM

    # Paper-style checkpoints: resume checkpoints pruned to two, bf16 snapshots gathered from the shards.
    params = run_params(setup, "fsdp2", "fsdp2", 2, save_total_limit=2, snapshot_steps=8)
    out = Path(params.output_dir)
    log = setup / "fsdp2.log"
    job = start_job(two_process_command(setup, params, "fsdp2"), env=job_env(), stdout=log.open("w"),
                    stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 300
        while not (checkpoint_dir(out, 4) / "trainer_state.json").exists():
            assert job.poll() is None and time.time() < deadline, log.read_text()[-4000:]
            time.sleep(0.01)
        os.kill(job.pid, signal.SIGKILL)  # the launcher only: its workers must not outlive it
        job.wait()
        deadline = time.time() + 30
        while _group_alive(job.pid):
            assert time.time() < deadline, "workers kept running after their launcher was killed"
            time.sleep(0.1)
    finally:
        stop_job(job)
    assert read_done(params) is None, "the run finished before the kill: the test proved nothing"
    assert list_checkpoints(out)[-1][0] < 12

    run_job_logged(two_process_command(setup, params, "fsdp2"), log)
    done = read_done(params)
    assert done["world_size"] == 2 and done["global_step"] == 12
    assert_same_curve(read_loss_log(out), read_loss_log(one_process.output_dir), 4, 1e-5, 1e-4)
    # Really sharded: each rank saved its own shard of the model (Accelerate's SHARDED_STATE_DICT layout).
    shards = {p.name for p in (checkpoint_dir(out, 12) / "pytorch_model_fsdp_0").glob("*.distcp")}
    assert shards == {"__0_0.distcp", "__1_0.distcp"}
    assert [s for s, _ in list_checkpoints(out)] == [8, 12] and [s for s, _ in list_snapshots(out)] == [8, 12]
    from safetensors.torch import load_file
    snapshot, consolidated = (load_file(d / "model.safetensors") for d in (list_snapshots(out)[-1][1],
                                                                          checkpoint_dir(out, 12)))
    assert snapshot.keys() <= consolidated.keys() and "model.embed_tokens.weight" in snapshot
    for name, value in snapshot.items():
        assert value.dtype == torch.bfloat16 and torch.equal(value, consolidated[name].to(torch.bfloat16)), name

    # The consolidated weights next to the sharded state load for evaluation, and equal the one-process run's.
    got = AutoModelForCausalLM.from_pretrained(checkpoint_dir(out, 12)).state_dict()
    want = AutoModelForCausalLM.from_pretrained(checkpoint_dir(one_process.output_dir, 12)).state_dict()
    assert got.keys() == want.keys()
    for name in want:
        assert torch.allclose(got[name], want[name], rtol=1e-3, atol=1e-5), name


RANK0_LOAD_SCRIPT = """
import sys
from transformers import TrainingArguments
from posttrain.models import build_model
from posttrain.params import ModelParams

args = TrainingArguments(output_dir=sys.argv[2], report_to="none")  # the distributed state, as the trainer builds it
model = build_model(ModelParams(name_or_path=sys.argv[1], init="pretrained", dtype="float32"))
print("RANK", args.process_index, float(sum(p.abs().sum() for p in model.parameters())), flush=True)
"""


@pytest.mark.slow
def test_pretrained_weights_are_read_on_rank_0_only_under_fsdp2(setup, tmp_path):
    """Built after the distributed state (as posttrain.trainer does), from_pretrained under FSDP's
    cpu_ram_efficient_loading reads the weights on rank 0; rank 1 holds zero placeholders until Accelerate
    broadcasts the shards. Built before it, every rank would read the whole checkpoint."""
    import torch

    from posttrain.models import build_model

    build_model(ModelParams(name_or_path=str(setup / "base"), init="scratch"), dtype=torch.float32).save_pretrained(
        tmp_path / "pretrained")
    script = tmp_path / "load.py"
    script.write_text(RANK0_LOAD_SCRIPT)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(cpu_accelerate_config(tmp_path, "fsdp2")), "--num_processes", "2", str(CPU_WORKER), "--script",
           str(script), str(tmp_path / "pretrained"), str(tmp_path / "args")]
    done = subprocess.run(cmd, env=job_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    sums = dict(line.split()[1:] for line in done.stdout.splitlines() if line.startswith("RANK "))
    assert float(sums["0"]) > 0 and float(sums["1"]) == 0


def _group_alive(pgid: int) -> bool:
    """Whether any live (not zombie) process is left in the job's process group."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # fields after "(comm)": state, ppid, pgrp, ...
            return True
    return False
