"""The params schemas: every field of a run or a study file, declared and validated (posttrain.params)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

REPO_ROOT = Path(__file__).resolve().parents[3]

Arm = Literal["Base", "0%-Pre", "0.1%-Pre", "short-Pre", "100%-Pre"]
Domain = Literal["math", "code"]


class ParamsError(ValueError):
    """A params file is wrong; the message names the file and the field."""


class Strict(BaseModel):
    # extra="forbid": a misspelt field is an error, never a silently ignored default.
    model_config = ConfigDict(extra="forbid", frozen=True)
    # Fields added after finished runs existed: left out of dumps (so of params hashes) while at their default, so
    # those runs keep their hashes and are not retrained; set to anything else, they enter the hash.
    added_fields: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _omit_added_defaults(self, handler):
        data = handler(self)
        if not self.added_fields or not isinstance(data, dict):
            return data
        return {k: v for k, v in data.items()
                if k not in self.added_fields or getattr(self, k) != type(self).model_fields[k].default}


# ---------------------------------------------------------------------------------------------- training


class LoraParams(Strict):
    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class EmbeddingReset(Strict):
    # Before SFT, re-draw token embedding rows of a pre-trained model from the scratch init's N(0, 0.02)
    # (posttrain.models.reset_token_embeddings; issue 23's ablation: ossification or an embedding artifact?).
    tokens: Literal["unseen", "all"] = "unseen"  # unseen: the tokens that never occur in `corpus`
    corpus: str | None = None  # the pre-training corpus as text_jsonl ({"text": ...} per line); needed for "unseen"
    seed: int = 0

    @model_validator(mode="after")
    def _check(self):
        if self.tokens == "unseen" and not self.corpus:
            raise ValueError("model.reset_embeddings.corpus is required for tokens 'unseen' (the pre-training "
                             "corpus, text_jsonl: which tokens it never holds)")
        return self


class ModelParams(Strict):
    name_or_path: str  # hub id or local dir: supplies the config and tokenizer (and weights when init=pretrained)
    tokenizer: str | None = None  # defaults to name_or_path
    init: Literal["pretrained", "scratch", "checkpoint"]
    checkpoint: str | None = None  # init=checkpoint: a run's output dir (its latest checkpoint) or a checkpoint dir
    depth_scaled_init: Literal["paper", "authors_code", "none"] = "paper"  # scratch only; see posttrain.models
    init_seed: int = 0
    config_overrides: dict[str, Any] = {}  # e.g. rope_theta, max_position_embeddings for 32k SFT
    dtype: Literal["bfloat16", "float32"] = "bfloat16"
    # None: chosen by posttrain.models.select_attn_implementation (packed rows on a GPU need a document-masked
    # kernel: flash_attention_2 from flash-attn or the `kernels` package; sdpa on CPU).
    attn_implementation: str | None = None
    lora: LoraParams | None = None
    reset_embeddings: EmbeddingReset | None = None  # init checkpoint / pretrained only
    added_fields: ClassVar[frozenset[str]] = frozenset({"reset_embeddings"})

    @model_validator(mode="after")
    def _check(self):
        if self.init == "checkpoint" and not self.checkpoint:
            raise ValueError("model.checkpoint is required when model.init is 'checkpoint'")
        if self.reset_embeddings is not None and self.init == "scratch":
            raise ValueError("model.reset_embeddings is for a pre-trained model (init 'checkpoint' or 'pretrained'); "
                             "a scratch model's embeddings are already the scratch init")
        if self.init != "checkpoint" and self.checkpoint:
            raise ValueError(f"model.checkpoint is only used with init 'checkpoint', not {self.init!r}")
        if self.lora is not None and self.init != "pretrained":
            raise ValueError(
                f"model.lora is refused for init {self.init!r}: LoRA freezes the base weights, and frozen random "
                "weights measure nothing; use full fine-tuning for scratch and short-pretrained arms")
        return self


class DataParams(Strict):
    # Which loader in posttrain.data; hub datasets stream, local files (jsonl/dir) are for tests and offline runs.
    source: Literal["open_math_reasoning", "open_code_reasoning_2", "dclm", "messages_jsonl", "text_jsonl"]
    path: str | None = None  # hub id override, or a local file / glob / dir of .jsonl, .jsonl.zst(d) or .parquet
    split: str | None = None
    subset: str | None = None
    revision: str | None = None  # hub revision (commit, tag or branch) to pin
    languages: list[str] | None = None  # open_code_reasoning_2: ["python", "cpp"]
    streaming: bool = True
    max_examples: int | None = Field(None, gt=0)
    seed: int = 0  # the order of rows (and which rows, with max_examples)
    # open_code_reasoning_2: where its rows' problem texts come from, by its `dataset` column (taco, apps,
    # code_contests, open-r1/codeforces): a local file pattern holding `{split}`, e.g. "/data/TACO/ALL/{split}-*.parquet";
    # sources not named load from the hub (posttrain.ocr_join.HUB_SOURCES).
    join_sources: dict[str, str] = {}
    # Where `python -m posttrain.prepare` writes this run's tokenized, packed data and training reads it (map-style,
    # resumable at any step). None: the data is tokenized in the training process (the miniature's small files).
    prepared_dir: str | None = None


class TrainingParams(Strict):
    # The `training:` section of a RunParams: stage, optimizer, schedule in tokens, precision, checkpointing.
    stage: Literal["pretrain", "sft"]
    max_length: int = Field(32768, gt=0)
    learning_rate: float = Field(3.0e-4, gt=0)
    lr_scheduler: Literal["cosine", "constant_with_warmup", "linear", "warmup_stable_decay"] = "cosine"
    warmup_steps: int = Field(2000, ge=0)
    # warmup_stable_decay (transformers' get_wsd_schedule): linear warmup, the peak LR, then the last decay_steps
    # steps decay to 0 with decay_type. branch_from: a checkpoint-N dir of a stable run (constant_with_warmup, same
    # warmup, LR and data) whose whole state (weights, optimizer, RNG, data position) this run resumes at step N:
    # a decay branch (posttrain.mini.anneal.decay_branch builds one; docs/miniature.md "v3").
    decay_steps: int | None = Field(None, gt=0)
    decay_type: Literal["linear", "cosine", "1-sqrt"] = "1-sqrt"
    branch_from: str | None = None
    max_steps: int | None = Field(50000, gt=0)  # or derive from token_budget
    token_budget: int | None = Field(None, gt=0)  # pre-training: total tokens (10B in the paper)
    tokens_per_step: int = Field(2 * 1024 * 1024, gt=0)  # global batch in tokens
    per_device_batch_size: int = Field(1, gt=0)  # packed sequences of max_length per device per micro-step
    gradient_accumulation_steps: int | None = Field(None, gt=0)  # None: derived from tokens_per_step and world size
    weight_decay: float = Field(0.0, ge=0)
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    max_grad_norm: float = 1.0
    bf16: bool = True
    gradient_checkpointing: bool = True
    use_liger: Literal["auto", "on", "off"] = "off"  # off until measured with this transformers on a GPU
    packing: bool = True
    # How packed rows reach the model (docs/training.md, "Batching"). "padding_free": TRL flattens the batch into one
    # row (linear in the batch only with flash-attention varlen kernels, i.e. on GPU). "per_row": each packed row
    # stays a row padded to max_length, documents masked from each other by position_ids (posttrain.collate); on
    # CPU/sdpa attention is then linear in the batch. Needs packing: true.
    batching: Literal["padding_free", "per_row"] = "padding_free"
    assistant_only_loss: bool = True
    save_steps: int = Field(1000, gt=0)  # resume checkpoints (model + optimizer state), checkpoint-N/
    # Evaluation snapshots every this many steps and at the last step: bf16 weights + tokenizer only, under
    # snapshots/checkpoint-N/, never pruned; evaluation then reads these instead of the resume checkpoints.
    snapshot_steps: int | None = Field(None, gt=0)
    # Extra checkpoint steps. With a constant LR after warmup, the checkpoint at step k is the run a k-step budget
    # would have made (same init, data order and LR at every step): one run gives the SFT-scale axis.
    save_at: list[int] = []
    save_total_limit: int | None = Field(None, gt=0)  # resume checkpoints kept (the newest); snapshots are not counted
    # Live experiment tracking through transformers' integrations: "none", or "tensorboard" (under
    # output_dir/tensorboard), "trackio", "wandb". Loss, LR, grad norm and tokens/s; loss.jsonl is written either way.
    report_to: Literal["none", "tensorboard", "trackio", "wandb"] = "none"
    logging_steps: int = Field(10, gt=0)
    seed: int = 0
    use_cpu: bool = False
    added_fields: ClassVar[frozenset[str]] = frozenset({"decay_steps", "decay_type", "branch_from"})

    @model_validator(mode="after")
    def _check(self):
        if (self.max_steps is None) == (self.token_budget is None):
            raise ValueError("training: give exactly one of max_steps and token_budget")
        if self.stage == "pretrain" and self.assistant_only_loss:
            raise ValueError("training.assistant_only_loss must be false for stage 'pretrain' (plain text)")
        if self.batching == "per_row" and not self.packing:
            raise ValueError("training.batching 'per_row' batches packed rows: it needs training.packing true")
        if self.save_at and self.save_total_limit:
            raise ValueError("training.save_at checkpoints would be pruned by training.save_total_limit; use "
                             "training.snapshot_steps for checkpoints that are kept")
        wsd = self.lr_scheduler == "warmup_stable_decay"
        if wsd != (self.decay_steps is not None):
            raise ValueError("training.decay_steps goes with lr_scheduler 'warmup_stable_decay', and it needs it")
        if self.branch_from and not wsd:
            raise ValueError("training.branch_from (a decay branch) needs lr_scheduler 'warmup_stable_decay'")
        if wsd and self.max_steps is not None and self.warmup_steps + self.decay_steps > self.max_steps:
            raise ValueError(f"training: warmup_steps + decay_steps ({self.warmup_steps} + {self.decay_steps}) "
                             f"exceed max_steps ({self.max_steps})")
        return self


class LaunchParams(Strict):
    # How `accelerate launch` runs the stage; see configs/accelerate/ and scripts/slurm_train.sh.
    backend: Literal["local", "single_gpu", "ddp", "fsdp2", "deepspeed_zero3"] = "local"
    num_machines: int = Field(1, gt=0)
    gpus_per_machine: int = Field(1, gt=0)


class RunParams(Strict):
    # One training run (a params/paper/*.yaml file, or an item of a study's pretrain/sft list); see posttrain.runs.
    name: str
    arm: Arm
    size: str  # "1.5B", ..., "mini"
    domain: Domain | None = None  # SFT domain; None for pre-training
    output_dir: str
    model: ModelParams
    data: DataParams
    training: TrainingParams
    launch: LaunchParams = LaunchParams()

    @model_validator(mode="after")
    def _check(self):
        if self.training.stage == "sft" and self.domain is None:
            raise ValueError("domain is required for an SFT run ('math' or 'code')")
        if self.training.snapshot_steps and self.model.lora is not None:
            raise ValueError("training.snapshot_steps writes full bf16 weights; a model.lora run saves adapters "
                             "(evaluate its checkpoint-N dirs instead)")
        return self


# ---------------------------------------------------------------------------------------------- evaluation


class SamplingParams(Strict):
    n: int = Field(10, gt=0)
    temperature: float = Field(0.6, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int = Field(32768, gt=0)
    seed: int = 0

    @model_validator(mode="after")
    def _check(self):
        if self.n > 1 and self.temperature == 0:
            raise ValueError("sampling.temperature must be > 0 when sampling.n > 1 (greedy samples are identical)")
        return self


class EvalModel(Strict):
    name: str  # unique key, also the directory name under eval/
    arm: Arm
    size: str
    train_domain: Domain | None = None  # None for Base
    path: str  # hub id, a model dir, or a training output dir holding checkpoint-* dirs
    checkpoints: Literal["final", "all"] = "final"


class EvalParams(Strict):
    # models: listed explicitly, or "auto" = Base (the 100% pre-training output or hub model) + every SFT run.
    models: list[EvalModel] | Literal["auto"] = "auto"
    base_model: str | dict[str, str] | None = None  # auto mode: the Base arm's model, or {size: model} per size
    checkpoints: Literal["final", "all"] = "all"  # auto mode: which checkpoints of SFT runs to evaluate
    curve_benchmarks: list[str] | None = None  # benchmarks for non-final checkpoints; None = in-domain ones
    benchmarks: dict[Domain, list[str]]  # in-domain benchmarks per domain, e.g. {math: [math500, aime24]}
    # Also evaluate math models on code benchmarks and the reverse (final checkpoints): True = every benchmark of the
    # other domain, a list = these benchmarks only (e.g. the in-domain sets, not the probes).
    cross_domain: bool | list[str] = True
    data_dir: str | None = None  # local benchmark files (offline); None = hub
    limit: int | None = Field(None, gt=0)  # max problems per benchmark (smoke runs)
    sampling: SamplingParams = SamplingParams()
    engine: Literal["vllm", "hf", "auto"] = "auto"  # auto: vLLM if importable, else HF generate with a warning
    tensor_parallel_size: int = Field(1, gt=0)
    data_parallel_size: int = Field(1, gt=0)
    # Context (prompt + new tokens) per engine; None = each model's max_position_embeddings. A mapping gives it per
    # model size ({default: 34816, "3B": 32768}): vLLM refuses a max_model_len beyond a model's positions.
    max_model_len: int | dict[str, int] | None = None
    # Engine dtype; "auto" is vLLM's choice (it runs an fp32 checkpoint in bf16). CPUs without AVX-512 BF16
    # generate 1.5-1.7x faster in float32 (benchmarks/vllm_dtype.py, docs/evaluation.md).
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    chunk_size: int = Field(256, gt=0)  # prompts per engine call: records are appended after each chunk
    # HF engine: sequences (prompts × n) per generate call. For the miniature's models 64 beat 256 and 512 (a call
    # runs until its longest sample ends; benchmarks/generation.py, docs/miniature.md §13).
    hf_batch_sequences: int = Field(64, gt=0)
    grade_timeout_s: float = Field(6.0, gt=0)
    grade_workers: int | None = Field(None, gt=0)  # grader processes; None = the graders' default (all cores)
    prompts: dict[Domain, str] = {}  # prompt template names per domain; {} = defaults in posttrain.prompts

    def context_for(self, size: str) -> int | None:
        """max_model_len for a model of this size (its own entry, else `default`, else None)."""
        if not isinstance(self.max_model_len, dict):
            return self.max_model_len
        return self.max_model_len.get(size, self.max_model_len.get("default"))


# ---------------------------------------------------------------------------------------------- study


class MiniSetupParams(Strict):
    # The paper in miniature: a generated world (posttrain.mini.world; design: docs/miniature.md), its corpus, SFT
    # pools and evaluation sets, a tokenizer trained on them and a tiny Qwen2 config. The world fields are
    # posttrain.mini.world.WorldSpec's (same names, same meaning); the rest sizes the tokenizer and the model.
    seed: int = 0  # the world's seed: the final study uses 0, pilots >= 1000 (docs/miniature.md §7)
    num_towns: int = Field(40, ge=4)
    exposures_per_fact: int = Field(300, gt=0)
    arithmetic_docs: int = Field(6000, ge=0)
    program_docs: int = Field(6000, ge=0)
    story_docs: int = Field(2000, ge=0)
    math_train: int = Field(16000, gt=0)
    code_train: int = Field(16000, gt=0)
    math_test: int = Field(240, gt=0)
    math_competition: int = Field(120, gt=0)
    code_test: int = Field(200, gt=0)
    code_competition: int = Field(100, gt=0)
    knowledge_probe: int = Field(120, gt=0)
    knowledge_seen: int = Field(120, gt=0)
    knowledge_fraction: float = Field(0.25, ge=0, le=1)
    drill_fraction: float = Field(0.0, ge=0, le=1)
    math_numbers: Literal["standard", "small", "tiny"] = "standard"
    # v3 corpus options (posttrain.mini.world.WorldSpec; docs/miniature.md "v3"): the defaults are the v2 world.
    fact_templates: Literal["mixed", "value_last"] = "mixed"
    qa_fraction: float = Field(0.0, ge=0, le=1)
    boxed_fraction: float = Field(0.0, ge=0, le=1)
    fenced_program_fraction: float = Field(0.0, ge=0, le=1)
    arithmetic_scenery: Literal["towns", "none"] = "towns"
    code_split: Literal["hash", "covered"] = "hash"
    added_fields: ClassVar[frozenset[str]] = frozenset({"fact_templates", "qa_fraction", "boxed_fraction",
                                                        "fenced_program_fraction", "arithmetic_scenery", "code_split"})
    vocab_size: int = Field(1024, gt=0)
    hidden_size: int = Field(128, gt=0)
    num_hidden_layers: int = Field(2, gt=0)
    num_attention_heads: int = Field(4, gt=0)  # head_dim = hidden/heads must be >= 32 for vLLM's CPU attention
    num_key_value_heads: int = Field(2, gt=0)
    intermediate_size: int = Field(512, gt=0)
    max_position_embeddings: int = Field(1024, gt=0)

    @model_validator(mode="after")
    def _check(self):
        if self.hidden_size % self.num_attention_heads or self.hidden_size // self.num_attention_heads < 32:
            raise ValueError("setup: hidden_size / num_attention_heads must be an integer >= 32 "
                             "(vLLM's CPU attention rejects smaller head dims)")
        if self.knowledge_fraction + self.drill_fraction > 1:
            raise ValueError("setup: knowledge_fraction + drill_fraction must be <= 1 (the rest of the math SFT "
                             "pool is self-contained word problems)")
        return self


class ExploreParams(Strict):
    sft_sources: list[DataParams] = []  # [] = the data of the study's SFT runs
    ngram: int = Field(13, gt=0)
    max_sft_rows: int | None = Field(None, gt=0)
    benchmarks: list[str] | None = None  # None = all benchmarks named in evaluate
    reference_overlap: bool = True  # also MATH-500/AIME vs GSM8K train from ../shared/data, where present


class GateParams(Strict):
    """The miniature's gate thresholds (posttrain.mini.gates; docs/miniature.md §8), as fractions of pass@1."""
    learning_floor: float = Field(0.30, ge=0, le=1)  # 0%-Pre's last in-domain math checkpoint at least this
    off_the_ceiling: float = Field(0.95, ge=0, le=1)  # 100%-Pre's first checkpoint at most this
    instruments: float = Field(0.05, ge=0, le=1)  # Base (never saw the chat format) at most this
    storage: float = Field(0.80, ge=0, le=1)  # Base's fill-in recall of the world's facts at least this


class ReportParams(Strict):
    sizes: list[str] | None = None  # row order; None = as found
    examples_per_arm: int = Field(2, ge=0)
    figures_dir: str = "{repo}/figures/{name}"
    # Sizes that are training-seed replicates of one configuration (e.g. {L: [L-seed0, L-seed1, ...]}): the claims
    # are then decided on a pooled case per group, whose CI resamples seeds and problems within each seed
    # (metrics.bootstrap_over_seeds); the single-seed cases are shown but no longer decide.
    seed_groups: dict[str, list[str]] = {}
    gates: GateParams = GateParams()

    @model_validator(mode="after")
    def _check(self):
        for group, members in self.seed_groups.items():
            if len(members) < 2 or len(set(members)) != len(members):
                raise ValueError(f"report.seed_groups.{group}: needs >= 2 distinct sizes, got {members}")
        seen = [m for ms in self.seed_groups.values() for m in ms]
        if len(seen) != len(set(seen)):
            raise ValueError(f"report.seed_groups: a size is in more than one group: {seen}")
        return self


class StudyParams(Strict):
    name: str
    run_dir: str = "{repo}/runs/{name}"
    setup: MiniSetupParams | None = None
    explore: ExploreParams = ExploreParams()
    pretrain: list[RunParams] = []
    sft: list[RunParams] = []
    evaluate: EvalParams
    report: ReportParams = ReportParams()
    # Local-backend training processes at once (notebooks 01/02), the CPU cores split among them. A tiny model
    # trains faster as two one-thread processes than as one two-thread process (docs/miniature.md §13).
    train_workers: int = Field(1, gt=0)

    @model_validator(mode="after")
    def _check(self):
        names = [r.name for r in self.pretrain + self.sft]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"run names must be unique across pretrain and sft: {dupes}")
        sizes = {r.size for r in self.sft}
        for group, members in self.report.seed_groups.items():
            unknown = [m for m in members if m not in sizes]
            if unknown:
                raise ValueError(f"report.seed_groups.{group}: {unknown} is not the size of any sft run "
                                 f"(sizes: {sorted(sizes)})")
        return self


