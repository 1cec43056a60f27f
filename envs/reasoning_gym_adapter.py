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
the oracle's own (trusted) string. That child is long-lived, so an answer that runs code in it could rewrite the
scorer (or the reply path) and make it lie about every later answer. So for those datasets (found by reading
their scoring modules for ``eval``, ``exec``, sympy and the like: ``scorer_may_run_answers``), a child that scored
an answer able to run code (``answer_can_run_code``: anything beyond numbers, operators, one-letter symbols and a few
pure math functions) is retired right after that reply, before any other answer reaches it, and a replacement starts
in the background: every answer is scored by a child no earlier answer ran code in.
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

ANSWER_INSTRUCTION = ("\n\nThink it through, then give only the final answer between <answer> and </answer>, "
                      "for example <answer>42</answer>.")
MAX_ANSWER_CHARS = 20_000
VIRTUAL_SIZE = 2**31 - 1
# These generate all `size` items (or validate size) when built, so they cannot take a large virtual size.
BUILT_PER_TASK = frozenset({"acre", "gsm_symbolic", "list_functions", "word_ladder"})
# What in a scoring module's source means it may execute an answer's text (parse_expr and sympify eval strings).
RUNS_TEXT = re.compile(r"\beval\s*\(|\bexec\s*\(|\bcompile\s*\(|__import__|sympy|sympify|parse_expr|latex2sympy"
                       r"|math_verify|numexpr|pickle")
# What an answer may contain and still run no code when a scorer evaluates it (eval, sympy's parse_expr): numbers,
# blanks and operators, single-letter names (symbols such as x; no scoring module binds a one-letter name to anything
# with side effects) and the pure math functions below, never an attribute (a name right after a dot), a string, an
# underscore, a keyword, an assignment expression or a non-ASCII character (which Python may read as a name).
INERT_CHARACTERS = re.compile(r"[A-Za-z0-9\s+\-*/%^().,\[\]{}<>=!|&~]*")
NAME = re.compile(r"(\.\s*)?([A-Za-z][A-Za-z0-9]*)")
PURE_MATH_NAMES = frozenset({"sqrt", "sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "tanh", "exp", "log",
                             "ln", "pi", "oo", "Abs", "abs"})


def _reasoning_gym_modules(cls: type, depth: int = 2) -> set[types.ModuleType]:
    """The reasoning-gym modules that define ``cls`` (and its bases) and those their globals come from."""
    found = {sys.modules[klass.__module__] for klass in cls.__mro__
             if klass.__module__.startswith("reasoning_gym") and klass.__module__ in sys.modules}
    frontier = set(found)
    for _ in range(depth):
        reached = set()
        for module in frontier:
            for value in vars(module).values():
                source = value if isinstance(value, types.ModuleType) else \
                    sys.modules.get(getattr(value, "__module__", None) or "")
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


def answer_can_run_code(answer: str) -> bool:
    """Whether evaluating ``answer`` as Python (or through sympy) could do more than compute a value."""
    if INERT_CHARACTERS.fullmatch(answer) is None:
        return True
    for match in NAME.finditer(answer):
        after_dot, name = match.groups()
        if after_dot or len(name) > 1 and name not in PURE_MATH_NAMES:
            return True
    return False


def extract_tagged_answer(completion: str) -> str | None:
    from reasoning_gym.utils import extract_answer

    return extract_answer(completion, tag_name="answer", strip=True)


class ReasoningGymFamily:
    """``dataset`` is a registered reasoning-gym name (``reasoning_gym.factory.DATASETS``)."""

    verifier_version = "reasoning-gym-2"  # 2: no answer is scored by a child an earlier answer ran code in
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
        self._closed = False
        self._scorer = self._new_scorer()
        self.scorer_runs_answers = scorer_may_run_answers(self._dataset_cls)
        # Held from a request to the retirement of a child that answer may have rewritten, so no other answer
        # reaches that child in between.
        self._scoring_lock = threading.Lock()

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
            retire = self.scorer_runs_answers and answer_can_run_code(answer)
            with self._scoring_lock:
                reply = self._scorer.call({"difficulty": task.difficulty, "answer": answer, "entry": entry},
                                          self.score_timeout_seconds)
                if retire:
                    self._scorer.close()
                    self._scorer = self._new_scorer(warm_up={"difficulty": task.difficulty, "answer": "0",
                                                             "entry": entry})
            details["scorer_child_retired"] = retire
            if reply.status == "timeout":
                return Verdict(0.0, False, "the dataset's scorer timed out on the answer", details)
            if reply.status != "ok":
                return Verdict(0.0, False, f"scorer process failed: {reply.body.get('error', '')}", details,
                               infra_error=True)
            if "score" not in reply.body:
                return Verdict(0.0, False, f"the dataset's scorer rejected the answer: {reply.body.get('error', '')}"[:200],
                               details)
            try:
                score = float(reply.body["score"])
            except (TypeError, ValueError):
                score = 0.0
        score = min(1.0, max(0.0, score)) if score == score else 0.0  # NaN counts as 0
        passed = score >= 1.0
        return Verdict(score, passed, "correct" if passed else f"scored {score:.3f} by the dataset's scorer", details)

    def _new_scorer(self, warm_up: dict[str, Any] | None = None) -> ScoringProcess:
        """A scorer child handle; with ``warm_up`` (an inert request) its child starts now, in the background,
        so the next answer rarely waits for a replacement's start-up."""
        scorer = ScoringProcess("verifarm.envs.reasoning_gym_adapter:score_handler", {"dataset": self.dataset})

        def start() -> None:
            with self._scoring_lock:
                if not self._closed and self._scorer is scorer:
                    scorer.call(warm_up, self.score_timeout_seconds)

        if warm_up is not None:
            threading.Thread(target=start, daemon=True, name=f"start-{self.name}").start()
        return scorer

    def close(self) -> None:
        with self._scoring_lock:
            self._closed = True
            self._scorer.close()


def score_handler(dataset: str):
    """Runs in the scoring child: build every difficulty's scorer and warm it up (before hardening)."""
    family = ReasoningGymFamily(dataset)
    scorers = {}
    for difficulty in range(family.min_difficulty, family.max_difficulty + 1):
        scorer, index = family._dataset_and_index(0, difficulty)
        entry = scorer[index]
        scorer.score_answer(str(entry["answer"]), entry)  # loads what scoring imports lazily
        scorer.score_answer("0", entry)
        scorers[difficulty] = scorer

    def handle(request: dict) -> dict:
        score = scorers[int(request["difficulty"])].score_answer(str(request["answer"]), request["entry"])
        return {"score": float(score)}

    return handle

