"""Command-line commands of verifarm.policy (heavy imports stay inside the commands).

`verifarm policy init` publishes a first version, `ls` lists versions with their checksums, drafters and any
evaluation metrics the trainer recorded, `verify` re-hashes every version and fails on a corrupt one,
`drafter` distills and publishes the drafter of a version for speculative sampling.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True, help="policy commands")

RootOption = typer.Option(None, "--root", help="checkpoint registry folder (default VERIFARM_CHECKPOINT_DIR or "
                                               "VERIFARM_HOME/checkpoints)")


def _registry(root: Optional[Path]):
    from verifarm.policy.registry import CheckpointRegistry
    from verifarm.settings import load_settings

    return CheckpointRegistry(root or load_settings().checkpoints)


def _read_corpus(path: Path) -> list[str]:
    """Documents from a JSONL file of {"text": ...} objects or a plain text file (one per blank-line block)."""
    raw = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        texts = []
        for number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                texts.append(str(json.loads(line)["text"]))
            except (ValueError, KeyError, TypeError) as error:
                raise typer.BadParameter(f"{path}:{number}: expected a JSON object with a 'text' field ({error})")
        return texts
    return [block.strip("\n") + "\n" for block in raw.split("\n\n") if block.strip()]


@app.command()
def init(
    preset: str = typer.Option("tiny", help="model size preset (see verifarm.policy.model.PRESETS)"),
    seed: int = typer.Option(0, help="seed of the random initialisation and of pre-training"),
    from_pretrained: Optional[Path] = typer.Option(
        None, help="publish an existing Hugging Face causal-LM folder (weights + tokenizer) instead of a preset"
    ),
    corpus: Optional[Path] = typer.Option(
        None, help="pre-train briefly on this corpus first: .jsonl of {\"text\": ...} or text blocks split by blank lines"
    ),
    pretrain_seconds: float = typer.Option(60.0, help="wall-time budget of the pre-training (with --corpus)"),
    learning_rate: float = typer.Option(3e-3, help="peak learning rate of the pre-training (with --corpus)"),
    batch_size: int = typer.Option(32, help="documents per step of the pre-training (with --corpus)"),
    root: Optional[Path] = RootOption,
) -> None:
    """Publish the first policy version: a fresh preset model (optionally pre-trained) or an existing checkpoint."""
    registry = _registry(root)
    existing = registry.published_versions()
    if existing:
        typer.echo(f"{registry.root} already holds versions {existing[0]}..{existing[-1]}; "
                   "init only starts an empty registry (pass --root for a new one)", err=True)
        raise typer.Exit(2)

    import torch

    metadata: dict = {"parent_version": None, "seed": seed}
    if from_pretrained is not None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if preset != "tiny" or corpus is not None:
            raise typer.BadParameter("--from-pretrained publishes the checkpoint as it is: drop --preset/--corpus")
        model = AutoModelForCausalLM.from_pretrained(from_pretrained)
        tokenizer = AutoTokenizer.from_pretrained(from_pretrained)
        metadata.update(source="imported", imported_from=str(from_pretrained.resolve()))
    else:
        from verifarm.policy.model import PRESETS, build_model
        from verifarm.policy.tokenizer import build_tokenizer

        if preset not in PRESETS:
            raise typer.BadParameter(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        tokenizer = build_tokenizer()
        model = build_model(preset, len(tokenizer), seed=seed)
        metadata.update(source="random-init", preset=preset)
        if corpus is not None:
            from verifarm.policy.training import TrainConfig, pretrain

            texts = _read_corpus(corpus)
            if not texts:
                raise typer.BadParameter(f"{corpus} holds no documents")
            config = TrainConfig(steps=1_000_000, max_seconds=pretrain_seconds, batch_size=batch_size,
                                 learning_rate=learning_rate, seed=seed)
            torch.set_num_threads(min(2, torch.get_num_threads()))
            metrics = pretrain(model, tokenizer, texts, config)
            typer.echo(f"pre-trained {metrics['steps']:.0f} steps in {metrics['seconds']:.0f}s, "
                       f"loss {metrics['final_loss']:.4f}")
            metadata.update(source="pretrained", corpus=str(corpus.resolve()), documents=len(texts),
                            training_step=int(metrics["steps"]), pretrain=metrics)
    version = registry.publish(model, tokenizer, metadata)
    typer.echo(f"published v{version} at {registry.path(version)}")


def _evaluation_metrics() -> dict[int, dict[str, float]]:
    """Latest metrics per version from the rollout store, if one is configured or exists on disk."""
    from verifarm.settings import load_settings

    settings = load_settings()
    local_file = (settings.home / "rollouts.db").resolve()
    if not settings.database_url and not local_file.is_file():
        return {}
    from verifarm.rollout.store import RolloutStore

    by_version: dict[int, dict[str, float]] = {}
    with RolloutStore(settings.store_url) as store:
        for entry in store.metrics():  # oldest step first, so later evaluations overwrite earlier ones
            by_version.setdefault(entry.policy_version, {}).update(entry.metrics)
    return by_version


def _headline(metrics: dict[str, float]) -> str:
    """A short summary: held-out loss and the pass@1 figures, at most four."""
    parts = []
    if "heldout_loss" in metrics:
        parts.append(f"loss {metrics['heldout_loss']:.3f}")
    for name in sorted(k for k in metrics if k.endswith("/pass@1"))[:4]:
        parts.append(f"{name.removesuffix('/pass@1')} {metrics[name]:.0%}")
    return ", ".join(parts) or "-"


def _drafter_cell(registry, version: int) -> str:
    """The drafter that would serve `version` and its held-out acceptance rate; `stale` if an older version's."""
    drafter = registry.drafter_for(version)
    if drafter is None:
        return "-"
    rate = "?" if drafter.acceptance_rate is None else f"{drafter.acceptance_rate:.0%}"
    return f"v{drafter.distilled_from} {rate}" + (" stale" if drafter.stale else "")


@app.command("ls")
def list_versions(root: Optional[Path] = RootOption) -> None:
    """List versions, newest last: checksum status, metadata and evaluation metrics."""
    from rich.console import Console
    from rich.table import Table

    registry = _registry(root)
    versions = registry.versions()
    if not versions:
        typer.echo(f"no policy versions in {registry.root}")
        return
    evaluations = _evaluation_metrics()
    table = Table(title=f"policy versions in {registry.root}")
    columns = ["version", "checksum", "status", "created", "parent", "step", "source", "drafter"]
    if evaluations:
        columns.append("evaluation")
    for column in columns:
        table.add_column(column)
    for info in versions:
        meta = info.metadata
        row = [
            f"v{info.version}",
            (info.checksum or "?")[:12],
            "ok" if info.ok else "[red]CORRUPT[/red]",
            (info.created_at or "?")[:16].replace("T", " "),
            "-" if meta.get("parent_version") is None else f"v{meta['parent_version']}",
            str(meta.get("training_step", meta.get("trainer_step", "-"))),
            str(meta.get("source", "-")),
            _drafter_cell(registry, info.version),
        ]
        if evaluations:
            row.append(_headline(evaluations.get(info.version, {})))
        table.add_row(*row)
    Console().print(table)
    latest = registry.latest_version()
    typer.echo(f"newest good version: {'v%d' % latest if latest else 'none'}")


@app.command()
def verify(
    version: Optional[int] = typer.Option(None, help="verify only this version"),
    root: Optional[Path] = RootOption,
) -> None:
    """Re-hash checkpoints against their manifests; exit 1 if any is corrupt."""
    registry = _registry(root)
    numbers = [version] if version is not None else registry.published_versions()
    if not numbers:
        typer.echo(f"no policy versions in {registry.root}")
        return
    corrupt = 0
    for number in numbers:
        try:
            info = registry.inspect(number)
        except KeyError as error:
            typer.echo(str(error).strip("'\""), err=True)
            raise typer.Exit(2)
        if info.ok:
            typer.echo(f"v{number}: ok ({info.checksum})")
        else:
            corrupt += 1
            typer.echo(f"v{number}: CORRUPT: {'; '.join(info.problems)}")
    if corrupt:
        raise typer.Exit(1)


@app.command()
def drafter(
    version: Optional[int] = typer.Option(None, help="policy version to distill from (default: the newest good one)"),
    env: list[str] = typer.Option(["verifarm/Addition-v0"], help="env ids whose task prompts the drafter learns on"),
    difficulty: int = typer.Option(3, help="task difficulty of the prompts"),
    prompts: int = typer.Option(256, help="training prompts per env"),
    heldout: int = typer.Option(64, help="held-out prompts per env for the acceptance rate"),
    steps: int = typer.Option(300, help="distillation steps"),
    max_new_tokens: int = typer.Option(64, help="tokens per policy completion (training data and measurement)"),
    layers: int = typer.Option(1, help="drafter layers"),
    draft_tokens: int = typer.Option(4, help="draft tokens per round when measuring the acceptance rate"),
    seed: int = typer.Option(0),
    root: Optional[Path] = RootOption,
) -> None:
    """Distill the drafter of a policy version on its own completions and publish it beside the version."""
    import torch

    from verifarm.envs.catalog import get_family
    from verifarm.policy.drafter import DrafterConfig, refresh_drafter
    from verifarm.policy.training import TrainConfig

    registry = _registry(root)
    number = version if version is not None else registry.latest_version()
    if number is None:
        typer.echo(f"no good policy version in {registry.root}; publish one first (verifarm policy init)", err=True)
        raise typer.Exit(2)
    try:
        config = DrafterConfig(num_layers=layers, max_new_tokens=max_new_tokens, draft_tokens=draft_tokens, seed=seed,
                               train=TrainConfig(steps=steps, batch_size=32, learning_rate=3e-3, warmup_steps=10,
                                                 seed=seed))
        families = [get_family(env_id) for env_id in env]
    except (ValueError, KeyError) as error:
        raise typer.BadParameter(str(error).strip("'\""))
    # Held-out prompts come from seeds the training prompts never use.
    train_prompts = [f.generate(seed + i, difficulty).prompt for f in families for i in range(prompts)]
    heldout_prompts = [f.generate(seed + 10_000_000 + i, difficulty).prompt for f in families for i in range(heldout)]
    torch.set_num_threads(min(2, torch.get_num_threads()))
    metadata = refresh_drafter(registry, number, train_prompts, heldout_prompts, config)
    typer.echo(f"published the drafter of v{number}: acceptance {metadata['acceptance_rate']:.1%} on "
               f"{len(heldout_prompts)} held-out prompts (k={draft_tokens}), distill KL {metadata['distill_kl']:.4f}")
