"""Thin click layer: parses options, builds the library objects, turns TrackerError into one line + exit 1."""

from __future__ import annotations

import sys

import click

from tracker.errors import TrackerError


class _Group(click.Group):
    """A click group that reports library errors in one line instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except TrackerError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=_Group)
@click.version_option(package_name="iristrack")
def main() -> None:
    """Iris and pupil edge tracker: train, export, run, evaluate, benchmark."""


def _register_optional_commands() -> None:
    # Each command module adds its commands to `main`; they import heavy things lazily inside the commands.
    from tracker import cli_gpu, cli_run  # noqa: F401
    from training import cli  # noqa: F401  (imports TensorFlow only when train/export run)


_register_optional_commands()
