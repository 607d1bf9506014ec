"""The command line: `flask --app wsgi init-db | create-key | train | demo`."""
from __future__ import annotations

import json

import click
from flask import Flask

from service.auth import ROLES, create_key
from service.state import services


def register_commands(app: Flask) -> None:
    """Attach the commands to the app's CLI."""

    @app.cli.command("init-db")
    def init_db() -> None:
        """Create or upgrade the schema (safe to run again, and from several processes)."""
        from service.schema import upgrade

        before, after = upgrade(services().db)
        click.echo(f"schema at revision {after}" + (f" (was {before})" if before != after else " (already current)"))

    @app.cli.command("create-key")
    @click.option("--role", type=click.Choice(ROLES), required=True)
    @click.option("--name", default=None, help="A label to recognise the key by.")
    def create_key_cmd(role: str, name: str | None) -> None:
        """Create an API key; the key itself is the last line printed."""
        row, raw = create_key(services().db, role, name)
        click.echo(f"created {row.role} key {row.id} ({row.name}); store it now, it is not shown again:")
        click.echo(raw)

    @app.cli.command("train")
    @click.option("--algorithm", default="als", show_default=True)
    @click.option("--param", "params", multiple=True, help="KEY=JSON_VALUE, e.g. --param factors=32")
    @click.option("--activate/--no-activate", default=True, show_default=True)
    def train_cmd(algorithm: str, params: tuple[str, ...], activate: bool) -> None:
        """Train a model from the stored events, activate it, and print its version and metrics."""
        from service.training import request_training, run_training

        parsed = {}
        for pair in params:
            key, _, value = pair.partition("=")
            try:
                parsed[key] = json.loads(value)
            except ValueError:
                parsed[key] = value
        svc = services()
        try:
            row = request_training(svc.db, svc.config, algorithm, parsed, activate)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"training {row.version} ({algorithm})", err=True)
        result = run_training(svc.db, svc.config, row.version, progress=lambda m: click.echo(f"  {m}", err=True), show_progress=True)
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
        from service.demo import load_demo
        from service.demo_experiments import load_demo_experiments

        for line in load_demo(services(), users, items, events):
            click.echo(line)
        for line in load_demo_experiments(services(), users):
            click.echo(line)
