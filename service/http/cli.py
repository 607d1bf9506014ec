"""The command line: `flask --app wsgi init-db | create-key | train | demo | demo-keys`."""
from __future__ import annotations

import json
from typing import Any

import click
from flask import Flask, current_app

from service.errors import Invalid
from service.usecases import model_training as training
from service.usecases.context import Services
from service.usecases.keys import ROLES, create_key


def _services() -> Services:
    return current_app.extensions["stickyloop"]  # type: ignore[no-any-return]


def _pairs(option: str, values: tuple[str, ...]) -> dict[str, Any]:
    """KEY=JSON_VALUE pairs as a dict (a value that is not JSON stays a string)."""
    parsed: dict[str, Any] = {}
    for pair in values:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint=option)
        try:
            parsed[key] = json.loads(value)
        except ValueError:
            parsed[key] = value
    return parsed


def register_commands(app: Flask) -> None:
    """Attach the commands to the app's CLI."""

    @app.cli.command("init-db")
    def init_db() -> None:
        """Create or upgrade the schema (safe to run again, and from several processes)."""
        before, after = _services().upgrade_schema()
        click.echo(f"schema at revision {after}" + (f" (was {before})" if before != after else " (already current)"))

    @app.cli.command("create-key")
    @click.option("--role", type=click.Choice(ROLES), required=True)
    @click.option("--name", default=None, help="A label to recognise the key by.")
    def create_key_cmd(role: str, name: str | None) -> None:
        """Create an API key; the key itself is the last line printed."""
        record, raw = create_key(_services().db, role, name)
        click.echo(f"created {record.role} key {record.id} ({record.name}); store it now, it is not shown again:")
        click.echo(raw)

    @app.cli.command("demo-keys")
    @click.option("--base-url", default="http://127.0.0.1:8000", show_default=True)
    def demo_keys_cmd(base_url: str) -> None:
        """Create one key per role and print them as shell exports, with a first request to try."""
        keys = {role: create_key(_services().db, role, f"demo {role}")[1] for role in ROLES}
        click.echo("\nAPI keys for this demo (shown once; more with `flask --app wsgi create-key --role ROLE`):")
        for role, raw in keys.items():
            click.echo(f"  export {role.upper()}_KEY={raw}")
        click.echo("\nTry:")
        click.echo(f"  curl -H \"Authorization: Bearer $STOREFRONT_KEY\" {base_url}/v1/users/user-1/recommendations")
        click.echo(f"  open {base_url}/docs for every endpoint\n")

    @app.cli.command("train")
    @click.option("--algorithm", default="als", show_default=True, type=click.Choice(sorted(training.ALGORITHMS)))
    @click.option("--param", "params", multiple=True, help="A model parameter, KEY=JSON_VALUE, e.g. --param factors=32")
    @click.option("--matrix", "matrix", multiple=True, help="A matrix setting, e.g. --matrix half_life_days=30")
    @click.option("--evaluation", "evaluation", multiple=True, help="An evaluation setting, e.g. --evaluation test_fraction=0.1")
    @click.option("--activate/--no-activate", default=True, show_default=True)
    def train_cmd(algorithm: str, params: tuple[str, ...], matrix: tuple[str, ...], evaluation: tuple[str, ...], activate: bool) -> None:
        """Train a model from the stored events, activate it, and print its version and metrics."""
        svc = _services()
        try:
            record = training.request_training(
                svc.db, svc.config, algorithm, _pairs("--param", params), activate, _pairs("--matrix", matrix), _pairs("--evaluation", evaluation)
            )
        except Invalid as exc:
            raise click.ClickException(exc.message) from None
        click.echo(f"training {record.version} ({algorithm})", err=True)
        result = training.run_training(svc.db, svc.config, record.version, progress=lambda m: click.echo(f"  {m}", err=True), show_progress=True)
        if result.status != "ready":
            raise click.ClickException(f"training {result.version} failed: {result.error}")
        click.echo(f"version: {result.version}")
        click.echo(f"active: {'yes' if activate else 'no'}")
        click.echo(f"training seconds: {result.training_seconds:.2f}")
        click.echo(f"data: {json.dumps({k: v for k, v in result.data.items() if k != 'timings'})}")
        for name, value in sorted(result.metrics.items()):
            click.echo(f"{name}: {value:.4f}" if isinstance(value, float) else f"{name}: {value}")

    @app.cli.command("demo")
    @click.option("--users", default=1500, show_default=True)
    @click.option("--items", default=1200, show_default=True)
    @click.option("--events", default=60000, show_default=True)
    def demo_cmd(users: int, items: int, events: int) -> None:
        """Load a synthetic demo catalogue, events and two running experiments (once; a second run changes nothing)."""
        from service.usecases.demo import load_demo
        from service.usecases.demo_experiments import load_demo_experiments

        for line in load_demo(_services(), users, items, events):
            click.echo(line)
        for line in load_demo_experiments(_services(), users):
            click.echo(line)
