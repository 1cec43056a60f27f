"""Command-line commands of verifarm.sandbox: build the image, show the backends, check HumanEval."""

import os
import time
from concurrent.futures import ThreadPoolExecutor

import typer
from rich.console import Console
from rich.table import Table

from verifarm.sandbox.cgroup import Cgroup
from verifarm.sandbox.harness import check_python
from verifarm.sandbox.humaneval import broken_solution, load_problems, reference_solution
from verifarm.sandbox.image import ensure_image, image_tag
from verifarm.sandbox.selection import BACKEND_NAMES, default_backend_name, probe_backend, resolve_backend_name

app = typer.Typer(no_args_is_help=True, help="sandbox commands")


@app.command("build-image")
def build_image() -> None:
    """Import the local sandbox image for the docker backend (idempotent; instant when it exists)."""
    import docker  # deferred: the docker client library is heavy, and only this command and that backend need it

    try:
        client = docker.from_env()
        client.ping()
    except Exception as error:  # no engine: the docker backend is simply unavailable, auto picks another
        typer.echo(f"docker engine not reachable ({error}); no image built, the docker backend is unavailable")
        return
    tag, built = ensure_image(client)
    typer.echo(f"{'built' if built else 'already present'}: {tag}")


@app.command("info")
def info() -> None:
    """Show which sandbox backends work on this machine and which one is the default."""
    table = Table(title="sandbox backends (strongest first)")
    table.add_column("backend")
    table.add_column("works")
    table.add_column("why not")
    for name in BACKEND_NAMES:
        reason = probe_backend(name)
        table.add_row(name, "yes" if reason is None else "no", reason or "")
    console = Console()
    console.print(table)
    group = Cgroup.create(64 * 1024 * 1024, 8, 1.0)
    if group is not None:
        group.remove()
    console.print(
        f"cgroups for process/bwrap runs (memory, pids, CPU quota): "
        f"{f'cgroup v{group.version}' if group else 'unavailable'}"
    )
    if probe_backend("bwrap") is None:
        kind = (
            "warm pool, agent as root, runs as a reserved uid"
            if os.geteuid() == 0
            else "one sandbox per run (no root: no warm pool)"
        )
        console.print(f"bwrap: {kind}; seccomp filter = Docker's default profile")
    if probe_backend("docker") is None:
        console.print(f"docker image: {image_tag()} (host /usr mounted read-only)")
    console.print(f"default backend: [bold]{default_backend_name()}[/bold]")


@app.command("check-humaneval")
def check_humaneval(
    limit: int = typer.Option(20, "--limit", "-n", help="how many problems, from the start of HumanEval"),
    backend: str = typer.Option("auto", "--backend", "-b", help="docker, bwrap, process or auto"),
    mutate: bool = typer.Option(False, "--mutate", help="also run a broken variant (returns None) of each"),
) -> None:
    """Run HumanEval reference solutions through the sandbox and print the verdicts."""
    if limit < 1:
        raise typer.BadParameter("--limit must be at least 1")
    chosen = resolve_backend_name(backend)
    problems = load_problems()[:limit]
    cases = [(problem, reference_solution(problem), True) for problem in problems]
    if mutate:
        cases += [(problem, broken_solution(problem), False) for problem in problems]
    console = Console()
    console.print(f"sandbox backend: [bold]{chosen}[/bold]")
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(
            pool.map(
                lambda case: check_python(
                    case[1], case[0]["test"], case[0]["entry_point"], backend=chosen, prompt=case[0]["prompt"]
                ),
                cases,
            )
        )
    elapsed = time.monotonic() - started
    table = Table(title=f"HumanEval through the {chosen} sandbox")
    for column in ("task", "solution", "verdict", "status", "wall s", "reason"):
        table.add_column(column)
    correct = 0
    for (problem, _, expect_pass), outcome in zip(cases, outcomes):
        right = outcome.passed == expect_pass and not outcome.infra_error
        correct += right
        verdict = "PASS" if outcome.passed else ("INFRA" if outcome.infra_error else "FAIL")
        style = "green" if right else "red"
        table.add_row(
            problem["task_id"],
            "reference" if expect_pass else "broken",
            f"[{style}]{verdict}[/{style}]",
            outcome.result.status.value,
            f"{outcome.result.wall_seconds:.2f}",
            outcome.reason[:60],
        )
    console.print(table)
    console.print(f"{correct}/{len(cases)} verdicts as expected in {elapsed:.1f}s on backend {chosen}")
    if chosen == "process":
        console.print("[yellow]warning: the process backend does not isolate programs (development only)[/yellow]")
    if correct != len(cases):
        raise typer.Exit(1)
