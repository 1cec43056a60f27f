"""The stored behaviour log-probs reach the policy-gradient loss: read with the batch, aligned, applied."""

import torch

from verifarm.policy.losses import grpo_loss, sequence_logprobs
from verifarm.policy.model import build_model
from verifarm.policy.tokenizer import build_tokenizer
from verifarm.policy.training import align_behaviour_logprobs, encode_batch
from verifarm.rollout.store import RolloutRecord, RolloutStore, content_hash_for, group_id_for, record_id_for
from verifarm.trainer.post_data import PostSelection, read_post_batch
from verifarm.trainer.schedule import DataCursor

ENV = "verifarm/Addition-v0"


def test_grpo_batch_carries_and_applies_the_samplers_logprobs(tmp_path):
    tokenizer = build_tokenizer()
    completions = ["Answer: 3\n", "Answer: 4\n"]
    store = RolloutStore(f"sqlite:///{tmp_path / 's.db'}")
    records = []
    for i, completion in enumerate(completions):
        ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        records.append(
            RolloutRecord(
                record_id=record_id_for("c", 0, i),
                campaign_id="c",
                env_id=ENV,
                env_version="1",
                task_index=0,
                task_seed=0,
                task_id="t0",
                difficulty=1,
                group_id=group_id_for("c", 0),
                group_size=2,
                sample_index=i,
                prompt="1+2=?\n",
                completion=completion,
                reward=float(i == 0),
                passed=i == 0,
                reason="r",
                outcome="pass" if i == 0 else "fail",
                policy_version=1,
                policy_name="checkpoint",
                verifier_version="1",
                sandbox_backend=None,
                sample_seconds=0.0,
                verify_seconds=0.0,
                content_hash=content_hash_for(ENV, "1+2=?\n", completion),
                token_ids=ids,
                logprobs=[-12.0] * len(ids),
                drafted=False,
            )
        )
    store.add_records(records)
    selection = PostSelection(env_ids=(ENV,), campaign_id=None, staleness_bound=1)
    batch, _ = read_post_batch(store, DataCursor(), "grpo", 8, 1, selection)
    assert batch.logprobs == [[-12.0] * len(r.token_ids) for r in records]

    encoded = encode_batch(tokenizer, batch.prompts, batch.completions)
    behaviour = align_behaviour_logprobs(encoded, batch.token_ids, batch.logprobs)
    assert (behaviour[encoded.completion_mask.bool()] == -12.0).all()  # every completion token, eos included
    model = build_model("tiny", len(tokenizer))
    old = sequence_logprobs(model, encoded.input_ids, encoded.attention_mask)
    _, metrics = grpo_loss(
        model,
        encoded.input_ids,
        encoded.attention_mask,
        encoded.completion_mask,
        old,
        torch.tensor(batch.rewards),
        torch.tensor(batch.group_ids),
        behaviour_logprobs=behaviour,
        tis_cap=2.0,
    )
    # A random policy gives its tokens far more than e^-12: every weight is truncated at the cap.
    assert metrics["tis_weight_mean"] == 2.0 and metrics["tis_truncated_fraction"] == 1.0
