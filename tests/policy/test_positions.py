"""Position schemes: coupled ids, nope's identity rotation, greedy parity of the fast sampler per scheme, and the
scheme carried through the registry and `transformers` loading."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from verifarm.policy.losses import forward_with_aux
from verifarm.policy.model import build_drafter, build_model
from verifarm.policy.positions import (
    POSITION_SCHEMES,
    coupled_position_ids,
    forward_position_ids,
    is_digit,
    next_coupled_ids,
    position_scheme,
)
from verifarm.policy.registry import CheckpointRegistry
from verifarm.policy.sampling import LocalPolicy

PROMPTS = ["(units first) 543+876=?\n", "12+9=?\n", "(units first) 99999999+1=?\n", "7"]


def ids_of(tokenizer, text: str) -> torch.Tensor:
    return torch.tensor([tokenizer(text)["input_ids"]])


def test_coupled_ids_number_tokens_by_their_place_in_a_run_of_digits_or_of_other_tokens(tokenizer):
    text = "(units first) 543+876=?\nAnswer: 3201\n"
    ids = coupled_position_ids(ids_of(tokenizer, text))[0].tolist()
    by_char = list(zip(["<bos>", *text], ids))
    assert [i for c, i in by_char if c.isdigit()] == [1, 2, 3, 1, 2, 3, 1, 2, 3, 4]
    assert ids[:15] == list(range(1, 16))  # <bos>(units first)<space>
    answer = text.index("Answer: ") + 1  # +1: <bos>
    assert ids[answer - 3 : answer + 8] == list(range(1, 12))  # "=?\nAnswer: " is one run of 11
    # Left padding is its own run: the padded row's ids are the unpadded row's.
    row = ids_of(tokenizer, "12+9=?\n")
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), row], dim=1)
    mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), torch.ones_like(row)], dim=1)
    assert torch.equal(coupled_position_ids(padded, mask)[0, 3:], coupled_position_ids(row)[0])


def test_decoding_ids_follow_the_same_rule_as_whole_rows(tokenizer):
    row = ids_of(tokenizer, "ab12+3456=x7\n89")[0]
    whole = coupled_position_ids(row[None])[0]
    previous = whole[:1]
    for index in range(1, len(row)):
        previous = next_coupled_ids(row[index : index + 1], row[index - 1 : index], previous)
        assert int(previous) == int(whole[index])


def test_nope_rotation_is_the_identity_at_every_position(tokenizer):
    model = build_model("tiny", len(tokenizer), seed=0, position_scheme="nope").eval()
    rotary = model.model.rotary_emb
    x = torch.zeros(1, 4096, 16)
    cos, sin = rotary(x, torch.arange(4096)[None])
    assert torch.all(cos == 1) and torch.all(sin == 0)
    # No positional signal: the logits do not depend on the position ids at all.
    ids = ids_of(tokenizer, PROMPTS[0])
    with torch.no_grad():
        counted = model(input_ids=ids).logits
        moved = model(input_ids=ids, position_ids=torch.arange(ids.shape[1])[None] + 777).logits
    assert torch.equal(counted, moved)
    rope = build_model("tiny", len(tokenizer), seed=0).eval()
    with torch.no_grad():
        assert not torch.allclose(
            rope(input_ids=ids).logits, rope(input_ids=ids, position_ids=torch.arange(ids.shape[1])[None] + 777).logits
        )


def reference_greedy(model, tokenizer, prompt: str, max_new_tokens: int) -> list[int]:
    """The `transformers` model on its own: `generate` for counted positions; for coupled ones (which `generate`
    cannot number) a full forward per token with the coupled ids of the whole sequence."""
    ids = ids_of(tokenizer, prompt)
    if position_scheme(model.config) != "coupled":
        with torch.no_grad():
            out = model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        generated = out[0, ids.shape[1] :].tolist()
    else:
        generated = []
        for _ in range(max_new_tokens):
            with torch.no_grad():
                logits = model(input_ids=ids, position_ids=coupled_position_ids(ids)).logits
            token = int(logits[0, -1].argmax())
            generated.append(token)
            ids = torch.cat([ids, torch.tensor([[token]])], dim=1)
            if token == tokenizer.eos_token_id:
                break
    if tokenizer.eos_token_id in generated:
        generated = generated[: generated.index(tokenizer.eos_token_id) + 1]
    return generated


@pytest.mark.parametrize("scheme", POSITION_SCHEMES)
def test_fast_sampler_greedy_equals_the_transformers_model_per_scheme(tokenizer, scheme):
    model = build_model("tiny", len(tokenizer), seed=1, position_scheme=scheme).eval()
    digit_rows = torch.tensor([tokenizer.convert_tokens_to_ids(c) for c in "0123456789"])
    with torch.no_grad():  # favour digits so the rows hold runs of digits (coupled ids past 1)
        model.lm_head.weight[digit_rows] *= 4.0
    results = LocalPolicy(model, tokenizer, 0).sample(PROMPTS, n=2, temperature=0, max_new_tokens=20)
    runs = 0
    for prompt, samples in zip(PROMPTS, results):
        expected = reference_greedy(model, tokenizer, prompt, 20)
        for completion in samples:
            assert completion.token_ids == expected
        generated = torch.tensor([expected])
        digit_ids = coupled_position_ids(generated)[0][is_digit(generated)[0]]
        runs += int(digit_ids.max()) if len(digit_ids) else 0
    assert runs >= 4  # the comparison covered runs of several digits


@pytest.mark.parametrize("scheme", POSITION_SCHEMES)
def test_scheme_round_trips_through_the_registry_and_transformers(tmp_path, tokenizer, scheme):
    model = build_model("tiny", len(tokenizer), seed=2, position_scheme=scheme).eval()
    registry = CheckpointRegistry(tmp_path / "registry")
    version = registry.publish(model, tokenizer, {"source": "test"})
    loaded = registry.load(version)
    plain = AutoModelForCausalLM.from_pretrained(registry.path(version)).eval()
    ids = ids_of(tokenizer, PROMPTS[2])
    with torch.no_grad():
        expected = model(input_ids=ids, position_ids=forward_position_ids(model, ids)).logits
        for other in (loaded.model, plain):
            assert position_scheme(other.config) == scheme
            assert torch.allclose(other(input_ids=ids, position_ids=forward_position_ids(other, ids)).logits, expected)
    if scheme == "nope":
        assert torch.all(loaded.model.model.rotary_emb.inv_freq == 0)
    greedy = LocalPolicy(loaded.model, loaded.tokenizer, version).sample(PROMPTS[:1], temperature=0, max_new_tokens=8)
    assert greedy[0][0].token_ids == reference_greedy(model, tokenizer, PROMPTS[0], 8)


def test_training_and_evaluation_forwards_pass_the_coupled_ids(tokenizer):
    model = build_model("tiny", len(tokenizer), seed=0, position_scheme="coupled")
    ids = ids_of(tokenizer, "(units first) 543+876=?\n").repeat(4, 1)
    for training in (True, False):
        model.train(training)
        assert torch.equal(forward_position_ids(model, ids), coupled_position_ids(ids))
    assert forward_position_ids(build_model("tiny", len(tokenizer), position_scheme="rope"), ids) is None
    # The training loss forward takes them: a coupled model's logits differ from the same weights counting tokens.
    model.eval()
    with torch.no_grad():
        coupled_logits = forward_with_aux(model, ids[:1], torch.ones_like(ids[:1])).logits
        counted = model(input_ids=ids[:1]).logits
    assert not torch.allclose(coupled_logits, counted)


def test_bad_schemes_and_speculative_coupled_sampling_are_refused(tokenizer):
    with pytest.raises(ValueError, match="position scheme"):
        build_model("tiny", len(tokenizer), position_scheme="alibi")
    model = build_model("tiny", len(tokenizer), position_scheme="coupled").eval()
    with pytest.raises(ValueError, match="coupled"):
        LocalPolicy(model, tokenizer, 0, drafter=build_drafter(model))


def test_policy_init_publishes_the_chosen_scheme(tmp_path):
    from typer.testing import CliRunner

    from verifarm.policy_cli import app

    runner = CliRunner()
    root = tmp_path / "checkpoints"
    result = runner.invoke(app, ["init", "--root", str(root), "--random", "--position", "coupled"])
    assert result.exit_code == 0, result.output
    loaded = CheckpointRegistry(root).load()
    assert position_scheme(loaded.model.config) == "coupled" and loaded.metadata["position_scheme"] == "coupled"
    from verifarm.cli import app as root_app

    result = runner.invoke(
        root_app, ["policy", "init", "--root", str(tmp_path / "other"), "--random", "--position", "alibi"]
    )
    assert result.exit_code == 2 and "unknown position scheme" in result.output
    assert not (tmp_path / "other").exists() or not CheckpointRegistry(tmp_path / "other").published_versions()
