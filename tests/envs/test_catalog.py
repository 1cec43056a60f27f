"""The env catalog's table: options an id fixes or does not take are refused in one line, and every code env runs
the limits declared for it (the language table's, the harness's, the C env's own)."""

from __future__ import annotations

import pytest

from verifarm.envs import c_program
from verifarm.envs.catalog import ENV_IDS, get_family
from verifarm.envs.translation import TranslationFamily
from verifarm.sandbox.harness import HARNESS_LIMITS
from verifarm.sandbox.languages import LANGUAGE_NAMES, get_language


@pytest.mark.parametrize(
    ("env_id", "options", "refused"),
    [
        ("verifarm/Addition-v0", {"operations": ("*",)}, "operations"),  # fixed by the id
        ("verifarm/Arithmetic-v0", {"verifier_version": "forged-1"}, "verifier_version"),  # not an option
        ("verifarm/CProgramMultiTurn-v0", {"multi_turn": False}, "multi_turn"),  # fixed by the id
        ("verifarm/Program-v0", {"colour": "red"}, "colour"),
    ],
)
def test_options_an_id_fixes_or_does_not_take_are_refused(env_id: str, options: dict, refused: str) -> None:
    with pytest.raises(ValueError, match=f"bad options for {env_id}: .*'{refused}'"):
        get_family(env_id, **options)


def test_an_unknown_id_is_one_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown env id 'verifarm/Nope-v0'; known: "):
        get_family("verifarm/Nope-v0")


def test_ids_fix_what_their_names_say() -> None:
    assert get_family("verifarm/Addition-v0").operations == ("+",)
    assert get_family("verifarm/Addition-v0").name == "addition"
    assert get_family("verifarm/CProgramMultiTurn-v0").max_turns == 3
    assert get_family("verifarm/ProgramMultiTurn-v0", language="go").name == "program_go_multi_turn"
    assert get_family("verifarm/CProgram-v0").max_turns == get_family("verifarm/Program-v0").max_turns == 1


def test_translations_start_only_from_program_envs() -> None:
    with pytest.raises(ValueError, match="verifarm/Arithmetic-v0 is not a program env"):
        TranslationFamily(source_env_id="verifarm/Arithmetic-v0")


@pytest.mark.parametrize("language", LANGUAGE_NAMES)
def test_program_envs_run_the_language_tables_limits(language: str) -> None:
    row = get_language(language)
    for env_id in ("verifarm/Program-v0", "verifarm/ProgramMultiTurn-v0"):
        family = get_family(env_id, language=language)
        assert (family.language.compile_limits, family.language.run_limits) == (row.compile_limits, row.run_limits)


def test_the_c_env_runs_its_own_declared_limits() -> None:
    for env_id in ("verifarm/CProgram-v0", "verifarm/CProgramMultiTurn-v0"):
        language = get_family(env_id).language
        assert (language.compile_limits, language.run_limits) == (c_program.COMPILE_LIMITS, c_program.RUN_LIMITS)


def test_python_envs_run_the_harness_limits() -> None:
    """The Python envs pass no limits of their own: a flood stops at the harness's output limit."""
    family = get_family("verifarm/PythonFunction-v0", backend="process")
    task = family.generate(0, 1)
    flood = (
        f"```python\nimport os\nos.write(1, b'x' * 200000)\ndef {task.data['entry_point']}(*args):\n    return 0\n```"
    )
    verdict = family.verify(task, flood)
    assert not verdict.passed and not verdict.infra_error
    assert verdict.details["sandbox_status"] == "output_limit"
    assert f"output passed {HARNESS_LIMITS.output_bytes} bytes" in verdict.reason
    assert ENV_IDS["verifarm/PythonFunction-v0"].languages == ENV_IDS["verifarm/HumanEval-v0"].languages == ("python",)
