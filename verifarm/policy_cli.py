"""`verifarm policy ...`: the checkpoint registry's commands (torch and transformers load inside the commands).

They compose several parts, so they live with the CLI: `init` pre-trains on the trainer's built-in corpus, `ls`
shows the evaluations the trainer stored in the rollout store, `drafter` distills on env prompts.

`verifarm policy init` publishes a first version (briefly pre-trained on the built-in corpus of worked
arithmetic, so that a first campaign passes something), `ls` lists versions with their checksums, drafters and any
evaluation metrics the trainer recorded, `verify` re-hashes every version and fails on a corrupt one, `drafter`
distills and publishes the drafter of a version for speculative sampling.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from verifarm.cli_errors import BadInput, Failure
from verifarm.envs.catalog import get_family
from verifarm.policy.asgi import PortUnavailable, bind_socket, serve_forever
from verifarm.policy.cli import RootOption, complete_policy_versions, registry_at
from verifarm.policy.remote_registry import registry_app
from verifarm.rollout.store import RolloutStore
from verifarm.settings import load_settings
from verifarm.terminal import ProgressReporter
from verifarm.trainer.corpus import CorpusConfig, build_corpus
from verifarm.trainer.evaluate import latest_evaluations

if TYPE_CHECKING:  # transformers loads only in the commands that use it
    from transformers import PreTrainedModel

app = typer.Typer(no_args_is_help=True, help="policy commands")

# The built-in pre-training of `policy init`: worked additions of up to 3 digits (the gold solutions the trainer's
# corpus also holds), enough steps that the tiny policy starts to add (examples/campaign.yaml then passes some of
# its additions), and a wall-time cap so that a busy machine stops early instead of running long.
BUILTIN_MAX_DIGITS = 3
BUILTIN_DOCUMENTS = 4000
DEFAULT_PRETRAIN_STEPS = 300
DEFAULT_PRETRAIN_SECONDS = 600.0


def _bad_input(message: str) -> NoReturn:
    raise BadInput(message)


def _read_corpus(path: Path) -> list[str]:
    """Documents from a JSONL file of {"text": ...} objects or a plain text file (one per blank-line block)."""
    if not path.is_file():
        raise typer.BadParameter(f"{path} is not a file", param_hint="'--corpus'")
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise typer.BadParameter(
            f"{path} is not UTF-8 text ({error.reason} at byte {error.start})", param_hint="'--corpus'"
        ) from None
    if path.suffix == ".jsonl":
        texts = []
        for number, line in enumerate(raw.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                texts.append(str(json.loads(line)["text"]))
            except (ValueError, KeyError, TypeError) as error:
                raise typer.BadParameter(
                    f"{path}:{number}: expected a JSON object with a 'text' field ({error})"
                ) from error
        return texts
    return [block.strip("\n") + "\n" for block in raw.split("\n\n") if block.strip()]


def _builtin_corpus() -> list[str]:
    return list(
        build_corpus(
            CorpusConfig(arithmetic_max_digits=BUILTIN_MAX_DIGITS, arithmetic_documents=BUILTIN_DOCUMENTS)
        ).train
    )


@app.command()
def init(
    preset: str = typer.Option("tiny", help="model size preset (see verifarm.policy.model.PRESETS)"),
    position: str = typer.Option(
        "rope", help="position scheme: rope, nope (no positional signal) or coupled (digits share ids by place)"
    ),
    seed: int = typer.Option(0, help="seed of the random initialisation and of pre-training"),
    random_weights: bool = typer.Option(False, "--random", help="publish the random initialisation, untrained"),
    from_pretrained: Path | None = typer.Option(
        None, help="publish an existing Hugging Face causal-LM folder (weights + tokenizer) instead of a preset"
    ),
    corpus: Path | None = typer.Option(
        None,
        help='pre-train on this corpus instead of the built-in worked arithmetic: .jsonl of {"text": ...} '
        "or text blocks split by blank lines",
    ),
    pretrain_steps: int = typer.Option(DEFAULT_PRETRAIN_STEPS, min=1, help="optimizer steps of the pre-training"),
    pretrain_seconds: float = typer.Option(
        DEFAULT_PRETRAIN_SECONDS, min=0.1, help="wall-time cap of the pre-training (it stops at whichever comes first)"
    ),
    learning_rate: float = typer.Option(3e-3, min=0.0, help="peak learning rate of the pre-training"),
    batch_size: int = typer.Option(32, min=1, help="documents per step of the pre-training"),
    root: Path | None = RootOption,
) -> None:
    """Publish the first policy version: a preset model pre-trained briefly (unless --random), or an existing one.

    Progress (step, loss, tokens/s) is a bar on a terminal and a plain line every few seconds otherwise.
    """
    registry = registry_at(root)
    existing = registry.published_versions()
    if existing:
        raise Failure(
            f"{registry.root} already holds versions {existing[0]}..{existing[-1]}; init only starts an "
            "empty registry (pass --root for a new one)"
        )
    if from_pretrained is not None and (preset != "tiny" or corpus is not None or random_weights or position != "rope"):
        _bad_input(
            "--from-pretrained publishes the checkpoint as it is: drop --preset, --position, --corpus and --random"
        )
    if position not in ("rope", "nope", "coupled"):
        _bad_input(f"unknown position scheme {position!r}; choose rope, nope or coupled")
    if random_weights and corpus is not None:
        _bad_input("--random publishes untrained weights: drop --corpus, or drop --random to pre-train on it")
    if from_pretrained is not None and not (from_pretrained / "config.json").is_file():
        _bad_input(f"{from_pretrained} is not a Hugging Face model folder (no config.json)")
    texts = _read_corpus(corpus) if corpus is not None else None
    if texts is not None and not texts:
        _bad_input(f"{corpus} holds no documents")

    metadata: dict = {"parent_version": None, "seed": seed}
    model: PreTrainedModel
    if from_pretrained is not None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        # deferred: registers the nope rotary type; loads torch and transformers, as the caller is about to
        import verifarm.policy.positions  # noqa: F401

        model = AutoModelForCausalLM.from_pretrained(from_pretrained)
        tokenizer = AutoTokenizer.from_pretrained(from_pretrained)
        metadata.update(source="imported", imported_from=str(from_pretrained.resolve()))
    else:
        # deferred: imports torch
        from verifarm.policy.model import PRESETS, build_model

        # deferred: imports transformers
        from verifarm.policy.tokenizer import build_tokenizer

        if preset not in PRESETS:
            _bad_input(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        tokenizer = build_tokenizer()
        model = build_model(preset, len(tokenizer), seed=seed, position_scheme=position)
        metadata.update(source="random-init", preset=preset, position_scheme=position)
        if not random_weights:
            documents = texts if texts is not None else _builtin_corpus()
            metrics = _pretrain(
                model, tokenizer, documents, seed, pretrain_steps, pretrain_seconds, learning_rate, batch_size
            )
            typer.echo(
                f"pre-trained {metrics['steps']:.0f} steps in {metrics['seconds']:.0f}s, "
                f"loss {metrics['final_loss']:.4f}",
                err=True,
            )
            source = (
                str(corpus.resolve())
                if corpus is not None
                else (f"built-in: worked additions of 1-{BUILTIN_MAX_DIGITS} digits")
            )
            metadata.update(
                source="pretrained",
                corpus=source,
                documents=len(documents),
                training_step=int(metrics["steps"]),
                pretrain=metrics,
            )
    version = registry.publish(model, tokenizer, metadata)
    typer.echo(f"published v{version} at {registry.path(version)}")


def _pretrain(
    model, tokenizer, texts: list[str], seed: int, steps: int, seconds: float, learning_rate: float, batch_size: int
) -> dict[str, float]:
    # deferred: torch loads only in the commands that train
    import torch

    # deferred: imports torch
    from verifarm.policy.training import TrainConfig, pretrain

    config = TrainConfig(
        steps=steps, max_seconds=seconds, batch_size=batch_size, learning_rate=learning_rate, seed=seed, max_length=192
    )
    torch.set_num_threads(min(2, torch.get_num_threads()))
    with ProgressReporter("pre-training", total=steps, fields=("loss", "tokens/s")) as progress:

        def on_step(done: int, values: dict[str, float]) -> None:
            progress.update(done, loss=f"{values['loss']:.4f}", **{"tokens/s": f"{values['tokens_per_second']:,.0f}"})

        return pretrain(model, tokenizer, texts, config, on_step=on_step)


def _evaluation_metrics() -> dict[int, dict[str, float]]:
    """Latest metrics per version from the rollout store, if one is configured or exists on disk."""
    store_url = load_settings().existing_store_url()
    if store_url is None:
        return {}
    with RolloutStore(store_url) as store:
        return latest_evaluations(store)


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
def list_versions(
    root: Path | None = RootOption,
    as_json: bool = typer.Option(False, "--json", help="one JSON array of the versions"),
) -> None:
    """List versions, newest last: checksum status, metadata and evaluation metrics.

    `--json` fields per version: version, checksum (content SHA-256 over its files, or null), ok, problems (why it is
    corrupt), created_at, parent_version, training_step, source, metrics (name -> value, from the store).
    """
    registry = registry_at(root)
    versions = registry.versions()
    evaluations = _evaluation_metrics() if versions else {}
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "version": info.version,
                        "checksum": info.checksum,
                        "ok": info.ok,
                        "problems": list(info.problems),
                        "created_at": info.created_at,
                        "parent_version": info.metadata.get("parent_version"),
                        "training_step": info.metadata.get("training_step", info.metadata.get("trainer_step")),
                        "source": info.metadata.get("source"),
                        "metrics": evaluations.get(info.version, {}),
                    }
                    for info in versions
                ]
            )
        )
        return
    if not versions:
        typer.echo(f"no policy versions in {registry.root}")
        return
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
    typer.echo(f"newest good version: {f'v{latest}' if latest else 'none'}")


@app.command("serve-registry")
def serve_registry(
    host: str = typer.Option("127.0.0.1", help="address to bind (the trainer host's address on the farm network)"),
    port: int = typer.Option(8270, help="port to bind"),
    root: Path | None = RootOption,
) -> None:
    """Serve this registry read-only over HTTP to workers that share no disk with it (VERIFARM_REGISTRY_URL)."""
    registry = registry_at(root)
    if not registry.root.is_dir():
        _bad_input(f"no checkpoint registry at {registry.root}: publish a version first (verifarm policy init)")
    try:
        sock = bind_socket(host, port)
    except (PortUnavailable, ValueError) as error:
        _bad_input(str(error))
    bound_host, bound_port = sock.getsockname()[:2]
    typer.echo(f"serving the registry {registry.root} read-only on http://{bound_host}:{bound_port}")
    serve_forever(registry_app(registry), sock)


@app.command()
def verify(
    version: int | None = typer.Option(
        None, min=1, help="verify only this version", autocompletion=complete_policy_versions
    ),
    root: Path | None = RootOption,
) -> None:
    """Re-hash checkpoints against their manifests; exit 1 if any is corrupt."""
    registry = registry_at(root)
    numbers = [version] if version is not None else registry.published_versions()
    if not numbers:
        typer.echo(f"no policy versions in {registry.root}")
        return
    corrupt = 0
    for number in numbers:
        try:
            info = registry.inspect(number)
        except KeyError as error:
            _bad_input(f"{str(error).strip(chr(34) + chr(39))}: `verifarm policy ls` lists the versions")
        if info.ok:
            typer.echo(f"v{number}: ok ({info.checksum})")
        else:
            corrupt += 1
            typer.echo(f"v{number}: CORRUPT: {'; '.join(info.problems)}")
    if corrupt:
        raise typer.Exit(1)


@app.command()
def drafter(
    version: int | None = typer.Option(None, help="policy version to distill from (default: the newest good one)"),
    env: list[str] = typer.Option(["verifarm/Addition-v0"], help="env ids whose task prompts the drafter learns on"),
    difficulty: int = typer.Option(3, help="task difficulty of the prompts"),
    prompts: int = typer.Option(256, min=1, help="training prompts per env"),
    heldout: int = typer.Option(64, min=1, help="held-out prompts per env for the acceptance rate"),
    steps: int = typer.Option(300, help="distillation steps"),
    max_new_tokens: int = typer.Option(64, help="tokens per policy completion (training data and measurement)"),
    layers: int = typer.Option(1, help="drafter layers"),
    draft_tokens: int = typer.Option(4, help="draft tokens per round when measuring the acceptance rate"),
    seed: int = typer.Option(0),
    root: Path | None = RootOption,
) -> None:
    """Distill the drafter of a policy version on its own completions and publish it beside the version."""
    # deferred: torch loads only in the commands that train
    import torch

    # deferred: imports torch
    from verifarm.policy.drafter import DrafterConfig, refresh_drafter

    # deferred: imports torch
    from verifarm.policy.training import TrainConfig

    registry = registry_at(root)
    number = version if version is not None else registry.latest_version()
    if number is None:
        _bad_input(f"no good policy version in {registry.root}: publish one first (`verifarm policy init`)")
    try:
        info = registry.inspect(number)
    except KeyError as error:
        _bad_input(f"{str(error).strip(chr(34) + chr(39))}: `verifarm policy ls` lists the versions")
    if not info.ok:
        _bad_input(f"policy v{number} is corrupt ({'; '.join(info.problems)}): distill from a good version")
    try:
        config = DrafterConfig(
            num_layers=layers,
            max_new_tokens=max_new_tokens,
            draft_tokens=draft_tokens,
            seed=seed,
            train=TrainConfig(steps=steps, batch_size=32, learning_rate=3e-3, warmup_steps=10, seed=seed),
        )
        families = [get_family(env_id) for env_id in env]
    except (ValueError, KeyError) as error:
        raise typer.BadParameter(str(error).strip("'\"")) from error
    for env_id, family in zip(env, families):
        if not family.min_difficulty <= difficulty <= family.max_difficulty:
            _bad_input(
                f"--difficulty {difficulty} is outside {env_id}'s range {family.min_difficulty}-{family.max_difficulty}"
            )
    # Held-out prompts come from seeds the training prompts never use.
    train_prompts = [f.generate(seed + i, difficulty).prompt for f in families for i in range(prompts)]
    heldout_prompts = [f.generate(seed + 10_000_000 + i, difficulty).prompt for f in families for i in range(heldout)]
    torch.set_num_threads(min(2, torch.get_num_threads()))
    metadata = refresh_drafter(registry, number, train_prompts, heldout_prompts, config)
    typer.echo(
        f"published the drafter of v{number}: acceptance {metadata['acceptance_rate']:.1%} on "
        f"{len(heldout_prompts)} held-out prompts (k={draft_tokens}), distill KL {metadata['distill_kl']:.4f}"
    )
