"""Cross-language augmentation: verified translations per language per minute of farm time, and what the
differential check costs.

A source campaign of verified Python solutions (Program-v0, language=python, the reference policy) is rolled out
into a temporary SQLite store; then one translate campaign per target language carries every source into that
language with the reference policy (the problems' references as translations), in this process, one batch at a
time as one worker would. Farm time is the wall time of the translate batches (sampling, verification, store
writes). The differential check's cost is its share of each record's verify time (the verdict's own
``differential_seconds``); it includes computing the source's outputs once per source and target.

    python benchmarks/augmentation.py                 # 10 sources
    python benchmarks/augmentation.py --sources 4     # quicker
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from verifarm.envs.catalog import FamilyCache
from verifarm.rollout.campaign import parse_spec
from verifarm.rollout.orchestration import roll_out_batches, store_campaign
from verifarm.rollout.reference_policy import ReferencePolicy
from verifarm.rollout.store import RecordFilter, RolloutStore
from verifarm.rollout.translate import translation_spec
from verifarm.sandbox import default_backend_name
from verifarm.sandbox.languages import LANGUAGE_NAMES


def _roll_out(store: RolloutStore, campaign_id: str, spec) -> float:
    store_campaign(store, spec, campaign_id)
    families, policy = FamilyCache(), ReferencePolicy()
    started = time.perf_counter()
    roll_out_batches(store, campaign_id, spec, policy, families)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=10, help="Python source tasks to translate")
    parser.add_argument("--targets", default=",".join(name for name in LANGUAGE_NAMES if name != "python"))
    args = parser.parse_args()
    print(f"sandbox backend: {default_backend_name()}; {args.sources} Python sources")
    with tempfile.TemporaryDirectory() as folder, RolloutStore(f"sqlite:///{Path(folder) / 'r.db'}") as store:
        source = parse_spec(
            {
                "envs": [{"env_id": "verifarm/Program-v0", "options": {"language": "python"}}],
                "tasks": args.sources,
                "samples_per_task": 1,
                "policy": "reference",
                "seed": 1,
            }
        )
        seconds = _roll_out(store, "source", source)
        print(f"source campaign: {args.sources} tasks in {seconds:.1f}s")
        print(f"{'target':<12} {'verified':>8} {'of':>4} {'farm s':>8} {'per farm-min':>13} {'differential':>13}")
        for target in args.targets.split(","):
            spec = translation_spec(
                store,
                {"source_campaign": "source", "target_languages": [target]},
                policy="reference",
                samples_per_task=1,
                batch_size=4,
                name=f"to-{target}",
            )
            seconds = _roll_out(store, f"to-{target}", spec)
            records = store.query(RecordFilter(campaign_id=f"to-{target}"))
            verified = sum(record.passed for record in records)
            verify_seconds = sum(record.verify_seconds for record in records)
            differential = sum(record.details.get("differential_seconds", 0.0) for record in records)
            print(
                f"{target:<12} {verified:>8} {len(records):>4} {seconds:>8.1f} {60 * verified / seconds:>13.1f} "
                f"{100 * differential / verify_seconds:>12.1f}%",
                flush=True,
            )


if __name__ == "__main__":
    main()
