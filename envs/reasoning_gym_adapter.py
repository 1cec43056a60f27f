"""Any reasoning-gym dataset as a task family, scored with that dataset's own ``score_answer``.

Task ``seed`` is item ``seed`` of one dataset instance per difficulty built with seed 0 and a large virtual size
(reasoning-gym builds item ``i`` on the fly from ``Random(seed + i)``), so a task is reproducible from its seed
alone; the few datasets that precompute every item up front are instead built per task with ``seed`` and size 1.
Difficulty 1-5 sets the dataset's curriculum to global level ``difficulty - 1`` (capped at its highest level, and
falling back to the highest lower level whose configuration the dataset accepts); datasets without a curriculum use
their default configuration at every difficulty. The completion's final answer goes between ``<answer>`` and
``</answer>`` (reasoning-gym's convention; answers may span lines); the reward is the dataset's score, passed means 1.0.
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

from verifarm.envs.base import Task, Verdict, check_completion_size

ANSWER_INSTRUCTION = ("\n\nThink it through, then give only the final answer between <answer> and </answer>, "
                      "for example <answer>42</answer>.")
MAX_ANSWER_CHARS = 20_000
VIRTUAL_SIZE = 2**31 - 1
# These generate all `size` items (or validate size) when built, so they cannot take a large virtual size.
BUILT_PER_TASK = frozenset({"acre", "gsm_symbolic", "list_functions", "word_ladder"})


def extract_tagged_answer(completion: str) -> str | None:
    from reasoning_gym.utils import extract_answer

    return extract_answer(completion, tag_name="answer", strip=True)


class ReasoningGymFamily:
    """``dataset`` is a registered reasoning-gym name (``reasoning_gym.factory.DATASETS``)."""

    verifier_version = "reasoning-gym-1"
    min_difficulty = 1
    max_difficulty = 5
    max_prompt_chars = 16384
    max_completion_chars = 8192

    def __init__(self, dataset: str = "basic_arithmetic") -> None:
        from reasoning_gym.factory import DATASETS

        if dataset not in DATASETS or dataset == "composite":
            known = sorted(name for name in DATASETS if name != "composite")
            raise ValueError(f"unknown reasoning-gym dataset {dataset!r}; choose one of {known}")
        self.dataset = dataset
        self.name = f"reasoning_gym[{dataset}]"
        self._dataset_cls, self._config_cls = DATASETS[dataset]
        # Config fields per difficulty, computed once: a curriculum object is mutable, generation must not be.
        self._config_fields = {d: self._fields_for(d) for d in range(self.min_difficulty, self.max_difficulty + 1)}
        self._shared: dict[int, Any] = {}
        self._lock = threading.Lock()  # datasets keep caches that are not thread-safe

    def _fields_for(self, difficulty: int) -> dict[str, Any]:
        from reasoning_gym.factory import CURRICULA, create_curriculum

        if self.dataset not in CURRICULA:
            return {}
        for level in range(difficulty - 1, -1, -1):
            curriculum = create_curriculum(self.dataset)
            curriculum.set_global_level(level)
            try:
                config = curriculum.generate_configuration({"seed": 0, "size": 1})
                if hasattr(config, "validate"):
                    config.validate()
            except (AssertionError, ValueError):  # some curricula's top levels are invalid configurations
                continue
            return dataclasses.asdict(config)
        return {}

    def _build(self, seed: int, difficulty: int, size: int) -> Any:
        config = self._config_cls(**{**self._config_fields[difficulty], "seed": seed, "size": size})
        return self._dataset_cls(config=config)

    def _dataset_and_index(self, seed: int, difficulty: int) -> tuple[Any, int]:
        """Call with the lock held."""
        if self.dataset in BUILT_PER_TASK:
            return self._build(seed, difficulty, size=1), 0
        if difficulty not in self._shared:
            self._shared[difficulty] = self._build(0, difficulty, size=VIRTUAL_SIZE)
        return self._shared[difficulty], seed % VIRTUAL_SIZE

    def generate(self, seed: int, difficulty: int) -> Task:
        if not self.min_difficulty <= difficulty <= self.max_difficulty:
            raise ValueError(f"difficulty must lie in [{self.min_difficulty}, {self.max_difficulty}], got {difficulty}")
        with self._lock:
            dataset, index = self._dataset_and_index(seed, difficulty)
            entry = dataset[index]
        answer = entry["answer"]
        return Task(
            task_id=f"{self.name}:d{difficulty}:s{seed}",
            prompt=str(entry["question"]) + ANSWER_INSTRUCTION + "\n",
            reference=f"<answer>{answer}</answer>\n" if answer is not None else "",
            difficulty=difficulty,
            data={"dataset": self.dataset, "seed": seed, "entry": entry},
        )

    def verify(self, task: Task, completion: str) -> Verdict:
        too_big = check_completion_size(completion, self.max_completion_chars * 4)
        if too_big is not None:
            return too_big
        details: dict[str, Any] = {"verifier_version": self.verifier_version, "dataset": self.dataset}
        answer = extract_tagged_answer(completion)
        if answer is None:
            return Verdict(0.0, False, "no <answer>...</answer> in the completion", details)
        details["answer"] = answer[:200]
        if not answer:
            return Verdict(0.0, False, "empty <answer></answer>", details)
        if len(answer) > MAX_ANSWER_CHARS:
            return Verdict(0.0, False, f"answer too long ({len(answer)} chars > {MAX_ANSWER_CHARS})", details)
        try:
            with self._lock:
                scorer, _ = self._dataset_and_index(int(task.data["seed"]), task.difficulty)
                score = float(scorer.score_answer(answer, task.data["entry"]))
        except Exception as error:  # noqa: BLE001  (a scorer choking on a malformed answer means 0, not a crash)
            return Verdict(0.0, False, f"the dataset's scorer rejected the answer: {type(error).__name__}", details)
        score = min(1.0, max(0.0, score)) if score == score else 0.0  # NaN counts as 0
        passed = score >= 1.0
        return Verdict(score, passed, "correct" if passed else f"scored {score:.3f} by the dataset's scorer", details)
