"""The sampling benchmark's speculative ceiling runs on both prompt layouts and reports timed parts."""

import argparse
import importlib.util
import re
import sys
from pathlib import Path

import pytest

from verifarm.policy.model import build_drafter, build_model
from verifarm.policy.tokenizer import build_tokenizer

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "sampling_throughput.py"
spec = importlib.util.spec_from_file_location("sampling_throughput", SCRIPT)
benchmark = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = benchmark  # its dataclasses look their module up
spec.loader.exec_module(benchmark)


@pytest.mark.parametrize("workload", ["arithmetic", "mixed"], ids=["prompts-in-rows", "cascade"])
def test_the_ceiling_times_a_verifying_forward_that_grows_with_its_positions(workload, capsys):
    tokenizer = build_tokenizer()
    model = build_model("tiny", len(tokenizer), seed=0).eval()
    drafter = build_drafter(model)
    prompts = benchmark.workload_prompts(2, 0, workload)
    args = argparse.Namespace(n=2, temperature=0.5, max_new_tokens=12, draft_tokens=8)
    benchmark.speculative_ceiling(model, tokenizer, drafter, prompts, args)
    out = capsys.readouterr().out
    assert out.startswith("4 rows, 32 tokens in:")
    one, nine = map(float, re.search(r"of 1 / 9 positions ([\d.]+) / ([\d.]+) ms", out).groups())
    assert 0 < one < nine  # eight more positions through every layer cost more than one
    ceiling = float(re.search(r"ceiling x exact at this batch: ([\d.]+)$", out.strip()).group(1))
    assert 0 < ceiling < 100
