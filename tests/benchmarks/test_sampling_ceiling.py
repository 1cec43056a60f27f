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
def test_the_ceiling_is_the_exact_step_against_a_round_of_its_timed_parts(workload, capsys):
    tokenizer = build_tokenizer()
    model = build_model("tiny", len(tokenizer), seed=0).eval()
    drafter = build_drafter(model)
    prompts = benchmark.workload_prompts(2, 0, workload)
    args = argparse.Namespace(n=2, temperature=0.5, max_new_tokens=12, draft_tokens=8)
    benchmark.speculative_ceiling(model, tokenizer, drafter, prompts, args)
    out = capsys.readouterr().out
    assert out.startswith("4 rows, 32 tokens in:")
    number = r"([\d.]+)"
    step, one, nine = (
        float(x)
        for x in re.search(rf"exact sampler {number} ms a step.*of 1 / 9 positions {number} / {number}", out).groups()
    )
    call, draw = (float(x) for x in re.search(rf"drafter call {number} ms \+ draw {number} ms", out).groups())
    round_ms = float(re.search(rf"k=8, every draft kept: {number} ms for 9 tokens", out).group(1))
    ceiling = float(re.search(rf"ceiling x exact at this batch: {number}$", out.strip()).group(1))
    assert min(step, one, nine, call, draw) > 0
    # A round is one verifying forward over 9 positions and 8 drafter calls with their draws (printed rounded).
    assert round_ms == pytest.approx(nine + 8 * (call + draw), abs=0.01)
    assert ceiling == pytest.approx(9 * step / round_ms, rel=0.01, abs=0.01)
