"""Any reasoning-gym dataset as a task family, scored with that dataset's own ``score_answer``.

Task ``seed`` is item ``seed`` of one dataset instance per difficulty built with seed 0 and a large virtual size
(reasoning-gym builds item ``i`` on the fly from ``Random(seed + i)``), so a task is reproducible from its seed
alone; the few datasets that precompute every item up front are instead built per task with ``seed`` and size 1.
Difficulty 1-5 sets the dataset's curriculum to global level ``difficulty - 1`` (capped at its highest level, and
falling back to the highest lower level whose configuration the dataset accepts); datasets without a curriculum use
their default configuration at every difficulty. The completion's final answer goes between ``<answer>`` and
``</answer>`` (reasoning-gym's convention; answers may span lines); the reward is the dataset's score, passed means 1.0.

Several datasets' scorers hand the answer to ``eval`` or sympy's ``parse_expr`` (spiral_matrix, puzzle24,
countdown, the integration tasks...), so any answer other than the dataset's own is scored in a hardened child
process (``scoring_process``) under a wall deadline; only an answer identical to the oracle's is scored here, with
the oracle's own (trusted) string. That child is long-lived and warm (reasoning-gym imported, every difficulty's
scorer built and warmed up), so an answer that ran code in it could rewrite the scorer (``score_answer``, builtins,
module globals, the reply path) and make it lie about every later answer. For the datasets whose scoring code may
run an answer's text (``scorer_may_run_answers``: their scoring modules' source mentions ``eval``, ``exec``,
``compile``, sympy and the like; 19 of reasoning-gym's 106), the child therefore scores EVERY answer in a fresh fork
of itself that exits after its one reply (``ScoringProcess(fork_per_request=True)``): whatever an answer does dies
with its fork, the warm child never runs code that depends on an answer, so no answer can change another's verdict.
A fork that crashes, is killed or stopped by someone else, or replies nothing is an infra error, never a verdict;
one that outlives the deadline is a timeout (the answer's doing).

Why every answer of those datasets, not only the ones that look like code: telling "inert" answers from code by
their characters is an allow-list an attacker has only to find one gap in, kept right for every scorer's parser
(``eval``, sympy's transformations), while a fork needs no judgement. Measured on spiral_matrix
(``benchmarks/reasoning_gym_scoring.py``, figures in benchmarks/README.md, issue 12): a fork costs about 4 ms of CPU
per answer (copying the page tables of a warm process that holds reasoning-gym and sympy, faults on the pages the
scorer touches, the exit), 8-13 ms of wall time on the shared 2-core development machine (75-125 answers/s), where
the warm child unforked costs 0.08 ms (12,000 answers/s) and the earlier design, a fresh child after every answer
that looked like code, 0.4 answers/s for those. 4 ms is not the "well under a millisecond" that would make a fork
free, but it is the order of one math-verify check (about 6 ms of CPU) and small beside generating the completion,
so certainty about every verdict is worth it. The other datasets' scoring code cannot
execute an answer's text, so they keep scoring in the warm child directly (~0.05 ms per answer): the fork would
buy them nothing for its cost. What no fork can stop: an answer whose code runs decides its own fork's reply (it can
read the oracle from the scorer's frame); only a scorer that never executes answers closes that.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import threading
import types
from typing import Any

from verifarm.envs.base import Task, Verdict, check_completion_size
from verifarm.envs.scoring_process import ScoringProcess

ANSWER_INSTRUCTION = (
    "\n\nThink it through, then give only the final answer between <answer> and </answer>, "
    "for example <answer>42</answer>."
)
MAX_ANSWER_CHARS = 20_000
VIRTUAL_SIZE = 2**31 - 1
# These generate all `size` items (or validate size) when built, so they cannot take a large virtual size.
BUILT_PER_TASK = frozenset({"acre", "gsm_symbolic", "list_functions", "word_ladder"})
# What in a scoring module's source means it may execute an answer's text (parse_expr and sympify eval strings).
RUNS_TEXT = re.compile(
    r"\beval\s*\(|\bexec\s*\(|\bcompile\s*\(|__import__|sympy|sympify|parse_expr|latex2sympy"
    r"|math_verify|numexpr|pickle"
)


def _reasoning_gym_modules(cls: type, depth: int = 2) -> set[types.ModuleType]:
    """The reasoning-gym modules that define ``cls`` (and its bases) and those their globals come from."""
    found = {
        sys.modules[klass.__module__]
        for klass in cls.__mro__
        if klass.__module__.startswith("reasoning_gym") and klass.__module__ in sys.modules
    }
    frontier = set(found)
    for _ in range(depth):
        reached = set()
        for module in frontier:
            for value in vars(module).values():
                source = (
                    value
                    if isinstance(value, types.ModuleType)
                    else sys.modules.get(getattr(value, "__module__", None) or "")
                )
                if source is not None and source.__name__.startswith("reasoning_gym") and source not in found:
                    reached.add(source)
        found |= reached
        frontier = reached
    return found


def scorer_may_run_answers(dataset_cls: type) -> bool:
    """Whether the dataset's scoring code may execute an answer's text (read from its modules' source; a module
    whose source cannot be read counts as yes)."""
    for module in _reasoning_gym_modules(dataset_cls):
        try:
            source = inspect.getsource(module)
        except (OSError, TypeError):
            return True
        if RUNS_TEXT.search(source):
            return True
    return False


def extract_tagged_answer(completion: str) -> str | None:
    from reasoning_gym.utils import extract_answer

    return extract_answer(completion, tag_name="answer", strip=True)


class ReasoningGymFamily:
    """``dataset`` is a registered reasoning-gym name (``reasoning_gym.factory.DATASETS``)."""

    # 2: no answer is scored by a child an earlier answer ran code in; 3: every answer to a scorer that may run its
    # text is scored in a fork of the warm child (no answer-shape allow-list), boxnet's scorer child starts
    verifier_version = "reasoning-gym-3"
    min_difficulty = 1
    max_difficulty = 5
    max_prompt_chars = 16384
    max_completion_chars = 8192

    def __init__(self, dataset: str = "basic_arithmetic", score_timeout_seconds: float = 20.0) -> None:
        from reasoning_gym.factory import DATASETS

        if dataset not in DATASETS or dataset == "composite":
            known = sorted(name for name in DATASETS if name != "composite")
            raise ValueError(f"unknown reasoning-gym dataset {dataset!r}; choose one of {known}")
        if not score_timeout_seconds > 0:
            raise ValueError(f"score_timeout_seconds must be positive, got {score_timeout_seconds!r}")
        self.dataset = dataset
        self.score_timeout_seconds = float(score_timeout_seconds)
        self.name = f"reasoning_gym[{dataset}]"
        self._dataset_cls, self._config_cls = DATASETS[dataset]
        # Config fields per difficulty, computed once: a curriculum object is mutable, generation must not be.
        self._config_fields = {d: self._fields_for(d) for d in range(self.min_difficulty, self.max_difficulty + 1)}
        self._shared: dict[int, Any] = {}
        self._lock = threading.Lock()  # datasets keep caches that are not thread-safe
        self.scorer_runs_answers = scorer_may_run_answers(self._dataset_cls)
        self._scorer = ScoringProcess(
            "verifarm.envs.reasoning_gym_adapter:score_handler",
            {"dataset": dataset},
            fork_per_request=self.scorer_runs_answers,
        )

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
        entry = task.data["entry"]
        if entry["answer"] is not None and answer == str(entry["answer"]):
            # Identical to the oracle: score the oracle's own string, which is trusted, in this process.
            with self._lock:
                scorer, _ = self._dataset_and_index(int(task.data["seed"]), task.difficulty)
                score = float(scorer.score_answer(str(entry["answer"]), entry))
        else:
            reply = self._scorer.call(
                {"difficulty": task.difficulty, "answer": answer, "entry": entry}, self.score_timeout_seconds
            )
            details["scored_in_fork"] = self.scorer_runs_answers
            if reply.status == "timeout":
                return Verdict(0.0, False, "the dataset's scorer timed out on the answer", details)
            if reply.status != "ok":
                return Verdict(
                    0.0, False, f"scorer process failed: {reply.body.get('error', '')}", details, infra_error=True
                )
            if "score" not in reply.body:
                return Verdict(
                    0.0,
                    False,
                    f"the dataset's scorer rejected the answer: {reply.body.get('error', '')}"[:200],
                    details,
                )
            try:
                score = float(reply.body["score"])
            except (TypeError, ValueError):
                score = 0.0
        score = min(1.0, max(0.0, score)) if score == score else 0.0  # NaN counts as 0
        passed = score >= 1.0
        return Verdict(score, passed, "correct" if passed else f"scored {score:.3f} by the dataset's scorer", details)

    def close(self) -> None:
        self._scorer.close()


def score_handler(dataset: str):
    """Runs in the scoring child: build every difficulty's scorer and warm it up (before hardening)."""
    family = ReasoningGymFamily(dataset)
    scorers = {}
    for difficulty in range(family.min_difficulty, family.max_difficulty + 1):
        scorer, index = family._dataset_and_index(0, difficulty)
        entry = scorer[index]
        # Loads what scoring imports lazily. A scorer may raise on a wrong answer (boxnet's on any JSON that is not
        # a list of plans), which the serving loop reports as a rejection; here it must not stop the start-up.
        for warm_up in ([str(entry["answer"])] if entry["answer"] is not None else []) + ["0", "[]"]:
            try:
                scorer.score_answer(warm_up, entry)
            except Exception:
                pass
        scorers[difficulty] = scorer

    def handle(request: dict) -> dict:
        score = scorers[int(request["difficulty"])].score_answer(str(request["answer"]), request["entry"])
        return {"score": float(score)}

    return handle
