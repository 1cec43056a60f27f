"""The MoE policy model and tokenizer: presets, Hugging Face round trip, auxiliary losses, load report."""

import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from verifarm.policy.model import (
    PRESETS,
    build_model,
    count_parameters,
    expert_load_report,
    model_config,
    moe_aux_losses,
    router_z_loss,
)


def test_tokenizer_is_byte_level_and_round_trips(tokenizer):
    text = "345+678=?\n5+8+0=13 c1\ndef f(x):\n\treturn 'é'\n"
    ids = tokenizer(text)["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert len(ids) == 1 + len(text.encode("utf-8"))
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert {tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id} == {0, 1, 2}
    assert len(tokenizer) == 259


def test_presets_are_mixtral_moe_with_8_experts_top2(tokenizer):
    for name in PRESETS:
        config = model_config(name, len(tokenizer))
        assert config.model_type == "mixtral"
        assert (config.num_local_experts, config.num_experts_per_tok) == (8, 2)
        assert config.router_aux_loss_coef == 0.01 and config.router_z_loss_coef == 0.001
    tiny = count_parameters(build_model("tiny", len(tokenizer)))
    assert 200_000 < tiny["total"] < 2_000_000
    assert tiny["active"] < tiny["total"]


def test_unknown_preset_and_bad_vocab_raise_value_error():
    with pytest.raises(ValueError, match="unknown model preset"):
        build_model("huge", 259)
    with pytest.raises(ValueError, match="vocab_size"):
        build_model("tiny", 2)


def test_build_model_is_seeded_and_leaves_global_rng_alone(tokenizer):
    state = torch.random.get_rng_state()
    a, b = build_model("tiny", len(tokenizer), seed=3), build_model("tiny", len(tokenizer), seed=3)
    c = build_model("tiny", len(tokenizer), seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(a.lm_head.weight, b.lm_head.weight)
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)


def test_round_trip_through_auto_classes(tmp_path, tokenizer):
    model = build_model("tiny", len(tokenizer), seed=1).eval()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").exists() and (tmp_path / "model.safetensors").exists()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    loaded_tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    assert type(loaded).__name__ == "MixtralForCausalLM"
    assert loaded.config.router_z_loss_coef == 0.001
    batch = loaded_tokenizer(["12+34=?\n", "999+1=?\n"], return_tensors="pt", padding=True)
    assert batch["input_ids"].tolist() == tokenizer(["12+34=?\n", "999+1=?\n"], padding=True)["input_ids"]
    with torch.no_grad():
        expected = model(**batch).logits
        actual = loaded(**batch).logits
    torch.testing.assert_close(actual, expected)


def test_aux_losses_are_reported_and_differentiable(tokenizer):
    model = build_model("tiny", len(tokenizer))
    batch = tokenizer(["1+2=?\n", "345+678=?\n"], return_tensors="pt", padding=True)
    outputs = model(**batch, output_router_logits=True)
    total, metrics = moe_aux_losses(model, outputs.router_logits, batch["attention_mask"])
    assert set(metrics) == {"moe_balance_loss", "moe_z_loss", "moe_aux_total"}
    assert metrics["moe_balance_loss"] >= 1.0 - 1e-4  # 1.0 is the perfectly balanced minimum
    assert math.isclose(
        metrics["moe_aux_total"], 0.01 * metrics["moe_balance_loss"] + 0.001 * metrics["moe_z_loss"], rel_tol=1e-5
    )
    total.backward()
    assert model.model.layers[0].mlp.gate.weight.grad.abs().sum() > 0


def test_router_z_loss_matches_definition_and_ignores_padding():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0], [50.0, 50.0]])
    mask = torch.tensor([[1, 1, 0]])
    expected = (math.log(2.0) ** 2 + math.log(4.0) ** 2) / 2
    assert math.isclose(float(router_z_loss((logits,), mask)), expected, rel_tol=1e-5)
    with pytest.raises(ValueError, match="output_router_logits"):
        router_z_loss(())


def test_expert_load_report_counts_every_real_token(tokenizer):
    model = build_model("tiny", len(tokenizer))
    batch = tokenizer(["1+2=?\n", "345+678=?\n"], return_tensors="pt", padding=True)
    report = expert_load_report(model, batch["input_ids"], batch["attention_mask"])
    assert report.tokens == int(batch["attention_mask"].sum())
    assert len(report.load) == model.config.num_hidden_layers
    for layer in report.load:
        assert len(layer) == 8 and math.isclose(sum(layer), 1.0, rel_tol=1e-5)
    assert 0.0 <= report.dropped_share < 1.0 and report.max_over_mean >= 1.0
    # A router forced onto two experts must drop most assignments at capacity factor 1.
    with torch.no_grad():
        for layer in model.model.layers:
            layer.mlp.gate.weight.zero_()
            layer.mlp.gate.weight[:2] = 1.0
    skewed = expert_load_report(model, batch["input_ids"], batch["attention_mask"], capacity_factor=1.0)
    assert skewed.max_over_mean > 3.0 and skewed.dropped_share > 0.5
    with pytest.raises(ValueError, match="capacity_factor"):
        expert_load_report(model, batch["input_ids"], capacity_factor=0)
