"""posttrain.models: tiny configs, depth-scaled init statistics, build_model for every init, packed attention.

Run: .venv/bin/python -m pytest tests/test_models.py -x -q   (CPU, tiny models, ~15 s)
"""
import math

import pytest
import torch
from pydantic import ValidationError

from posttrain.models import (build_model, build_tokenizer, depth_scale_bound, depth_scaled_init_,
                              select_attn_implementation, tiny_qwen2_config, train_chatml_tokenizer)
from posttrain.params import REPO_ROOT, ModelParams, RunParams, TrainingParams, load_run_params
from posttrain.runs import start_checkpoint, write_done
from transformers import AutoModelForCausalLM


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("base")
    tok = train_chatml_tokenizer(["the quick brown fox 0123456789 + = \\boxed{}"] * 20, vocab_size=300)
    tok.save_pretrained(d)
    tiny_qwen2_config(len(tok), hidden_size=64, heads=2, kv_heads=1, intermediate=128, layers=2).save_pretrained(d)
    return d


def test_tiny_config_rejects_small_head_dim():
    with pytest.raises(ValueError, match="head_dim"):
        tiny_qwen2_config(100, hidden_size=64, heads=4)
    with pytest.raises(ValueError, match="divisible"):
        tiny_qwen2_config(100, hidden_size=96, heads=3, kv_heads=2)
    assert tiny_qwen2_config(100).hidden_size // tiny_qwen2_config(100).num_attention_heads == 32


@pytest.mark.parametrize("scheme,exponent", [("paper", 0.5), ("authors_code", 0.25)])
def test_depth_scaled_init_follows_formula(scheme, exponent):
    cfg = tiny_qwen2_config(256, hidden_size=256, heads=4, kv_heads=2, intermediate=512, layers=8)
    model = AutoModelForCausalLM.from_config(cfg)
    depth_scaled_init_(model, scheme, seed=0)
    stds = {}
    for depth, layer in enumerate(model.model.layers, start=1):
        for name in ("self_attn.q_proj", "self_attn.o_proj", "mlp.down_proj"):
            w = layer.get_submodule(name).weight
            bound = depth_scale_bound(w.shape[1], w.shape[0], depth, scheme)
            # U(-b, b) has std b/sqrt(3); >= 16k samples per matrix keep the empirical std within ~1%.
            assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.03), (scheme, depth, name)
            assert w.abs().max().item() <= bound
            stds[depth, name] = w.std().item()
        assert torch.all(layer.self_attn.q_proj.bias == 0)
        assert torch.all(layer.input_layernorm.weight == 1)
    for l1, l2 in [(1, 4), (2, 8)]:
        ratio = stds[l2, "mlp.down_proj"] / stds[l1, "mlp.down_proj"]
        assert ratio == pytest.approx((l1 / l2) ** exponent, rel=0.05)
    assert model.model.embed_tokens.weight.std().item() == pytest.approx(0.02, rel=0.05)


def test_depth_scaled_init_is_seeded_and_none_keeps_hf_init():
    cfg = tiny_qwen2_config(128, hidden_size=64, heads=2, kv_heads=1, intermediate=128, layers=2)
    a, b, c = (AutoModelForCausalLM.from_config(cfg) for _ in range(3))
    depth_scaled_init_(a, "paper", seed=1)
    depth_scaled_init_(b, "paper", seed=1)
    before = c.model.layers[1].mlp.down_proj.weight.clone()
    depth_scaled_init_(c, "none", seed=1)
    assert torch.equal(a.model.layers[1].mlp.down_proj.weight, b.model.layers[1].mlp.down_proj.weight)
    assert torch.equal(c.model.layers[1].mlp.down_proj.weight, before)
    with pytest.raises(ValueError, match="unknown scheme"):
        depth_scale_bound(10, 10, 1, "xavier")


def test_build_model_scratch_pretrained_checkpoint(base_dir, tmp_path):
    scratch = build_model(ModelParams(name_or_path=str(base_dir), init="scratch", init_seed=3), dtype=torch.float32)
    bound = depth_scale_bound(64, 64, 2, "paper")
    assert scratch.model.layers[1].self_attn.o_proj.weight.abs().max().item() <= bound
    again = build_model(ModelParams(name_or_path=str(base_dir), init="scratch", init_seed=3), dtype=torch.float32)
    assert torch.equal(scratch.model.layers[0].mlp.up_proj.weight, again.model.layers[0].mlp.up_proj.weight)

    run = tmp_path / "run"
    for step in (5, 10):
        scratch.save_pretrained(run / f"checkpoint-{step}")
        (run / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    from_run = ModelParams(name_or_path=str(base_dir), init="checkpoint", checkpoint=str(run))
    with pytest.raises(FileNotFoundError, match="has not finished .* checkpoint-10"):  # no done marker yet
        build_model(from_run, dtype=torch.float32)
    # The done marker names the final checkpoint by the path it was written with; a moved run still finds it.
    write_done(run, {"name": "pre", "params_hash": "h", "global_step": 10,
                     "final_checkpoint": "/elsewhere/run/checkpoint-10"})
    (run / "checkpoint-20").mkdir()  # a later, incomplete dir: not what the run finished with
    assert start_checkpoint(run) == (run / "checkpoint-10", {"init_checkpoint": str(run / "checkpoint-10"),
                                                              "init_step": 10, "init_run": "pre", "init_params_hash": "h"})
    loaded = build_model(from_run, dtype=torch.float32)
    assert torch.equal(loaded.model.layers[0].mlp.up_proj.weight, scratch.model.layers[0].mlp.up_proj.weight)
    assert start_checkpoint(run / "checkpoint-5")[0] == run / "checkpoint-5"  # one checkpoint named on purpose
    with pytest.raises(FileNotFoundError, match="neither a finished training run"):
        start_checkpoint(run / "checkpoint-20")

    pre = build_model(ModelParams(name_or_path=str(run / "checkpoint-5"), init="pretrained",
                                  config_overrides={"rope_theta": 500000.0}, lora={"r": 4}), dtype=torch.float32)
    assert pre.config.rope_parameters["rope_theta"] == 500000.0
    trainable = [n for n, p in pre.named_parameters() if p.requires_grad]
    assert trainable and all("lora" in n for n in trainable)
    with pytest.raises(ValueError, match="config_overrides.not_a_field"):
        build_model(ModelParams(name_or_path=str(base_dir), init="scratch", config_overrides={"not_a_field": 1}))
    assert len(build_tokenizer(ModelParams(name_or_path=str(base_dir), init="scratch"))) == scratch.config.vocab_size


@pytest.mark.parametrize("init", ["scratch", "checkpoint"])
def test_lora_refused_for_non_pretrained_arms(init):
    extra = {"checkpoint": "runs/x"} if init == "checkpoint" else {}
    with pytest.raises(ValidationError, match="LoRA"):
        ModelParams(name_or_path="Qwen/Qwen2.5-1.5B", init=init, lora={"r": 8}, **extra)


def test_params_error_names_the_field():
    bad = {"name": "x", "arm": "0%-Pre", "size": "1.5B", "domain": "math", "output_dir": "o",
           "model": {"name_or_path": "m", "init": "scratch", "depth_scaled_init": "xavier"},
           "data": {"source": "messages_jsonl"}, "training": {"stage": "sft"}}
    with pytest.raises(ValidationError) as err:
        RunParams.model_validate(bad)
    assert err.value.error_count() == 1 and err.value.errors()[0]["loc"] == ("model", "depth_scaled_init")


def test_packed_logits_equal_per_sequence_logits():
    """Padding-free packing (position_ids restart at 0 per sequence) must not attend across sequences."""
    torch.manual_seed(0)
    cfg = tiny_qwen2_config(200, hidden_size=64, heads=2, kv_heads=1, intermediate=128, layers=2)
    cfg._attn_implementation = "sdpa"
    model = AutoModelForCausalLM.from_config(cfg).eval()
    seqs = [torch.randint(0, 200, (n,)) for n in (7, 12, 5)]
    with torch.no_grad():
        separate = torch.cat([model(input_ids=s[None], use_cache=False).logits[0] for s in seqs])
        packed = model(input_ids=torch.cat(seqs)[None], use_cache=False,
                       position_ids=torch.cat([torch.arange(len(s)) for s in seqs])[None]).logits[0]
        unpacked = model(input_ids=torch.cat(seqs)[None], use_cache=False).logits[0]
    assert torch.allclose(packed, separate, atol=1e-5)
    assert not torch.allclose(unpacked[7:], separate[7:], atol=1e-3)  # the check can fail: cross-attention differs


# ---------------------------------------------------------------------------------------------- attention


PACKED_32K = TrainingParams(stage="sft", max_length=32768)
FLASH_ONLY = {"flash_attention_2"}


def test_attention_on_cpu_is_sdpa_unless_set():
    model = ModelParams(name_or_path="m", init="scratch")
    assert select_attn_implementation(model, PACKED_32K, gpu=False, installed=set()) == "sdpa"
    assert select_attn_implementation(model.model_copy(update={"attn_implementation": "eager"}), PACKED_32K,
                                      gpu=False, installed=set()) == "eager"


def test_paper_params_refuse_a_gpu_without_a_document_masked_kernel():
    """Every paper run packs 32k rows: on a GPU without flash-attn or `kernels` it must refuse, saying what to
    install, instead of training with a dense 32k x 32k mask per row."""
    for name in ("sft_math_1.5b_0pre", "sft_code_14b_0.1pre", "pretrain_7b_short"):
        run = load_run_params(REPO_ROOT / "params" / "paper" / f"{name}.yaml", run_dir="/r")
        with pytest.raises(ValueError, match="document-masked .*pip install kernels.*flash-attn"):
            select_attn_implementation(run.model, run.training, gpu=True, installed=set())
        assert select_attn_implementation(run.model, run.training, gpu=True, installed=FLASH_ONLY) == "flash_attention_2"


@pytest.mark.parametrize("attn, training, installed, message", [
    ("sdpa", {}, FLASH_ONLY, "dense 32768² mask"),                                # a dense mask asked for by name
    ("flash_attention_2", {"batching": "per_row"}, FLASH_ONLY, "flattened row"),  # rows would attend to each other
    ("flash_attention_3", {}, FLASH_ONLY, "not installed.*pip install"),
])
def test_attention_refusals_on_gpu(attn, training, installed, message):
    model = ModelParams(name_or_path="m", init="scratch", attn_implementation=attn)
    with pytest.raises(ValueError, match=message):
        select_attn_implementation(model, PACKED_32K.model_copy(update=training), gpu=True, installed=installed)


def test_attention_allowed_on_gpu():
    model = ModelParams(name_or_path="m", init="scratch")
    short = TrainingParams(stage="sft", max_length=2048)
    explicit = lambda attn: model.model_copy(update={"attn_implementation": attn})  # noqa: E731
    assert select_attn_implementation(explicit("sdpa"), short, gpu=True, installed=set()) == "sdpa"  # short rows
    assert select_attn_implementation(explicit("flex_attention"), PACKED_32K.model_copy(update={"batching": "per_row"}),
                                      gpu=True, installed=set()) == "flex_attention"
    unpacked = PACKED_32K.model_copy(update={"packing": False})
    assert select_attn_implementation(model, unpacked, gpu=True, installed=set()) == "sdpa"
