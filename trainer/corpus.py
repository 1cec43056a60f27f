"""The pre-training corpus, built offline and deterministically from a seed.

Three sources: worked arithmetic solutions (the envs' own reference completions), generated Python
function tasks with their reference solutions, and real Python source from this interpreter's standard
library. A held-out split, disjoint from the training split, measures forgetting during post-training.
"""

from __future__ import annotations

import hashlib
import random
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from verifarm.envs.catalog import get_family

ARITHMETIC_ENV = "verifarm/Addition-v0"
PYTHON_ENV = "verifarm/PythonFunction-v0"


@dataclass(frozen=True)
class CorpusConfig:
    """What goes into the corpus; the same config always yields the same corpus."""

    seed: int = 0
    arithmetic_env: str = ARITHMETIC_ENV
    arithmetic_min_digits: int = 1
    arithmetic_max_digits: int = 4  # the easy-to-hard experiment trains on <= 4 digits only
    arithmetic_documents: int = 4000
    python_documents: int = 0
    stdlib_documents: int = 0
    stdlib_chunk_chars: int = 400
    heldout_fraction: float = 0.05

    def __post_init__(self) -> None:
        if self.arithmetic_min_digits < 1 or self.arithmetic_max_digits < self.arithmetic_min_digits:
            raise ValueError(
                "need 1 <= arithmetic_min_digits <= arithmetic_max_digits, got "
                f"{self.arithmetic_min_digits}..{self.arithmetic_max_digits}"
            )
        for name in ("arithmetic_documents", "python_documents", "stdlib_documents"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.arithmetic_documents + self.python_documents + self.stdlib_documents == 0:
            raise ValueError("the corpus would be empty: ask for at least one document of some source")
        if self.stdlib_chunk_chars < 32:
            raise ValueError(f"stdlib_chunk_chars must be >= 32, got {self.stdlib_chunk_chars}")
        if not 0.0 < self.heldout_fraction < 1.0:
            raise ValueError(f"heldout_fraction must lie strictly between 0 and 1, got {self.heldout_fraction}")


@dataclass(frozen=True)
class Corpus:
    """Deduplicated documents, split so that no held-out document also appears in training."""

    train: tuple[str, ...]
    heldout: tuple[str, ...]
    config: CorpusConfig

    def fingerprint(self) -> str:
        """A short content hash, saved with the trainer state so a resume can refuse a different corpus."""
        digest = hashlib.sha256()
        for split in (self.train, self.heldout):
            for text in split:
                digest.update(hashlib.sha256(text.encode()).digest())
            digest.update(b"|")
        return digest.hexdigest()[:16]


def arithmetic_documents(env_id: str, count: int, min_digits: int, max_digits: int, seed: int) -> list[str]:
    """Prompt + worked reference solution, with digits spread evenly over the range."""
    family = get_family(env_id)
    if max_digits > family.max_difficulty or min_digits < family.min_difficulty:
        raise ValueError(
            f"{env_id} supports {family.min_difficulty}..{family.max_difficulty} digits, "
            f"asked for {min_digits}..{max_digits}"
        )
    span = max_digits - min_digits + 1
    documents = []
    for index in range(count):
        task = family.generate(seed=seed * 1_000_003 + index, difficulty=min_digits + index % span)
        documents.append(task.prompt + task.reference)
    return documents


def python_task_documents(count: int, seed: int) -> list[str]:
    """Generated Python function tasks with their reference solutions."""
    if count == 0:
        return []

    family = get_family(PYTHON_ENV)
    documents = []
    for index in range(count):
        difficulty = family.min_difficulty + index % (family.max_difficulty - family.min_difficulty + 1)
        task = family.generate(seed=seed * 1_000_003 + index, difficulty=difficulty)
        documents.append(task.prompt + task.reference)
    return documents


def stdlib_source_files() -> list[Path]:
    """The interpreter's own standard-library sources (real code that needs no network)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skipped = {"site-packages", "test", "tests", "idlelib", "lib2to3", "__pycache__"}
    files = [p for p in root.rglob("*.py") if not skipped.intersection(p.relative_to(root).parts)]
    return sorted(files)


def stdlib_documents(count: int, chunk_chars: int, seed: int) -> list[str]:
    """`count` chunks of standard-library source, cut at line boundaries, from files chosen by the seed."""
    if count == 0:
        return []
    files = stdlib_source_files()
    if not files:
        raise ValueError("no standard-library sources found under sysconfig's stdlib path")
    rng = random.Random(seed)
    rng.shuffle(files)
    documents: list[str] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # a few stdlib files are not UTF-8; skipping them keeps the corpus plain text
        documents.extend(_chunk_lines(text, chunk_chars))
        if len(documents) >= count:
            break
    return documents[:count]


def _chunk_lines(text: str, chunk_chars: int) -> list[str]:
    chunks, current = [], ""
    for line in text.splitlines(keepends=True):
        line = line[:chunk_chars]
        if current and len(current) + len(line) > chunk_chars:
            chunks.append(current)
            current = ""
        current += line
    if current.strip():
        chunks.append(current)
    return [c for c in chunks if c.strip()]


def build_corpus(config: CorpusConfig) -> Corpus:
    """Generate every source, deduplicate, and split by a hash of each document (stable under reordering)."""
    documents = arithmetic_documents(
        config.arithmetic_env,
        config.arithmetic_documents,
        config.arithmetic_min_digits,
        config.arithmetic_max_digits,
        config.seed,
    )
    documents += python_task_documents(config.python_documents, config.seed)
    documents += stdlib_documents(config.stdlib_documents, config.stdlib_chunk_chars, config.seed)

    unique = list(dict.fromkeys(documents))
    train: list[str] = []
    heldout: list[str] = []
    for text in unique:
        bucket = int.from_bytes(hashlib.sha256(f"{config.seed}:{text}".encode()).digest()[:8], "big") / 2**64
        (heldout if bucket < config.heldout_fraction else train).append(text)
    if not train or not heldout:
        raise ValueError(
            f"split left {len(train)} training and {len(heldout)} held-out documents: "
            "raise the document counts or adjust heldout_fraction"
        )
    return Corpus(train=tuple(train), heldout=tuple(heldout), config=config)
