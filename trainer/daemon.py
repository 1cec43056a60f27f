"""The continual-training loop: pre-training batches from the corpus interleaved with post-training batches
from the rollout store, publishing a new policy version every N steps.

Restart safety: before each publish the trainer state (optimizer, step, data cursor) is written atomically
under `state_dir`, and the published version's metadata names it. A restarted trainer loads the newest good
version and its state, so it continues with exactly the data the killed one would have read next.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from verifarm.policy.losses import distill_loss, grpo_loss, lm_loss, sequence_logprobs, sft_loss
from verifarm.policy.registry import sha256_file
from verifarm.policy.sampling import LocalPolicy
from verifarm.policy.training import TrainConfig, align_behaviour_logprobs, encode_batch, encode_texts, make_optimizer
from verifarm.redaction import redact_url
from verifarm.rollout.store import RecordFilter
from verifarm.trainer.config import TrainerConfig, plain
from verifarm.trainer.corpus import Corpus, build_corpus
from verifarm.trainer.distributed import DataParallel
from verifarm.trainer.drafter import refresh_published_drafter
from verifarm.trainer.evaluate import evaluate_policy
from verifarm.trainer.metrics import TrainerTelemetry
from verifarm.trainer.post_data import PostBatch, PostSelection, read_post_batch
from verifarm.trainer.schedule import PRETRAIN, DataCursor, next_corpus_indices, oldest_fresh_version, step_kind

logger = logging.getLogger("verifarm.trainer")

STATE_FORMAT = 1

# Settings a saved state is only valid under: the corpus and seed fix what the data cursor's positions mean, the
# envs and campaign fix which store records it has already passed over. Others (learning rate, schedule) may
# change between restarts.
RESUME_SETTINGS = ("corpus", "seed", "env_ids", "campaign_id")
FRESH_HINT = "or start a fresh trainer state from the newest version with `verifarm train run --fresh`"


class TrainerStateMismatch(ValueError):
    """The saved trainer state does not fit this config, registry or store; the message names what differs."""


def _flatten(value, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        flat: dict[str, object] = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def config_differences(saved: dict, current: dict, keys: tuple[str, ...] = RESUME_SETTINGS) -> list[str]:
    """`name=saved (now current)` for every resume setting that differs (nested settings by dotted name)."""
    old = _flatten({k: saved.get(k) for k in keys})
    new = _flatten({k: current.get(k) for k in keys})
    return [
        f"{name}={old.get(name)!r} (now {new.get(name)!r})"
        for name in sorted(set(old) | set(new))
        if old.get(name) != new.get(name)
    ]


@dataclass
class StepReport:
    step: int  # the step just taken, 0-based
    kind: str  # "pretrain" or a post-training mode
    loss: float
    samples: int
    seconds: float
    metrics: dict[str, float] = field(default_factory=dict)
    tokens: int = 0
    while_waiting: bool = False  # a pre-training step taken while the scheduled post-training step had no data


@dataclass
class PublishReport:
    version: int
    step: int
    metrics: dict[str, float]


class ContinualTrainer:
    """One training run over a registry and a store; `run()` is the daemon loop, `step()` one step of it."""

    def __init__(
        self,
        config: TrainerConfig,
        registry,
        store,
        state_dir: Path,
        corpus: Corpus | None = None,
        evaluate: Callable | None = None,
        fresh: bool = False,
        parallel: DataParallel | None = None,
    ) -> None:
        self.config = config
        # Under torchrun: this rank's place in the data-parallel group (None: one process trains alone).
        self.parallel = parallel
        self.registry = registry
        self.store = store
        self.state_dir = Path(state_dir)
        self.corpus = corpus if corpus is not None else build_corpus(config.corpus)
        # Evaluation is injectable so the demo can evaluate once per round instead of on every publish.
        self._evaluate = evaluate
        self.selection = PostSelection(
            env_ids=tuple(config.env_ids),
            campaign_id=config.campaign_id,
            staleness_bound=config.staleness_bound,
        )
        torch.set_num_threads(config.torch_threads)
        # TensorBoard scalars, Prometheus gauges, W&B if asked: from the rank that publishes only.
        self.telemetry = TrainerTelemetry(self.state_dir) if self.is_primary else None
        # Where post-training batches come from: the store after the data cursor (None), or a curriculum's own
        # source, called as post_source(mode, batch_size, step, current_version) -> PostBatch | None; it must be
        # a function of its arguments (every rank draws the same batch).
        self.post_source: Callable[[str, int, int, int], PostBatch | None] | None = None
        self._load(fresh)

    @property
    def is_primary(self) -> bool:
        """The rank that reads the store's batches, writes the state and publishes (the only one, alone)."""
        return self.parallel is None or self.parallel.is_primary

    @property
    def device(self) -> torch.device:
        return self.parallel.device if self.parallel else torch.device("cpu")

    # ---- state ---------------------------------------------------------------------------------

    def _load(self, fresh: bool = False) -> None:
        """Start from the newest good version and resume the trainer state it names (none with `fresh`).

        A state that does not fit (another corpus, another store, missing from `state_dir`) raises
        TrainerStateMismatch naming the difference: resuming it would silently re-train or skip data.
        """
        loaded = self.registry.load(None)
        self.model, self.tokenizer = loaded.model, loaded.tokenizer
        self.version = loaded.version
        self.metadata = dict(loaded.metadata)  # of the version trained from (a curriculum's state rides in it)
        self.model.train()
        # What the losses call: the model itself, or under DDP its wrapper (which averages the ranks' gradients).
        self.train_model = self.parallel.wrap(self.model) if self.parallel else self.model
        self.optimizer = make_optimizer(
            self.model, TrainConfig(learning_rate=self.config.learning_rate, weight_decay=self.config.weight_decay)
        )
        self.step_index = 0
        self.cursor = DataCursor()
        self.kind_counts: Counter[str] = Counter()
        self.resumed_from: str | None = None
        state_name = None if fresh else loaded.metadata.get("trainer_state")
        if state_name:
            path = self.state_dir / state_name
            if not path.is_file():
                raise TrainerStateMismatch(
                    f"policy v{loaded.version} was published by a trainer whose state {state_name} is not in "
                    f"{self.state_dir}: pass the --state-dir that trainer used, {FRESH_HINT}"
                )
            expected = loaded.metadata.get("trainer_state_sha256")
            if expected and sha256_file(path) != expected:
                raise TrainerStateMismatch(
                    f"trainer state {path} does not match the SHA-256 recorded in policy "
                    f"v{loaded.version} (modified or corrupt): restore it, {FRESH_HINT}"
                )
            state = torch.load(path, weights_only=True)
            if state.get("format") != STATE_FORMAT:
                raise TrainerStateMismatch(
                    f"trainer state {state_name} has format {state.get('format')}, this "
                    f"trainer reads {STATE_FORMAT}: {FRESH_HINT.removeprefix('or ')}"
                )
            self._check_resumable(state, state_name)
            self.optimizer.load_state_dict(state["optimizer"])
            self.step_index = int(state["step"])
            self.cursor = DataCursor.from_dict(state["cursor"])
            self.kind_counts = Counter(state["kind_counts"])
            self.resumed_from = state_name
        self.teacher = None
        if self.config.schedule.mode_weights.get("distill", 0) > 0:
            self.teacher = self.registry.load(self.config.teacher_version).model.to(self.device)
            self.teacher.eval()
        self._last_published_step = self.step_index
        self._staleness_since_publish: list[int] = []  # of every post-training sample since the last publish
        logger.info(
            "trainer at policy v%d, step %d%s",
            self.version,
            self.step_index,
            f" (resumed from {self.resumed_from})" if self.resumed_from else " (fresh trainer state)",
        )

    def _check_resumable(self, state: dict, state_name: str) -> None:
        """The saved state was written under this config's resume settings and read from this store."""
        saved_config = json.loads(state["config"]) if "config" in state else None
        if saved_config is not None:
            differences = config_differences(saved_config, plain(self.config.to_dict()))
            if differences:
                raise TrainerStateMismatch(
                    f"trainer state {state_name} was written with {', '.join(differences)}: run with the config "
                    f"it was written with, {FRESH_HINT}"
                )
        if state["corpus_fingerprint"] != self.corpus.fingerprint():
            raise TrainerStateMismatch(
                f"trainer state {state_name} was written with a different corpus ({state['corpus_fingerprint']}, "
                f"now {self.corpus.fingerprint()}): use the same corpus config, {FRESH_HINT}"
            )
        read_up_to = state["cursor"].get("store_after_seq")
        newest = self.store.latest_seq()
        if read_up_to is not None and (newest is None or newest < read_up_to):
            raise TrainerStateMismatch(
                f"trainer state {state_name} has read the rollout store up to record {read_up_to}, but the store at "
                f"{redact_url(self.store.url)} holds {'no records' if newest is None else f'only {newest}'}: it is another "
                f"store, so point VERIFARM_DATABASE_URL at the one it trained from, {FRESH_HINT}"
            )

    def _save_state(self) -> str:
        """Write the trainer state atomically; returns its file name (recorded in the version's metadata)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        name = f"state-step{self.step_index:09d}.pt"
        tmp = self.state_dir / f".{name}.tmp-{os.getpid()}"
        torch.save(
            {
                "format": STATE_FORMAT,
                "step": self.step_index,
                "cursor": self.cursor.to_dict(),
                "optimizer": self.optimizer.state_dict(),
                "kind_counts": dict(self.kind_counts),
                "corpus_fingerprint": self.corpus.fingerprint(),
                "config": json.dumps(plain(self.config.to_dict())),
            },
            tmp,
        )
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, self.state_dir / name)
        return name

    # ---- steps ---------------------------------------------------------------------------------

    def next_kind(self) -> str:
        return step_kind(self.step_index, self.config.schedule)

    def step(self, kind: str | None = None) -> StepReport | None:
        """Take one scheduled step (or one of `kind`); None (nothing changes but skipped-record counts) if no
        fresh data yet."""
        while_waiting = kind == PRETRAIN and self.next_kind() != PRETRAIN
        kind = kind or self.next_kind()
        started = time.perf_counter()
        if kind == PRETRAIN:
            # A pure function of the cursor: every rank computes the same indices.
            indices, cursor = next_corpus_indices(
                self.cursor, len(self.corpus.train), self.config.batch_size, self.config.seed
            )
            rows, empty = self._my_rows(list(range(len(indices))))
            encoded = self._encode_texts([self.corpus.train[indices[i]] for i in rows]).to(self.device)
            loss, metrics, grad_norm = self._update(lambda: self._pretrain_loss(encoded), empty)
            samples = len(indices)
        else:
            batch, cursor = self._read_post_batch(kind)
            if batch is None:
                self.cursor = cursor  # stale or useless records scanned are not scanned again
                return None
            rows, empty = self._my_rows(batch.group_ids)
            mine = _rows_of(batch, rows)
            encoded = self._encode_post(mine).to(self.device)
            old_logprobs = None
            if batch.mode == "grpo":
                # Log-probs under the weights before this batch's first update: the clipped ratio of
                # later updates on the same batch is taken against them (PPO-style epochs).
                old_logprobs = sequence_logprobs(self.model, encoded.input_ids, encoded.attention_mask)
            for _ in range(self.config.post_updates_per_batch):
                loss, metrics, grad_norm = self._update(lambda: self._post_loss(mine, encoded, old_logprobs), empty)
            metrics.update(batch.staleness_summary())
            self._staleness_since_publish.extend(batch.staleness)
            samples = len(batch)
        # The cursor advances only once the step that consumed its data has been applied.
        self.cursor = cursor
        self.kind_counts[kind] += 1
        report = StepReport(
            step=self.step_index,
            kind=kind,
            loss=loss.item(),
            samples=samples,
            seconds=time.perf_counter() - started,
            metrics={**metrics, "grad_norm": float(grad_norm), "learning_rate": self.learning_rate_now()},
            tokens=int(encoded.attention_mask.sum()),
            while_waiting=while_waiting,
        )
        self.step_index += 1
        if self.telemetry is not None:
            self.telemetry.on_step(report, self.kind_counts, self.version)
        return report

    def _read_post_batch(self, kind: str) -> tuple[PostBatch | None, DataCursor]:
        """The next post-training batch: read by one rank and handed to all, so one data cursor advances even
        while records keep arriving between the ranks' reads. A curriculum's own source leaves the cursor as is."""
        if self.post_source is not None:
            return self.post_source(kind, self.config.batch_size, self.step_index, self.version), self.cursor
        if self.parallel is None:
            return read_post_batch(self.store, self.cursor, kind, self.config.batch_size, self.version, self.selection)
        read = None
        if self.is_primary:
            read = read_post_batch(self.store, self.cursor, kind, self.config.batch_size, self.version, self.selection)
        batch, cursor = self.parallel.from_primary(read)
        return batch, cursor

    def _my_rows(self, groups: list) -> tuple[list[int], bool]:
        """The rows of the batch this rank steps on, and whether it has none (then it steps on row 0 with no
        weight: every rank must take part in each gradient exchange)."""
        if self.parallel is None:
            return list(range(len(groups))), False
        rows = self.parallel.shard(groups)
        return (rows, False) if rows else ([0], True)

    def learning_rate_now(self) -> float:
        """Constant after a linear warm-up over the first steps; a function of the step, so resumes match."""
        warmup = self.config.warmup_steps
        if warmup and self.step_index < warmup:
            return self.config.learning_rate * (self.step_index + 1) / warmup
        return self.config.learning_rate

    def _update(self, compute_loss, weightless: bool = False):
        """One optimizer update; returns (loss, metrics, gradient norm before clipping).

        Under DDP each rank's loss is a token mean over its shard; weighted by the rank's share of the batch's
        target tokens, the averaged gradient is that of the whole batch's token mean. The reported loss is
        the whole batch's too."""
        rate = self.learning_rate_now()
        for group in self.optimizer.param_groups:
            group["lr"] = rate
        loss, metrics = compute_loss()
        self.optimizer.zero_grad(set_to_none=True)
        if self.parallel is None:
            loss.backward()
        else:
            tokens = 0.0 if weightless else float(metrics.get("tokens", 0.0))
            (loss * self.parallel.share_of(tokens)).backward()
            total = self.parallel.sum(tokens)
            loss = loss.new_tensor(self.parallel.sum(float(loss.detach()) * tokens) / total if total else 0.0)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        return loss, metrics, grad_norm

    def _encode_texts(self, texts: list[str]):
        return encode_texts(self.tokenizer, texts, max_length=self.config.max_seq_len)

    def _pretrain_loss(self, batch):
        return lm_loss(self.train_model, batch.input_ids, batch.attention_mask)

    def _encode_post(self, batch: PostBatch):
        return encode_batch(self.tokenizer, batch.prompts, batch.completions, max_length=self.config.max_seq_len)

    def _post_loss(self, batch: PostBatch, encoded, old_logprobs):
        ids, mask, completion_mask = encoded.input_ids, encoded.attention_mask, encoded.completion_mask
        model = self.train_model
        if batch.mode == "rft":
            return sft_loss(model, ids, mask, completion_mask)
        if batch.mode == "grpo":
            # The records come from a version within the staleness bound; the ratio is taken against the
            # weights this batch started from (not the sampler's), which keeps updates on a known base.
            rewards = torch.tensor(batch.rewards, dtype=torch.float32, device=self.device)
            groups = torch.tensor(batch.group_ids, dtype=torch.long, device=self.device)
            behaviour = None
            if self.config.tis_cap is not None:
                behaviour = align_behaviour_logprobs(encoded, batch.token_ids, batch.logprobs)
            return grpo_loss(
                model,
                ids,
                mask,
                completion_mask,
                old_logprobs,
                rewards,
                groups,
                clip=self.config.grpo_clip,
                behaviour_logprobs=behaviour,
                tis_cap=self.config.tis_cap or 2.0,
            )
        if batch.mode == "distill":
            return distill_loss(
                model, self.teacher, ids, mask, completion_mask, temperature=self.config.distill_temperature
            )
        raise ValueError(f"unknown post-training mode {batch.mode!r}")

    # ---- publishing ----------------------------------------------------------------------------

    def publish(self, extra_metadata: dict | None = None, metrics: dict[str, float] | None = None) -> PublishReport:
        """Save state, publish the weights as a new version, evaluate it and record the metrics (under DDP, rank 0
        does; the other ranks learn the new version from it).

        `extra_metadata` joins the version's metadata; given `metrics` (an evaluation the caller already ran on
        these weights) are recorded instead of running the config's evaluation."""
        if self.parallel is None:
            return self._publish(extra_metadata, metrics)
        self.parallel.check_in_sync(self.model)
        report: PublishReport = self.parallel.from_primary(
            self._publish(extra_metadata, metrics) if self.is_primary else None
        )
        self.version = report.version
        self._last_published_step = self.step_index
        self._staleness_since_publish = []
        return report

    def _publish(self, extra_metadata: dict | None, metrics: dict[str, float] | None) -> PublishReport:
        state_name = self._save_state()
        metadata = {
            **(extra_metadata or {}),
            "source": "trainer",
            "trainer_state": state_name,
            "trainer_state_sha256": sha256_file(self.state_dir / state_name),
            "trainer_step": self.step_index,
            "parent_version": self.version,
            "kind_counts": dict(self.kind_counts),
            "cursor": self.cursor.to_dict(),
        }
        self.model.eval()
        version = self.registry.publish(self.model, self.tokenizer, metadata)
        self.version = version
        self.metadata = metadata
        self._last_published_step = self.step_index
        given = metrics
        metrics = {
            "trainer_step": float(self.step_index),
            "records_used": float(self.cursor.records_used),
            "records_skipped_stale": float(self.cursor.records_skipped_stale),
            "records_skipped_other": float(self.cursor.records_skipped_other),
        }
        if self._staleness_since_publish:
            # How many versions behind the trained-on data was, over the steps since the previous publish.
            stale = self._staleness_since_publish
            metrics["data_staleness_mean"] = sum(stale) / len(stale)
            metrics["data_staleness_max"] = float(max(stale))
            self._staleness_since_publish = []
        if given is not None:
            metrics.update(given)
        elif self.config.evaluate_on_publish:
            metrics.update(self.evaluate())
        if self.config.refresh_drafter:
            metrics.update(refresh_published_drafter(self.registry, version, self.config))
        self.model.train()
        self.store.record_metrics(version, metrics, step=self.step_index)
        if self.telemetry is not None:
            self.telemetry.on_publish(version, self.step_index, metrics)
        logger.info("published policy v%d at step %d: %s", version, self.step_index, _short(metrics))
        return PublishReport(version=version, step=self.step_index, metrics=metrics)

    def evaluate(self) -> dict[str, float]:
        """Held-out pass@1 / pass@k per env and difficulty and held-out corpus loss for the current weights."""
        if self._evaluate is not None:
            return self._evaluate(self)

        policy = LocalPolicy(self.model, self.tokenizer, version=self.version)
        report = evaluate_policy(policy, self.config.evaluation, self.corpus.heldout, self.config.max_seq_len)
        return report.metrics()

    # ---- the loop ------------------------------------------------------------------------------

    def waiting_for(self) -> str:
        """What the next post-training step waits for, e.g. "passing rollouts of verifarm/Addition-v0 newer than
        v3: 0 so far" (the count: such records stored after the data cursor)."""
        kind = self.next_kind()
        oldest = oldest_fresh_version(self.version, self.config.staleness_bound)
        passing = kind == "rft"
        count = sum(
            self.store.count(
                RecordFilter(
                    env_id=env_id,
                    campaign_id=self.config.campaign_id,
                    passed=True if passing else None,
                    min_policy_version=oldest or None,
                    after_seq=self.cursor.store_after_seq,
                )
            )
            for env_id in self.config.env_ids
        )
        what = "passing rollouts" if passing else "rollouts"
        newer = f" newer than v{oldest - 1}" if oldest > 1 else ""
        return f"{what} of {', '.join(self.config.env_ids)}{newer}: {count} so far"

    def run(
        self,
        max_steps: int | None = None,
        until_step: int | None = None,
        until_idle: bool = False,
        should_stop: Callable[[], bool] = lambda: False,
        on_step: Callable[[StepReport], None] | None = None,
        on_wait: Callable[[str | None], None] | None = None,
    ) -> list[PublishReport]:
        """Train for `max_steps` more steps, up to step `until_step` (counted across restarts), until no fresh
        post-training data is left (`until_idle`), or until `should_stop()` says so.

        While a post-training step has no data, the pre-training share goes on: a pre-training step is taken in
        its place, so the policy keeps improving and `max_steps` bounds the run whatever it waits for. With no
        pre-training in the schedule the trainer polls instead, and each empty poll counts toward `max_steps`.
        `on_wait` hears what it waits for (None once it has data again). Publishes every `publish_every` steps,
        and once more on the way out if steps were taken since.
        """
        published: list[PublishReport] = []
        taken = 0
        waiting = False
        parallel = self.parallel
        stop_everywhere = should_stop if parallel is None else lambda: parallel.any(should_stop())
        while (
            not stop_everywhere()
            and (max_steps is None or taken < max_steps)
            and (until_step is None or self.step_index < until_step)
        ):
            report = self.step()
            if report is None:
                if until_idle:
                    break
                if not waiting or on_wait is not None:
                    waiting_for = self.waiting_for()
                    if not waiting:
                        logger.info("waiting for %s", waiting_for)
                    if on_wait is not None:
                        on_wait(waiting_for)
                waiting = True
                if self.config.schedule.pretrain_steps == 0:
                    taken += 1
                    _sleep_unless(should_stop, self.config.idle_poll_seconds)
                    continue
                report = self.step(PRETRAIN)
            elif waiting and report.kind != PRETRAIN:
                waiting = False
                logger.info("post-training data arrived; back to the schedule")
                if on_wait is not None:
                    on_wait(None)
            assert report is not None  # a pre-training step always has data
            taken += 1
            if on_step is not None:
                on_step(report)
            logger.debug(
                "step %d %s loss=%.4f n=%d %.2fs", report.step, report.kind, report.loss, report.samples, report.seconds
            )
            if self.step_index % self.config.publish_every == 0:
                published.append(self.publish())
        if self.step_index > self._last_published_step:
            published.append(self.publish())
        return published


def _rows_of(batch: PostBatch, rows: list[int]) -> PostBatch:
    """The batch cut to these rows (every per-sample list; staleness stays the whole batch's, for reporting)."""

    def pick(values: list) -> list:
        return [values[i] for i in rows] if values else values

    return replace(
        batch,
        prompts=pick(batch.prompts),
        completions=pick(batch.completions),
        rewards=pick(batch.rewards),
        group_ids=pick(batch.group_ids),
        policy_versions=pick(batch.policy_versions),
        token_ids=pick(batch.token_ids),
        logprobs=pick(batch.logprobs),
    )


def _sleep_unless(should_stop: Callable[[], bool], seconds: float) -> None:
    """Sleep, but wake within a tenth of a second of a stop request."""
    deadline = time.monotonic() + seconds
    while not should_stop() and time.monotonic() < deadline:
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))


def _short(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.3g}" for k, v in list(metrics.items())[:12])
