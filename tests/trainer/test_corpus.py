"""The corpus is deterministic, split without overlap, and made of real worked solutions and real source."""

import pytest

from verifarm.envs.base import Task
from verifarm.envs.catalog import get_family
from verifarm.trainer.corpus import CorpusConfig, build_corpus


def test_corpus_is_deterministic_and_split_disjoint():
    config = CorpusConfig(seed=3, arithmetic_documents=600, stdlib_documents=40, heldout_fraction=0.1)
    first, second = build_corpus(config), build_corpus(config)
    assert first.train == second.train and first.heldout == second.heldout
    assert first.fingerprint() == second.fingerprint()
    assert not set(first.train) & set(first.heldout)
    assert 0.03 < len(first.heldout) / (len(first.train) + len(first.heldout)) < 0.2
    assert any("def " in text or "import " in text for text in first.train + first.heldout)
    other = build_corpus(CorpusConfig(seed=4, arithmetic_documents=600, stdlib_documents=40, heldout_fraction=0.1))
    assert other.fingerprint() != first.fingerprint()


def test_arithmetic_documents_are_verified_worked_solutions_within_the_digit_range():
    corpus = build_corpus(CorpusConfig(arithmetic_min_digits=2, arithmetic_max_digits=4, arithmetic_documents=300))
    family = get_family("verifarm/Addition-v0")
    for text in corpus.train[:50]:
        prompt, _, completion = text.partition("\n")
        a, b = prompt.removesuffix("=?").split("+")
        assert 2 <= len(a) <= 4 and len(a) == len(b)
        task = Task("t", prompt + "\n", "", len(a), {"answer": int(a) + int(b)})
        assert family.verify(task, completion).passed


def test_python_documents_are_the_envs_tasks_with_their_reference_solutions():
    from verifarm.trainer.corpus import PYTHON_ENV, python_task_documents

    family = get_family(PYTHON_ENV)
    documents = python_task_documents(4, seed=1)
    assert len(set(documents)) == 4
    for index, text in enumerate(documents):
        difficulty = family.min_difficulty + index % (family.max_difficulty - family.min_difficulty + 1)
        task = family.generate(seed=1 * 1_000_003 + index, difficulty=difficulty)
        assert text == task.prompt + task.reference and "def " in text


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(arithmetic_max_digits=0),
        dict(arithmetic_documents=0),
        dict(heldout_fraction=1.0),
        dict(arithmetic_min_digits=5, arithmetic_max_digits=4),
    ],
)
def test_bad_corpus_config_is_refused(kwargs):
    with pytest.raises(ValueError):
        CorpusConfig(**kwargs)


def test_digits_beyond_the_env_range_are_refused():
    with pytest.raises(ValueError, match="supports"):
        build_corpus(CorpusConfig(arithmetic_max_digits=99))
