"""Models for every arm: pretrained weights, random weights with depth-scaled init, or a training checkpoint.

`build_model(params.model)` is the one entry point; `depth_scaled_init_` is the 0%-Pre initialization (Zhang, Titov &
Sennrich 2019, "Improving Deep Transformer with Depth-Scaled Initialization and Merged Attention"), see its docstring
and docs/training.md for the formula choice. Tests: tests/test_models.py.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, Qwen2Config

from posttrain.params import ModelParams
from posttrain.runs import latest_checkpoint

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


@torch.no_grad()
def depth_scaled_init_(model: PreTrainedModel, scheme: str = "paper", seed: int = 0, alpha: float = 1.0) -> None:
    """Re-initialize a decoder-only model in place with depth-scaled init (DS-Init).

    Every nn.Linear weight inside decoder layer l (l = 1..L, bottom to top: q/k/v/o and gate/up/down for Qwen2) is
    drawn from U(-b, b) with b from `depth_scale_bound` (alpha = 1: the paper leaves alpha as a hyperparameter in
    [0, 1]; 1 keeps layer 1 at plain Xavier). Linear biases (Qwen2's q/k/v) are zero, norm weights one. Token
    embeddings and an untied lm_head are N(0, 0.02). `scheme="none"` leaves the HF default init untouched.
    Seeded by `seed` through a private generator, so the result does not depend on global RNG state.
    """
    if scheme == "none":
        return
    gen = torch.Generator(device="cpu").manual_seed(seed)

    def fill_uniform(t: torch.Tensor, bound: float) -> None:
        t.copy_((torch.rand(t.shape, generator=gen, dtype=torch.float32) * 2 - 1).mul_(bound).to(t.dtype))

    def fill_normal(t: torch.Tensor, std: float) -> None:
        t.copy_((torch.randn(t.shape, generator=gen, dtype=torch.float32) * std).to(t.dtype))

    for depth, layer in enumerate(_decoder_layers(model), start=1):
        for module in layer.modules():
            if isinstance(module, nn.Linear):
                fill_uniform(module.weight, depth_scale_bound(module.in_features, module.out_features, depth,
                                                              scheme, alpha))
                if module.bias is not None:
                    module.bias.zero_()
            elif hasattr(module, "weight") and "norm" in type(module).__name__.lower():
                module.weight.fill_(1.0)
    fill_normal(model.get_input_embeddings().weight, EMBED_STD)
    out = model.get_output_embeddings()
    if out is not None and out.weight is not model.get_input_embeddings().weight:
        fill_normal(out.weight, EMBED_STD)
    final_norm = getattr(getattr(model, "model", model), "norm", None)
    if final_norm is not None:
        final_norm.weight.fill_(1.0)


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


def default_attn_implementation() -> str:
    """flash_attention_2 on a GPU where flash-attn is installed (packed batches need varlen attention), else sdpa."""
    try:
        import flash_attn  # noqa: F401
        return "flash_attention_2" if torch.cuda.is_available() else "sdpa"
    except ImportError:
        return "sdpa"


def build_model(model_params: ModelParams, dtype: torch.dtype | None = None) -> PreTrainedModel:
    """The model for one run: init "pretrained" (hub/local weights, optional LoRA), "scratch" (config of
    `name_or_path` + overrides, random weights, depth-scaled init) or "checkpoint" (a training checkpoint dir, or a
    run output dir → its latest checkpoint-N). `dtype` overrides `model_params.dtype` (training on CPU uses fp32)."""
    dtype = dtype or getattr(torch, model_params.dtype)
    attn = model_params.attn_implementation or default_attn_implementation()
    if model_params.init == "scratch":
        cfg = load_config(model_params)
        cfg._attn_implementation = attn
        torch.manual_seed(model_params.init_seed)  # HF's own init (scheme "none") draws from the global RNG
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
        depth_scaled_init_(model, model_params.depth_scaled_init, seed=model_params.init_seed)
        model = model.to(dtype)
    else:
        source = (latest_checkpoint(model_params.checkpoint) if model_params.init == "checkpoint"
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


def build_tokenizer(model_params: ModelParams):
    """Tokenizer from `model.tokenizer`, else the checkpoint (init=checkpoint), else `name_or_path`."""
    source = model_params.tokenizer
    if source is None and model_params.init == "checkpoint":
        ckpt = latest_checkpoint(model_params.checkpoint)
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
