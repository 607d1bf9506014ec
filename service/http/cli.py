"""The command line: `flask --app wsgi init-db | downgrade-db | create-key | train | demo | demo-keys`."""
from __future__ import annotations

import contextlib
import functools
import json
import sys
from typing import Any, Callable, TypeVar

import click
from flask import Flask
from flask.cli import with_appcontext

from recommender.models import ALGORITHMS, DEFAULT_ALGORITHM
from recommender.tuning import METRICS as TUNING_METRICS
from recommender.tuning import TuneSettings
from service.errors import ServiceError
from service.http.endpoint import services
from service.usecases import model_retention
from service.usecases import model_training as training
from service.usecases import training_run
from service.usecases.keys import ROLES, create_key, renew_demo_keys


F = TypeVar("F", bound=Callable[..., Any])


class _Failed(click.ClickException):
    """A command stopped by the domain (the database down, a bad value): one line on stderr."""

    def show(self, file: Any = None) -> None:
        """Print `stickyloop: <message>`, as the entry points do for a bad environment variable."""
        click.echo(f"stickyloop: {self.message}", err=True)


def _one_line(command: F) -> F:
    """Report a domain error in one line instead of a traceback."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ServiceError as exc:
            raise _Failed(exc.message) from None

    return run  # type: ignore[return-value]


def _needs_schema(command: F) -> F:
    """Refuse in one line, before anything runs, while the database's schema is missing or older than this release's."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        problem = services().schema_problem()
        if problem is not None:
            raise _Failed(problem)
        return command(*args, **kwargs)

    return run  # type: ignore[return-value]


def _pairs(option: str, values: tuple[str, ...]) -> dict[str, Any]:
    """KEY=JSON_VALUE pairs as a dict (a value that is not JSON stays a string)."""
    parsed: dict[str, Any] = {}
    for pair in values:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=option)
        if key in parsed:  # last-wins would drop the first silently; the API refuses a repeated name too
            raise click.BadParameter(f"{key!r} is given twice", param_hint=option)
        try:
            parsed[key] = json.loads(value)
        except RecursionError:
            raise click.BadParameter(f"the value of {key!r} is nested too deeply", param_hint=option) from None
        except ValueError:
            parsed[key] = value
    return parsed


@click.command("init-db")
@with_appcontext
@_one_line
def init_db() -> None:
    """Create or upgrade the schema (safe to run again, and from several processes)."""
    before, after = services().upgrade_schema()
    click.echo(f"schema at revision {after}" + (" (already current)" if before == after else f" (was {before or 'empty'})"))


@click.command("downgrade-db")
@click.argument("revision")
@click.option("--yes", is_flag=True, help="Go ahead: what later revisions hold is lost (docs/operations.md says what, per revision).")
@with_appcontext
@_one_line
def downgrade_db(revision: str, yes: bool) -> None:
    """Take the schema back to REVISION (e.g. 0018) for an older release; stop this release's servers first."""
    if not yes:
        raise click.UsageError("a downgrade drops what later revisions added (docs/operations.md, Migrations, says what); run again with --yes")
    before, after = services().downgrade_schema(revision)
    click.echo(f"schema at revision {after}" + (f" (was {before})" if before != after else " (already there)"))


@click.command("create-key")
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--name", default=None, help="A label to recognise the key by.")
@with_appcontext
@_one_line
@_needs_schema
def create_key_cmd(role: str, name: str | None) -> None:
    """Create an API key; the key itself is the last line printed."""
    record, raw = create_key(services().db, role, name)
    click.echo(f"created {record.role} key {record.id} ({record.name}); store it now, it is not shown again:")
    click.echo(raw)


@click.command("demo-keys")
@click.option("--base-url", default="http://127.0.0.1:8000", show_default=True)
@with_appcontext
@_one_line
@_needs_schema
def demo_keys_cmd(base_url: str) -> None:
    """Create one key per role and print them as shell exports, with a first request to try.

    Keys are stored hashed, so they cannot be shown again: each run makes new ones and revokes
    the demo keys it made before, so that running it again does not pile up live keys.
    """
    svc = services()
    keys, revoked = renew_demo_keys(svc.db, svc.keys)
    if revoked:
        click.echo(f"revoked the {revoked} demo keys made before", err=True)
    click.echo("\nAPI keys for this demo (shown once; more with `.venv/bin/flask --app wsgi create-key --role ROLE`):")
    for role, raw in keys.items():
        click.echo(f"  export {role.upper()}_KEY={raw}")
    click.echo("\nTry:")
    click.echo(f"  curl -H \"Authorization: Bearer $STOREFRONT_KEY\" {base_url}/v1/users/user-1/recommendations")
    click.echo(f"  open {base_url}/ui/docs for the interactive API reference, signed in with any key above ({base_url}/docs needs none;"
               " docs/http-reference.md has every endpoint)")
    click.echo(f"  open {base_url}/ui for the console: sign in with the EDITOR_KEY to design and run experiments and train models,"
               " the ANALYST_KEY to read results, or the ADMIN_KEY for both\n")


@click.command("train")
@click.option("--algorithm", default=DEFAULT_ALGORITHM, show_default=True, type=click.Choice(sorted(ALGORITHMS)))
@click.option("--param", "params", multiple=True, help="A model parameter, KEY=JSON_VALUE, e.g. --param factors=32")
@click.option("--matrix", "matrix", multiple=True, help="A matrix setting, e.g. --matrix half_life_days=30")
@click.option("--evaluation", "evaluation", multiple=True, help="An evaluation setting, e.g. --evaluation test_fraction=0.1")
@click.option("--activate/--no-activate", default=True, show_default=True)
@click.option("--tune-trials", type=click.IntRange(1), default=None, help="Search the parameters first, with this many trials.")
@click.option("--tune-metric", type=click.Choice(TUNING_METRICS), default=TuneSettings.metric, show_default=True)
@click.option("--tune-seed", type=int, default=TuneSettings.seed, show_default=True)
@click.option("--tune-space", "space", multiple=True, help='A range to search, NAME=JSON, e.g. --tune-space \'factors=[16, 128]\'')
@click.option("--unless-active", is_flag=True, help="Do nothing when a model is already served (make run uses it, so a second run keeps your choice).")
@with_appcontext
@_one_line
@_needs_schema
def train_cmd(
    algorithm: str, params: tuple[str, ...], matrix: tuple[str, ...], evaluation: tuple[str, ...], activate: bool,
    tune_trials: int | None, tune_metric: str, tune_seed: int, space: tuple[str, ...], unless_active: bool,
) -> None:
    """Train a model from the stored events (tuning it first if asked), activate it, and print its version and metrics."""
    if not tune_trials:  # settings of a search that was not asked for had been dropped without a word
        context = click.get_current_context()
        for name, flag in (("space", "--tune-space"), ("tune_metric", "--tune-metric"), ("tune_seed", "--tune-seed")):
            if context.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT, None):
                raise click.UsageError(f"{flag} sets the parameter search, which needs --tune-trials")
    svc = services()
    serving = training.active_version(svc.db)
    if unless_active and serving is not None:
        click.echo(f"model {serving} is already served; not training another (without --unless-active, train trains anew)")
        return
    tune = {"trials": tune_trials, "metric": tune_metric, "seed": tune_seed, "space": _pairs("--tune-space", space)} if tune_trials else None
    record = training.request_training(
        svc.db, svc.config, algorithm, _pairs("--param", params), activate, _pairs("--matrix", matrix), _pairs("--evaluation", evaluation), tune
    )
    click.echo(f"training {record.version} ({algorithm})", err=True)
    bar = click.progressbar(length=tune_trials, label="tuning", file=sys.stderr) if tune_trials else None
    try:
        with bar if bar is not None else contextlib.nullcontext():
            result = training_run.run_training(
                svc.db, svc.config, record.version, progress=lambda m: click.echo(f"  {m}", err=True), show_progress=True,
                on_trial=(lambda _done, _total: bar.update(1)) if bar is not None else None,
            )
    except KeyboardInterrupt:
        # Otherwise the version would read `training` until its heartbeat went stale, half a minute on.
        try:
            training.cancel(svc.db, record.version)
        except ServiceError:  # it had finished already: say how
            now = training.get_version(svc.db, svc.config, record.version)
            raise click.ClickException(f"training {record.version} interrupted after it ended: it is {now.status}") from None
        raise click.ClickException(f"training {record.version} interrupted: cancelled, nothing activated") from None
    if result.status == "cancelled":
        raise click.ClickException(f"training {result.version} was cancelled (through the API or the console); nothing was activated")
    if result.status != "ready":
        raise click.ClickException(f"training {result.version} {result.status}: {result.error}")
    click.echo(f"version: {result.version}")
    click.echo(f"active: {'yes' if training.active_version(svc.db) == result.version else 'no'}")
    click.echo(f"training seconds: {result.training_seconds:.2f}")
    click.echo(f"data: {json.dumps({k: v for k, v in result.data.items() if k != 'timings'})}")
    if result.tuning is not None:
        click.echo(f"params: {json.dumps(result.params, sort_keys=True)}")
        click.echo(f"tuning: {len(result.tuning)} trials, best {tune_metric} {max(t['metric'] for t in result.tuning):.4f}")
    for name, value in sorted(result.metrics.items()):
        click.echo(f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}")


def _size(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n / 2**10:,.1f} KiB"


@click.command("prune-models")
@click.option("--keep", default=3, show_default=True, type=click.IntRange(0), help="The newest ready versions kept to roll back to, beside the active one.")
@click.option("--yes", is_flag=True, help="Delete; without it, only say what would go.")
@with_appcontext
@_one_line
def prune_models(keep: int, yes: bool) -> None:
    """Delete model versions nothing needs, with their artifacts: not the active one, not the KEEP newest ready
    ones, not a run still training, not one an experiment that has not stopped names. Run it on each host:
    its model folder's copies of versions no longer stored go too."""
    svc = services()
    report = model_retention.prune_models(svc.db, svc.config.model_dir, keep, svc.config.training_stale_seconds, apply=yes)
    verb = "deleted" if yes else "would delete"
    named = ", ".join(report.versions[:20]) + (f" and {len(report.versions) - 20} more" if len(report.versions) > 20 else "")
    click.echo(f"{verb} {len(report.versions)} model versions ({_size(report.artifact_bytes)} of artifacts in the database)" + (f": {named}" if named else ""))
    click.echo(f"{'removed' if yes else 'would remove'} {len(report.files)} files ({_size(report.file_bytes)}) from {svc.config.model_dir}")
    if not yes and (report.versions or report.files):
        click.echo("run again with --yes to delete them")


@click.command("demo")
# Bounds that keep the generator within memory on a laptop (a bad number gave a traceback, or asked for terabytes).
@click.option("--users", default=1500, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--items", default=1200, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--events", default=60000, show_default=True, type=click.IntRange(1, 5_000_000))
@with_appcontext
@_one_line
@_needs_schema
def demo_cmd(users: int, items: int, events: int) -> None:
    """Load a synthetic demo catalogue, events and five running experiments (once; a second run changes nothing)."""
    from service.usecases.demo import load_demo
    from service.usecases.demo_experiments import load_demo_experiments

    for line in load_demo(services(), users, items, events):
        click.echo(line)
    for line in load_demo_experiments(services(), users):
        click.echo(line)


COMMANDS = (init_db, downgrade_db, create_key_cmd, demo_keys_cmd, train_cmd, prune_models, demo_cmd)


def register_commands(app: Flask) -> None:
    """Attach the commands to the app's CLI."""
    for command in COMMANDS:
        app.cli.add_command(command)
