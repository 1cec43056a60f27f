"""Does a worked-addition format let the tiny policy extrapolate one digit past its gold data?

The easy-to-hard loop (benchmarks/self_improvement.py --part easy-to-hard) can only extend the digits if some
samples one digit past the pre-training data pass. This trains the tiny preset on 1-4 digit additions written in
one of several presentations and prints greedy pass@1 and pass@16 at 4, 5 and 6 digits. Last line: pass@16 at 5
digits / pass@16 at 4 (0 means the loop has nothing to start from).

Presentations (flags combine):
  plain            the arithmetic env's own format: ``345+678=?`` then ``5+8+0=13 3`` ... ``Answer: 1023``
  --tagged         every prompt digit after a letter naming its place (``c3b4a5+C6B7A8=?``; index hints, Zhou et
                   al. 2023), each line naming the places it reads (``a5+A8+0=13 3``); the units letter is drawn
                   per task so short tasks still use every letter
  --mixed-lengths  the two operands of a training task get 1-4 digits each, independently
  --pack           half the training sequences hold two documents, so a document starts at varying positions
  --spaces         0-3 random spaces before each tagged digit (no digit sits at a fixed offset; needs --tagged)
  --reversed       operands written units first (``a5b4c3+A8B7C6=?``, as in Lee et al. 2025), so each column
                   line reads the places in prompt order
  --shuffled       each operand's tagged digits in a random order (``b4a5c3+A8C6B7=?``): only the letters say
                   which digit is where (needs --tagged)
  --fixed-width    every line of the same width: the digits so far right-aligned in a 12-wide field and the
                   answer in the same columns (``a5+A8+0=13            3`` ... ``Answer:            1023``),
                   so a line finds what it needs in the line above at a fixed offset

    python benchmarks/length_generalization.py                       # plain
    python benchmarks/length_generalization.py --tagged --mixed-lengths --spaces
"""

from __future__ import annotations

import argparse
import random
import string
import time

import torch

from verifarm.envs.arithmetic import extract_answer, worked_solution
from verifarm.policy.model import build_model
from verifarm.policy.sampling import LocalPolicy
from verifarm.policy.tokenizer import EOS_TOKEN, build_tokenizer
from verifarm.policy.training import TrainConfig, pretrain

GOLD_DIGITS = 4
PLACES = 26
FIELD_WIDTH = 12  # --fixed-width: room for sums of up to 12 digits


class Presentation:
    def __init__(
        self, tagged: bool, spaces: bool, reversed_operands: bool, shuffled: bool = False, fixed_width: bool = False
    ) -> None:
        if (spaces or shuffled) and not tagged:
            raise ValueError("--spaces and --shuffled need --tagged: without place letters they hide the columns")
        self.tagged, self.spaces, self.reversed_operands = tagged, spaces, reversed_operands
        self.shuffled, self.fixed_width = shuffled, fixed_width

    def _number(self, digits_units_first: str, letters: str, start: int, rng: random.Random) -> str:
        order = list(range(len(digits_units_first)))
        order = order if self.reversed_operands else order[::-1]
        if self.shuffled:
            rng.shuffle(order)
        if not self.tagged:
            return "".join(digits_units_first[i] for i in order)
        return "".join(
            (" " * rng.choice([0, 0, 1, 2, 3]) if self.spaces else "") + letters[start + i] + digits_units_first[i]
            for i in order
        )

    def document(self, a: int, b: int, rng: random.Random) -> tuple[str, str]:
        """(prompt, worked completion) for a + b: the env's own worked solution, its column lines tagged."""
        da, db = str(a)[::-1], str(b)[::-1]
        start = rng.randrange(PLACES - max(len(da), len(db)) + 1)
        low, up = string.ascii_lowercase, string.ascii_uppercase
        prompt = f"{self._number(da, low, start, rng)}+{self._number(db, up, start, rng)}=?\n"
        *columns, answer = worked_solution(a, b, "+").rstrip("\n").split("\n")
        if self.tagged:  # "5+8+0=13 3" reads places a and A: "a5+A8+0=13 3"
            columns = [f"{low[start + i]}{line[:2]}{up[start + i]}{line[2:]}" for i, line in enumerate(columns)]
        if self.fixed_width:  # "a5+A8+0=13 3" -> "a5+A8+0=13" + the digits right-aligned in the field
            columns = [f"{head} {digits:>{FIELD_WIDTH}}" for head, digits in (c.rsplit(" ", 1) for c in columns)]
            marker, result = answer.split(" ")
            answer = f"{marker:<{len(columns[0]) - FIELD_WIDTH}}{result:>{FIELD_WIDTH}}"
        return prompt, "\n".join([*columns, answer]) + "\n"

    def completion_budget(self, digits: int) -> int:
        """Tokens for a worked solution of `digits`-digit operands, with room for a mistake or two."""
        line = (FIELD_WIDTH + 13) if self.fixed_width else (16 + digits)
        return line * (digits + 1) + 24


def operand(rng: random.Random, digits: int) -> int:
    return rng.randrange(0 if digits == 1 else 10 ** (digits - 1), 10**digits)


def training_texts(presentation: Presentation, count: int, mixed_lengths: bool, pack: bool, seed: int) -> list[str]:
    rng = random.Random(seed)
    texts = []
    for index in range(count):
        documents = []
        for _ in range(rng.choice([1, 2]) if pack else 1):
            digits = 1 + index % GOLD_DIGITS
            other = rng.randint(1, GOLD_DIGITS) if mixed_lengths else digits
            a, b = operand(rng, digits), operand(rng, other)
            if rng.random() < 0.5:
                a, b = b, a
            documents.append("".join(presentation.document(a, b, rng)))
        texts.append(EOS_TOKEN.join(documents))
    return texts


def pass_rates(
    policy, presentation: Presentation, digits: int, tasks: int, samples: int, seed: int
) -> tuple[float, float]:
    """(greedy pass@1, pass@samples at temperature 0.7) over equal-length tasks of `digits` digits."""
    rng = random.Random(seed * 7919 + digits)
    problems = []
    for _ in range(tasks):
        a, b = operand(rng, digits), operand(rng, digits)
        problems.append((presentation.document(a, b, rng)[0], a + b))
    budget = presentation.completion_budget(digits)

    def passed(text: str, answer: int) -> bool:  # the arithmetic env's verdict: the text after the last "Answer:"
        return extract_answer(text) == str(answer)

    greedy = policy.sample([p for p, _ in problems], n=1, temperature=0.0, max_new_tokens=budget)
    sampled = policy.sample([p for p, _ in problems], n=samples, temperature=0.7, max_new_tokens=budget, seed=seed)
    pass_at_1 = sum(passed(row[0].text, answer) for row, (_, answer) in zip(greedy, problems)) / tasks
    pass_at_k = sum(any(passed(c.text, answer) for c in row) for row, (_, answer) in zip(sampled, problems)) / tasks
    return pass_at_1, pass_at_k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tagged", action="store_true")
    parser.add_argument("--mixed-lengths", action="store_true")
    parser.add_argument("--pack", action="store_true")
    parser.add_argument("--spaces", action="store_true")
    parser.add_argument("--reversed", action="store_true")
    parser.add_argument("--shuffled", action="store_true")
    parser.add_argument("--fixed-width", action="store_true")
    parser.add_argument("--steps", type=int, default=1500, help="pre-training steps of batch 64 (default 1500)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tasks", type=int, default=32, help="evaluation tasks per digit count (default 32)")
    args = parser.parse_args()
    if args.steps < 1 or args.tasks < 1:
        raise ValueError("--steps and --tasks must be at least 1")
    presentation = Presentation(args.tagged, args.spaces, args.reversed, args.shuffled, args.fixed_width)
    torch.set_num_threads(1)

    texts = training_texts(presentation, args.steps * 64, args.mixed_lengths, args.pack, args.seed)
    print("a training document:\n" + texts[GOLD_DIGITS - 1])
    tokenizer = build_tokenizer()
    model = build_model("tiny", len(tokenizer), seed=args.seed)
    started = time.perf_counter()
    metrics = pretrain(
        model,
        tokenizer,
        texts,
        TrainConfig(
            steps=args.steps,
            batch_size=64,
            learning_rate=3e-3,
            warmup_steps=30,
            min_lr_ratio=0.1,
            max_length=(2 if args.pack else 1) * (160 if args.fixed_width else 128),
            seed=args.seed,
        ),
    )
    print(
        f"pre-trained {metrics['steps']:.0f} steps on 1-{GOLD_DIGITS} digits in {time.perf_counter() - started:.0f}s "
        f"(final loss {metrics['final_loss']:.3f})"
    )
    model.eval()
    policy = LocalPolicy(model, tokenizer, version=0)
    at_16 = {}
    for digits in (GOLD_DIGITS, GOLD_DIGITS + 1, GOLD_DIGITS + 2):
        pass_at_1, at_16[digits] = pass_rates(policy, presentation, digits, args.tasks, 16, args.seed)
        print(f"d{digits}: pass@1 {pass_at_1:.1%}  pass@16 {at_16[digits]:.1%}", flush=True)
    ratio = at_16[GOLD_DIGITS + 1] / at_16[GOLD_DIGITS] if at_16[GOLD_DIGITS] else float("nan")
    print(f"pass@16 one digit past the gold data / pass@16 on it: {ratio:.2f}")


if __name__ == "__main__":
    main()
