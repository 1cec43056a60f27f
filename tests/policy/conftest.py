"""Fixtures shared by the policy tests."""

import pytest
import torch

from verifarm.policy.tokenizer import build_tokenizer


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Tiny models run fastest on one thread; extra threads only contend on a shared 2-core runner."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()
