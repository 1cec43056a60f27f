"""Campaign specs: bad ones refused with a message naming the problem, and task i a pure function of (spec, i)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from verifarm.rollout.campaign import (
    CampaignSpec,
    load_spec,
    parse_spec,
    parse_spec_text,
    plan_task,
)

GOOD = {
    "name": "mix",
    "envs": [
        {"env_id": "verifarm/Addition-v0", "weight": 3, "min_difficulty": 1, "max_difficulty": 4},
        {"env_id": "verifarm/Arithmetic-v0", "weight": 1, "options": {"operations": ["*"]}, "max_difficulty": 2},
    ],
    "tasks": 400,
    "samples_per_task": 4,
    "sampling": {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 64, "stop": ["\n\n"]},
    "policy": "latest",
    "seed": 7,
    "priority": 8,
    "batch_size": 16,
}


def with_changes(**changes):
    spec = json.loads(json.dumps(GOOD))
    spec.update(changes)
    return spec


def test_good_spec_parses_from_yaml_and_json(tmp_path: Path) -> None:
    import yaml

    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(GOOD))
    (tmp_path / "spec.json").write_text(json.dumps(GOOD))
    from_yaml, from_json = load_spec(tmp_path / "spec.yaml"), load_spec(tmp_path / "spec.json")
    assert from_yaml == from_json
    assert from_yaml.num_batches == 25
    assert list(from_yaml.batch_range(24)) == list(range(384, 400))
    # Defaults of a missing max difficulty are filled in explicitly.
    assert from_yaml.envs[1].min_difficulty == 1 and from_yaml.envs[1].max_difficulty == 2


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"envs": [{"env_id": "verifarm/Nope-v9"}]}, "unknown env id"),
        ({"envs": []}, "envs"),
        ({"tasks": -1}, "tasks"),
        ({"tasks": 0}, "tasks"),
        ({"samples_per_task": 0}, "samples_per_task"),
        ({"samples_per_task": 100_000}, "samples_per_task"),
        ({"tasks": 10**12}, "tasks"),
        ({"sampling": {"max_new_tokens": 10**9}}, "max_new_tokens"),
        ({"sampling": {"temperature": -1}}, "temperature"),
        ({"sampling": {"top_p": 0}}, "top_p"),
        ({"sampling": {"stop": [""]}}, "stop"),
        ({"policy": "newest"}, "policy"),
        ({"policy": 0}, "policy"),
        ({"priority": 12}, "priority"),
        ({"batch_size": 0}, "batch_size"),
        ({"seed": -3}, "seed"),
        ({"reference_corruption": 0.5}, "reference_corruption"),
        ({"tasks_count": 3}, "tasks_count"),  # a typo of a field is refused, not ignored
        ({"envs": [{"env_id": "verifarm/Addition-v0", "min_difficulty": 0}]}, "difficulty range"),
        ({"envs": [{"env_id": "verifarm/Addition-v0", "min_difficulty": 5, "max_difficulty": 2}]}, "difficulty"),
        ({"envs": [{"env_id": "verifarm/Addition-v0", "max_difficulty": 99}]}, "difficulty range"),
        ({"envs": [{"env_id": "verifarm/Addition-v0", "weight": 0}]}, "weight"),
        ({"envs": [{"env_id": "verifarm/Addition-v0", "options": {"colour": "red"}}]}, "bad options"),
        ({"name": "has spaces"}, "name"),
        ({"endpoint": {"base_url": "ftp://x"}}, "base_url"),
        ({"endpoint": {"base_url": "http://gpu:8000"}, "policy": 3}, "endpoint"),
    ],
)
def test_bad_specs_refused_with_the_problem_named(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        parse_spec(with_changes(**changes))
    assert "invalid campaign spec" in str(caught.value) or "unknown" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "fmt", "message"),
    [
        ("envs: [unclosed", "yaml", "malformed"),
        ("{'tasks': 3", "json", "malformed"),
        ("- just\n- a list\n", "yaml", "mapping"),
        ("", "yaml", "mapping"),
    ],
)
def test_malformed_text_refused(text: str, fmt: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_spec_text(text, fmt)  # type: ignore[arg-type]


def test_missing_file_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        load_spec(tmp_path / "absent.yaml")


def test_task_plan_is_pure_and_follows_weights() -> None:
    spec = parse_spec(GOOD)
    plans = [plan_task(spec, i) for i in range(spec.tasks)]
    assert plans == [plan_task(parse_spec(GOOD), i) for i in range(spec.tasks)]  # same spec, same tasks
    counts = Counter(p.env_id for p in plans)
    assert 0.65 < counts["verifarm/Addition-v0"] / spec.tasks < 0.85  # weight 3 of 4
    for p in plans:
        bounds = (1, 4) if p.env_id == "verifarm/Addition-v0" else (1, 2)
        assert bounds[0] <= p.difficulty <= bounds[1]
    assert {p.difficulty for p in plans if p.env_id == "verifarm/Addition-v0"} == {1, 2, 3, 4}
    for p in plans:
        assert p.options == ({} if p.env_id == "verifarm/Addition-v0" else {"operations": ["*"]})
    other_seed = parse_spec(with_changes(seed=8))
    assert [plan_task(other_seed, i).seed for i in range(50)] != [p.seed for p in plans[:50]]
    # Neighbouring seeds do not produce shifted copies of each other's tasks.
    assert not {p.seed for p in plans[1:50]} & {plan_task(other_seed, i).seed for i in range(49)}
    with pytest.raises(ValueError, match="outside"):
        plan_task(spec, spec.tasks)


def test_spec_round_trips_through_json() -> None:
    spec = parse_spec(GOOD)
    assert CampaignSpec.model_validate(spec.model_dump(mode="json")) == spec
