"""The length-generalization experiment's presentations: every document is a true worked addition."""

import importlib.util
import random
import re
from pathlib import Path

import pytest

from verifarm.envs.arithmetic import extract_answer

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "length_generalization.py"
spec = importlib.util.spec_from_file_location("length_generalization", SCRIPT)
experiment = importlib.util.module_from_spec(spec)
spec.loader.exec_module(experiment)

LINE = re.compile(r"^([a-z]?)(\d)\+([A-Z]?)(\d)\+([01])=(\d\d) +(\d+)$")


def _digits_by_place(number: str, tagged: bool, reversed_operands: bool) -> dict:
    """Place key -> digit of one operand as written in a prompt."""
    number = number.replace(" ", "")
    if tagged:
        return {number[i].lower(): int(number[i + 1]) for i in range(0, len(number), 2)}
    units_first = number if reversed_operands else number[::-1]
    return {i: int(d) for i, d in enumerate(units_first)}


@pytest.mark.parametrize(
    "tagged, spaces, reversed_operands, shuffled, fixed_width",
    [
        (False, False, False, False, False),
        (True, False, False, False, False),
        (True, True, False, False, False),
        (True, False, True, False, False),
        (False, False, True, False, False),
        (True, False, False, True, False),
        (True, False, False, False, True),
        (True, False, False, True, True),
        (False, False, False, False, True),
    ],
)
def test_documents_are_true_worked_additions(tagged, spaces, reversed_operands, shuffled, fixed_width):
    presentation = experiment.Presentation(tagged, spaces, reversed_operands, shuffled, fixed_width)
    rng = random.Random(0)
    for _ in range(200):
        a, b = experiment.operand(rng, rng.randint(1, 6)), experiment.operand(rng, rng.randint(1, 6))
        prompt, completion = presentation.document(a, b, rng)
        first, second = prompt.removesuffix("=?\n").split("+")
        places_a = _digits_by_place(first, tagged, reversed_operands)
        places_b = _digits_by_place(second, tagged, reversed_operands)
        lines = completion.rstrip("\n").split("\n")
        assert extract_answer(lines[-1]) == str(a + b)
        if fixed_width:  # one width for every line, and the digits so far in the answer's columns
            assert len({len(line) for line in lines}) == 1
            assert all(str(a + b).endswith(line.split()[-1]) for line in lines[:-1])
        else:
            assert lines[-1] == f"Answer: {a + b}"
        carry = 0
        for column, line in enumerate(lines[:-1]):
            low, x, up, y, carry_in, total, _ = LINE.match(line).groups()
            key = low if tagged else column
            assert (low.upper() == up) and bool(low) == tagged
            assert int(x) == places_a.get(key, 0) and int(y) == places_b.get(key, 0)
            assert int(carry_in) == carry and int(x) + int(y) + carry == int(total)
            carry = int(total) // 10


def test_training_texts_hold_only_gold_digits_and_spaces_need_tags():
    presentation = experiment.Presentation(True, True, False)
    for text in experiment.training_texts(presentation, 300, mixed_lengths=True, pack=True, seed=1):
        for document in text.split(experiment.EOS_TOKEN):
            columns = document.rstrip("\n").split("\n")[1:-1]  # between the prompt and the Answer line
            assert 1 <= len(columns) <= experiment.GOLD_DIGITS
    with pytest.raises(ValueError, match="need --tagged"):
        experiment.Presentation(False, True, False)
    with pytest.raises(ValueError, match="need --tagged"):
        experiment.Presentation(False, False, False, shuffled=True)
