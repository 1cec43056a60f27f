"""The Gymnasium face: registration, check_env, seeded resets, the verdict in info, multi-turn bookkeeping."""

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import verifarm.envs  # noqa: F401  (registers the ids)
from verifarm.envs.catalog import ENV_IDS, get_family


def test_every_catalog_id_is_registered() -> None:
    for env_id in ENV_IDS:
        assert env_id in gym.registry
        assert gym.registry[env_id].entry_point == "verifarm.envs.gym_env:TaskEnv"


@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
def test_every_registered_env_passes_check_env(env_id: str) -> None:
    env = gym.make(env_id)
    check_env(env.unwrapped)
    env.close()


MALFORMED = {
    "empty": "",
    "huge": "7" * 500_000,
    "binary": b"\x00\xff\xfe\x80 \x1b[2J garbage \xc3",
    "no answer marker": "I thought about it for a long time and I am confident.",
    "control characters": "\x00\x01\x02\x7f\u202e\ud800",
}


@pytest.mark.parametrize("env_id", sorted(ENV_IDS))
@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_completions_score_zero_with_a_reason_in_every_env(env_id: str, kind: str) -> None:
    env = gym.make(env_id)
    env.reset(seed=2)
    _, reward, _, _, info = env.step(MALFORMED[kind])
    assert reward == 0.0 and not info["passed"] and not info["infra_error"], info
    assert isinstance(info["reason"], str) and info["reason"]


def test_reset_with_seed_poses_the_family_task_and_step_reports_the_verdict() -> None:
    env = gym.make("verifarm/Addition-v0", difficulty=4)
    family = get_family("verifarm/Addition-v0")
    observation, info = env.reset(seed=11)
    task = family.generate(11, 4)
    assert observation == task.prompt and info["task_id"] == task.task_id and info["task_seed"] == 11
    _, reward, terminated, truncated, info = env.step(task.reference)
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert info["passed"] and info["reason"] == "correct" and info["reference"] == task.reference
    assert info["verifier_version"] == family.verifier_version
    with pytest.raises(RuntimeError):
        env.step("Answer: 1")


def test_unseeded_resets_follow_the_first_seed() -> None:
    first = gym.make("verifarm/Arithmetic-v0", difficulty=2)
    second = gym.make("verifarm/Arithmetic-v0", difficulty=2)
    first.reset(seed=5)
    second.reset(seed=5)
    for _ in range(5):
        assert first.reset()[0] == second.reset()[0]


def test_reset_options_override_difficulty_and_task_seed() -> None:
    env = gym.make("verifarm/Arithmetic-v0", difficulty=2)
    observation, info = env.reset(options={"difficulty": 6, "task_seed": 3})
    assert info["difficulty"] == 6 and observation == get_family("verifarm/Arithmetic-v0").generate(3, 6).prompt
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"level": 1})


def test_arithmetic_kwargs_reach_the_family() -> None:
    env = gym.make("verifarm/Arithmetic-v0", operations=("*",), difficulty=2)
    for seed in range(10):
        assert "*" in env.reset(seed=seed)[0]
    bare = gym.make("verifarm/Addition-v0").reset(seed=1)[0]
    instructed_env = gym.make("verifarm/Addition-v0", instruct=True)
    check_env(instructed_env.unwrapped)
    instructed = instructed_env.reset(seed=1)[0]
    assert instructed.endswith(bare) and "Answer: <integer>" in instructed


@pytest.mark.parametrize("kwargs", [{"difficulty": 0}, {"difficulty": 99}, {"operations": ("^",)}, {"colour": "red"}])
def test_bad_env_kwargs_raise_value_error(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        gym.make("verifarm/Arithmetic-v0", **kwargs)


def test_malformed_actions_give_zero_not_an_exception() -> None:
    env = gym.make("verifarm/Arithmetic-v0", difficulty=2)
    for action in ["", b"\x00\xff\xfe binary", "Answer", "\ud800", "9" * 1_000_000]:
        env.reset(seed=1)
        _, reward, terminated, _, info = env.step(action)
        assert reward == 0.0 and terminated and info["reason"]


def test_tasks_are_the_same_in_another_process_with_another_hash_seed() -> None:
    import json
    import os
    import subprocess
    import sys

    script = (
        "import json, sys\nfrom verifarm.envs.catalog import ENV_IDS, get_family\nout = {}\n"
        "for env_id in ENV_IDS:\n    family = get_family(env_id)\n"
        "    out[env_id] = [family.generate(seed, family.max_difficulty).prompt for seed in (0, 7, 123456)]\n"
        "json.dump(out, sys.stdout)\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    theirs = json.loads(result.stdout)
    for env_id in ENV_IDS:
        family = get_family(env_id)
        ours = [family.generate(seed, family.max_difficulty).prompt for seed in (0, 7, 123456)]
        assert theirs[env_id] == ours, env_id


def test_observations_stay_inside_the_observation_space() -> None:
    env = gym.make("verifarm/ReasoningGym-v0", dataset="word_sorting").unwrapped
    for seed in range(20):
        observation, _ = env.reset(seed=seed)
        assert env.observation_space.contains(observation)
    assert env._fit("emoji \U0001f600 and \x07 bell") == "emoji \ufffd and \ufffd bell"
    assert len(env._fit("x" * (env.observation_space.max_length + 10))) == env.observation_space.max_length
