"""Models for every arm: pretrained weights, random weights with depth-scaled init, or a training checkpoint.

`build_model(params.model)` is the one entry point; `depth_scaled_init_` is the 0%-Pre initialization (Zhang, Titov &
Sennrich 2019, "Improving Deep Transformer with Depth-Scaled Initialization and Merged Attention"), see its docstring
and docs/training.md for the formula choice. Tests: tests/test_models.py.
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, Qwen2Config

from posttrain.params import EmbeddingReset, ModelParams, TrainingParams
from posttrain.runs import start_checkpoint

log = logging.getLogger(__name__)

# Embeddings, an untied lm_head and every tensor outside the decoder layers: N(0, EMBED_STD), the std Qwen2.5's
# configs give as initializer_range, so only the decoder-layer linears differ between the init schemes.
EMBED_STD = 0.02


def tiny_qwen2_config(vocab_size: int, hidden_size: int = 128, layers: int = 4, heads: int = 4, kv_heads: int = 2,
                      intermediate: int = 512, max_pos: int = 1024, tie_word_embeddings: bool = True,
                      **overrides) -> Qwen2Config:
    """A small Qwen2 config for the miniature; head_dim must be >= 32 because vLLM's CPU attention rejects less."""
    if hidden_size % heads:
        raise ValueError(f"hidden_size {hidden_size} is not divisible by heads {heads}")
    if hidden_size // heads < 32:
        raise ValueError(f"head_dim = hidden_size / heads = {hidden_size // heads} < 32: vLLM's CPU attention "
                         "supports head_dim 32, 64, 80, ... only; use fewer heads or a larger hidden_size")
    if heads % kv_heads:
        raise ValueError(f"heads {heads} is not divisible by kv_heads {kv_heads}")
    return Qwen2Config(vocab_size=vocab_size, hidden_size=hidden_size, num_hidden_layers=layers,
                       num_attention_heads=heads, num_key_value_heads=kv_heads, intermediate_size=intermediate,
                       max_position_embeddings=max_pos, tie_word_embeddings=tie_word_embeddings,
                       initializer_range=EMBED_STD, **overrides)


def _decoder_layers(model: nn.Module) -> nn.ModuleList:
    base = getattr(model, "model", model)
    layers = getattr(base, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise TypeError(f"{type(model).__name__}: no decoder layer list at .model.layers; depth-scaled init "
                        "supports decoder-only HF models such as Qwen2")
    return layers


def depth_scale_bound(fan_in: int, fan_out: int, depth: int, scheme: str, alpha: float = 1.0) -> float:
    """Half-width of U(-b, b) for a linear weight in (1-based) decoder layer `depth`.

    gamma = sqrt(6 / (fan_in + fan_out)) is the Xavier-uniform bound.
    - "paper": b = gamma * alpha / sqrt(depth)  (the formula in the paper / authors' README; std scales as 1/sqrt(l)).
    - "authors_code": b = gamma * alpha * depth**-0.25  (bzhangGo/zero uses TF variance_scaling with scale 1/sqrt(l),
      i.e. the *variance* scales as 1/sqrt(l)).
    """
    gamma = math.sqrt(6.0 / (fan_in + fan_out))
    if scheme == "paper":
        return gamma * alpha / math.sqrt(depth)
    if scheme == "authors_code":
        return gamma * alpha * depth ** -0.25
    raise ValueError(f"model.depth_scaled_init: unknown scheme {scheme!r} (expected 'paper' or 'authors_code')")


def _depth_scaled_fills(model: nn.Module, scheme: str, alpha: float):
    """(parameter, kind, value) for every tensor DS-Init sets, in the fixed order its random draws follow:
    decoder layers bottom to top (linear weights "uniform" with their bound, biases 0, norm weights 1), then token
    embeddings and an untied lm_head ("normal" with EMBED_STD), then the final norm."""
    for depth, layer in enumerate(_decoder_layers(model), start=1):
        for module in layer.modules():
            if isinstance(module, nn.Linear):
                yield module.weight, "uniform", depth_scale_bound(module.in_features, module.out_features, depth,
                                                                  scheme, alpha)
                if module.bias is not None:
                    yield module.bias, "constant", 0.0
            elif hasattr(module, "weight") and "norm" in type(module).__name__.lower():
                yield module.weight, "constant", 1.0
    embeddings = model.get_input_embeddings().weight
    yield embeddings, "normal", EMBED_STD
    out = model.get_output_embeddings()
    if out is not None and out.weight is not embeddings:
        yield out.weight, "normal", EMBED_STD
    final_norm = getattr(getattr(model, "model", model), "norm", None)
    if final_norm is not None:
        yield final_norm.weight, "constant", 1.0


def _set_values(param: torch.Tensor, full: torch.Tensor | float, dtype: torch.dtype | None) -> None:
    """Write a parameter's values given the whole tensor (or a constant). A sharded parameter (FSDP2 DTensor) keeps
    only its own shard of `full`, so no rank holds more than one whole tensor at a time. `dtype`: round the values
    through it first (a bf16 model kept in fp32 master weights gets the same values as a plain bf16 model)."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    local = param.to_local() if isinstance(param, DTensor) else param
    if not isinstance(full, torch.Tensor):
        local.fill_(full)
        return
    full = full.to(dtype or local.dtype)
    if isinstance(param, DTensor):  # every rank drew the same whole tensor: each keeps its slice, no communication
        full = distribute_tensor(full, param.device_mesh, param.placements, src_data_rank=None).to_local()
    local.copy_(full)


@torch.no_grad()
def depth_scaled_init_(model: PreTrainedModel, scheme: str = "paper", seed: int = 0, alpha: float = 1.0,
                       dtype: torch.dtype | None = None) -> None:
    """Re-initialize a decoder-only model in place with depth-scaled init (DS-Init).

    Every nn.Linear weight inside decoder layer l (l = 1..L, bottom to top: q/k/v/o and gate/up/down for Qwen2) is
    drawn from U(-b, b) with b from `depth_scale_bound` (alpha = 1: the paper leaves alpha as a hyperparameter in
    [0, 1]; 1 keeps layer 1 at plain Xavier). Linear biases (Qwen2's q/k/v) are zero, norm weights one. Token
    embeddings and an untied lm_head are N(0, 0.02). `scheme="none"` leaves the HF default init untouched.
    Seeded by `seed` through a private generator, so the result does not depend on global RNG state, nor on how the
    parameters are sharded: each whole tensor is drawn in turn (float32, then rounded through `dtype` if given) and
    a sharded parameter keeps its own slice (see `_set_values`).
    """
    if scheme == "none":
        return
    gen = torch.Generator(device="cpu").manual_seed(seed)
    for param, kind, value in list(_depth_scaled_fills(model, scheme, alpha)):
        with _gathered_if_zero3(param):
            if kind == "uniform":
                full = (torch.rand(param.shape, generator=gen, dtype=torch.float32) * 2 - 1).mul_(value)
            elif kind == "normal":
                full = torch.randn(param.shape, generator=gen, dtype=torch.float32).mul_(value)
            else:
                full = value
            _set_values(param, full, dtype)


def _gathered_if_zero3(param: torch.Tensor):
    """A DeepSpeed ZeRO-3 parameter (built under zero3_init_flag) holds only its partition: gather it whole for the
    write, one parameter at a time, and re-partition rank 0's values (all ranks draw the same). Not exercised in
    the tests (DeepSpeed needs a GPU here)."""
    if not hasattr(param, "ds_id"):
        return contextlib.nullcontext()
    import deepspeed
    return deepspeed.zero.GatheredParameters([param], modifier_rank=0)


def load_config(model_params: ModelParams, source: str | Path | None = None):
    cfg = AutoConfig.from_pretrained(str(source or model_params.name_or_path))
    for key, value in model_params.config_overrides.items():
        rope = getattr(cfg, "rope_parameters", None)
        if not hasattr(cfg, key) and isinstance(rope, dict) and key in rope:
            rope[key] = value  # transformers 5 keeps rope_theta inside rope_parameters
            continue
        if not hasattr(cfg, key):
            raise ValueError(f"model.config_overrides.{key}: {type(cfg).__name__} has no such field")
        setattr(cfg, key, value)
    return cfg


# Attention for packed rows (transformers 5.19, read in its source). With position_ids that restart per document and
# no attention_mask, sdpa and eager get a dense block-diagonal mask (masking_utils.find_packed_sequence_indices): the
# documents stay apart, but every row costs max_length² (at 32k: ~26 instead of ~11 GFLOP/token for 1.5B).
# flash_attention_2/3/4 run varlen kernels on the document boundaries (TRL's cu_seq_lens, or position_ids), but only
# for one flattened row (modeling_flash_attention_utils._is_packed_sequence needs batch size 1: padding_free
# batching); per_row batches of several rows would attend across documents. flex_attention builds a block-sparse
# document mask from position_ids in any batch shape (PyTorch FlexAttention; not measured here).
FLASH_ATTENTION = ("flash_attention_2", "flash_attention_3", "flash_attention_4")
DENSE_ATTENTION = ("sdpa", "eager")
DENSE_MASK_MAX_LENGTH = 4096  # packed rows longer than this refuse a dense mask on a GPU
# Where each flash implementation comes from: its own package, or `kernels`, with which transformers loads a
# prebuilt kernel from the hub (kernels-community/flash-attn2, ...; modeling_flash_attention_utils.FLASH_ATTN_KERNEL_FALLBACK).
FLASH_PACKAGES = {"flash_attention_2": "flash_attn", "flash_attention_3": "flash_attn_interface",
                  "flash_attention_4": "flash_attn.cute"}
INSTALL_HINT = ("install one: `pip install kernels` (transformers then loads kernels-community/flash-attn2 from the "
                "hub) or `pip install flash-attn --no-build-isolation`; or set model.attn_implementation: "
                "flex_attention (PyTorch FlexAttention)")


def installed_attention() -> set[str]:
    """The flash implementations this environment can run: those whose package is importable, and all of them where
    the `kernels` package is (transformers falls back to the hub's builds)."""
    if importlib.util.find_spec("kernels") is not None:
        return set(FLASH_ATTENTION)
    found = set()
    for impl, package in FLASH_PACKAGES.items():
        try:
            if importlib.util.find_spec(package) is not None:
                found.add(impl)
        except ModuleNotFoundError:  # flash_attn.cute when flash_attn is absent
            pass
    return found


def select_attn_implementation(model: ModelParams, training: TrainingParams, gpu: bool,
                               installed: set[str] | None = None) -> str:
    """The attention implementation a run trains with: model.attn_implementation if set, else flash_attention_2
    on a GPU where it is installed (sdpa on the CPU). Refused, naming what to install or set: packed rows on a GPU
    with no document-masked kernel (a dense mask over rows longer than DENSE_MASK_MAX_LENGTH), a flash kernel with
    per_row batching (several rows per batch: documents would attend to each other), or a flash kernel that is not
    installed. `installed`: installed_attention() (tests pass their own)."""
    requested = model.attn_implementation
    if not gpu:
        return requested or "sdpa"
    installed = installed_attention() if installed is None else installed
    packed = training.packing
    if requested is None:
        if "flash_attention_2" in installed:
            requested = "flash_attention_2"
        elif packed:
            raise ValueError(f"packed rows of training.max_length {training.max_length} on a GPU need a document-masked "
                             f"attention kernel (sdpa would build a dense {training.max_length}² mask per row); "
                             + INSTALL_HINT)
        else:
            return "sdpa"
    if requested in FLASH_ATTENTION and requested not in installed:
        raise ValueError(f"model.attn_implementation {requested!r} is not installed; " + INSTALL_HINT)
    is_flash = requested in FLASH_ATTENTION or "flash" in requested  # also a hub kernel named directly
    if packed and is_flash and training.batching == "per_row":
        raise ValueError(f"model.attn_implementation {requested!r} with training.batching 'per_row': flash kernels "
                         "find document boundaries only in one flattened row, so documents in rows of a per_row batch "
                         "would attend to each other; use training.batching 'padding_free', or flex_attention")
    if packed and requested in DENSE_ATTENTION and training.max_length > DENSE_MASK_MAX_LENGTH:
        raise ValueError(f"model.attn_implementation {requested!r} builds a dense {training.max_length}² mask per "
                         f"packed row on a GPU (allowed up to training.max_length {DENSE_MASK_MAX_LENGTH}); "
                         + INSTALL_HINT)
    return requested


def build_model(model_params: ModelParams, dtype: torch.dtype | None = None, on_meta: bool = False,
                attn_implementation: str | None = None) -> PreTrainedModel:
    """The model for one run: init "pretrained" (hub/local weights, optional LoRA), "scratch" (config of
    `name_or_path` + overrides, random weights, depth-scaled init) or "checkpoint" (a training checkpoint dir, or a
    finished run's output dir → the final checkpoint its done marker names; runs.start_checkpoint). `dtype` overrides
    `model_params.dtype` (training on CPU uses fp32); `attn_implementation` overrides model.attn_implementation
    (posttrain.trainer passes select_attn_implementation's choice; default sdpa).

    Call it after the distributed state exists (TrainingArguments built): then from_pretrained loads on rank 0
    only under FSDP's cpu_ram_efficient_loading (meta elsewhere), and from_config partitions at construction under
    DeepSpeed's zero3_init_flag. `on_meta` (scratch arms with depth-scaled init): the parameters stay on the meta
    device (no memory) for the caller to shard, then `initialize_sharded_scratch_` fills each rank's shards."""
    dtype = dtype or getattr(torch, model_params.dtype)
    attn = attn_implementation or model_params.attn_implementation or "sdpa"
    if model_params.init == "scratch":
        cfg = load_config(model_params)
        cfg._attn_implementation = attn
        if on_meta:
            if model_params.depth_scaled_init == "none":
                raise ValueError("model.depth_scaled_init 'none' (HF's own init) cannot initialize a sharded model "
                                 "shard by shard; use 'paper' or 'authors_code'")
            from accelerate import init_empty_weights
            with init_empty_weights(include_buffers=False):  # buffers (rotary inv_freq) are small and computed
                model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
            log.info("built scratch model on the meta device (%.1fM params), to be sharded then initialized",
                     sum(p.numel() for p in model.parameters()) / 1e6)
            return model
        torch.manual_seed(model_params.init_seed)  # HF's own init (scheme "none") draws from the global RNG
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
        depth_scaled_init_(model, model_params.depth_scaled_init, seed=model_params.init_seed)
        model = model.to(dtype)
    else:
        source = (start_checkpoint(model_params.checkpoint)[0] if model_params.init == "checkpoint"
                  else model_params.name_or_path)
        cfg = load_config(model_params, source)
        model = AutoModelForCausalLM.from_pretrained(str(source), config=cfg, dtype=dtype, attn_implementation=attn)
    if model_params.lora is not None:
        from peft import LoraConfig, get_peft_model
        lp = model_params.lora
        model = get_peft_model(model, LoraConfig(r=lp.r, lora_alpha=lp.alpha, lora_dropout=lp.dropout,
                                                 target_modules=lp.target_modules, task_type="CAUSAL_LM"))
    log.info("built %s model (%s, %.1fM params, %s)", model_params.init, type(model).__name__,
             sum(p.numel() for p in model.parameters()) / 1e6, dtype)
    return model


@torch.no_grad()
def initialize_sharded_scratch_(model: PreTrainedModel, model_params: ModelParams, device: torch.device | str,
                                dtype: torch.dtype | None = None) -> None:
    """A scratch model built with on_meta=True and then sharded (FSDP2 fully_shard): allocate each rank's shards on
    `device` and fill them with the same depth-scaled values a whole-model build gives (`depth_scaled_init_` draws
    each whole tensor in turn and keeps this rank's slice). `dtype`: the dtype the values are rounded through."""
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}  # real: to_empty would wipe them
    model.to_empty(device=device)
    for name, value in buffers.items():
        model.get_buffer(name).copy_(value)
    model.tie_weights()  # to_empty gives tied tensors (embeddings / lm_head) separate storage: tie them again
    depth_scaled_init_(model, model_params.depth_scaled_init, seed=model_params.init_seed,
                       dtype=dtype or getattr(torch, model_params.dtype))


def corpus_token_ids(tokenizer, corpus: str | Path, batch: int = 2048) -> set[int]:
    """Every token id of a text_jsonl corpus as pre-training saw it: each document's text, then eos."""
    import json

    seen = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    with open(corpus) as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    for i in range(0, len(texts), batch):
        seen.update(t for ids in tokenizer(texts[i:i + batch], add_special_tokens=False)["input_ids"] for t in ids)
    return seen


@torch.no_grad()
def reset_token_embeddings(model: PreTrainedModel, tokenizer, reset: EmbeddingReset) -> list[int]:
    """model.reset_embeddings: re-draw the input embedding rows of the tokens `reset` names (all, or those
    `reset.corpus` never holds) from N(0, EMBED_STD), the scratch init's embedding distribution; a tied lm_head
    follows, an untied one gets the same rows re-drawn too. A row's new value depends on its id and the seed only
    (one seeded draw of the whole matrix), so "unseen" rows equal "all"'s. Returns the ids that were reset."""
    emb = model.get_input_embeddings().weight
    if emb.is_meta:
        raise ValueError("model.reset_embeddings needs the weights in memory (not on the meta device: FSDP's "
                         "cpu_ram_efficient_loading); run it on one process")
    if reset.tokens == "all":
        ids = list(range(emb.shape[0]))
    else:
        seen = corpus_token_ids(tokenizer, reset.corpus)
        ids = [i for i in range(len(tokenizer)) if i not in seen]
    gen = torch.Generator(device="cpu").manual_seed(reset.seed)
    rows = torch.tensor(ids, dtype=torch.long)
    for weight in dict.fromkeys([emb, getattr(model.get_output_embeddings(), "weight", emb)]):  # once if tied
        fresh = torch.randn(weight.shape, generator=gen, dtype=torch.float32).mul_(EMBED_STD)
        weight[rows.to(weight.device)] = fresh[rows].to(weight.dtype).to(weight.device)
    log.info("reset %d token embedding rows (%s)", len(ids), reset.tokens)
    return ids


def build_tokenizer(model_params: ModelParams):
    """Tokenizer from `model.tokenizer`, else the checkpoint (init=checkpoint), else `name_or_path`."""
    source = model_params.tokenizer
    if source is None and model_params.init == "checkpoint":
        ckpt = start_checkpoint(model_params.checkpoint)[0]
        source = ckpt if (ckpt / "tokenizer_config.json").is_file() else model_params.name_or_path
    return AutoTokenizer.from_pretrained(str(source or model_params.name_or_path))


CHATML_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def train_chatml_tokenizer(texts, vocab_size: int = 512):
    """A byte-level BPE tokenizer trained on `texts` with Qwen's special tokens (<|endoftext|> as eos/pad, ChatML
    markers): for tests and tiny models, which cannot download Qwen's tokenizer here."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=CHATML_SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                   additional_special_tokens=CHATML_SPECIAL_TOKENS[1:])
