"""A store filled by real rollouts of the reference policy, plus one hostile record, for the dashboard tests."""

from __future__ import annotations

import pytest

from verifarm.rollout.campaign import parse_spec
from verifarm.rollout.orchestration import roll_out_campaign
from verifarm.rollout.reference_policy import ReferencePolicy
from verifarm.rollout.store import RolloutRecord, RolloutStore, content_hash_for, group_id_for, record_id_for

ENVS = [
    {"env_id": "verifarm/Addition-v0", "min_difficulty": 1, "max_difficulty": 2},
    {"env_id": "verifarm/MathAnswer-v0"},
]

# Markup that would run script if it were rendered as HTML, terminal escapes, and far more text than a page holds.
HOSTILE_HEAD = (
    '<script>window.__pwned = 1; document.title = "pwned"</script>'
    '<img src=x onerror="window.__pwned = 2"><b>bold?</b>\x1b[31mred\x1b[0m\u202eevil'
)
HOSTILE_COMPLETION = HOSTILE_HEAD + "A" * (3 << 20) + "THE-END"


def hostile_record(campaign_id: str, task_index: int) -> RolloutRecord:
    prompt = "What is 1+1?\n"
    return RolloutRecord(
        record_id=record_id_for(campaign_id, task_index, 0),
        campaign_id=campaign_id,
        env_id="verifarm/Addition-v0",
        env_version="v0",
        task_index=task_index,
        task_seed=1,
        task_id="hostile",
        difficulty=1,
        group_id=group_id_for(campaign_id, task_index),
        group_size=1,
        sample_index=0,
        prompt=prompt,
        completion=HOSTILE_COMPLETION,
        reward=0.0,
        passed=False,
        reason="<i>no answer</i>",
        outcome="fail",
        policy_version=None,
        policy_name="reference",
        verifier_version="1",
        sandbox_backend=None,
        sample_seconds=0.0,
        verify_seconds=0.0,
        content_hash=content_hash_for("verifarm/Addition-v0", prompt, HOSTILE_COMPLETION),
        token_ids=[5, 6, 7],
        logprobs=[-0.5, -0.25, -1.0],
        details={"stderr_tail": "<script>x()</script>"},
    )


def fill(store: RolloutStore, campaign_id: str, tasks: int = 12, samples: int = 3, corruption: float = 0.4) -> None:
    spec = parse_spec(
        {
            "envs": ENVS,
            "tasks": tasks,
            "samples_per_task": samples,
            "policy": "reference",
            "reference_corruption": corruption,
            "batch_size": 4,
        }
    )
    roll_out_campaign(store, spec, ReferencePolicy(corruption, 0), campaign_id)


@pytest.fixture(scope="module")
def filled_store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Filled once per test module; tests that write add campaigns of their own."""
    url = f"sqlite:///{tmp_path_factory.mktemp('store') / 'rollouts.db'}"
    with RolloutStore(url) as store:
        fill(store, "alpha", tasks=12)
        fill(store, "beta", tasks=8, samples=2)
        store.add_records([hostile_record("beta", 1000)])
    return url
