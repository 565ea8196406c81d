"""Thin click layer: registers every command on one group; nothing else imports this package.

Commands parse options, build library objects and turn a TrackerError into one `error:` line and exit 1.
Heavy dependencies (TensorFlow, TensorRT, pycuda) are imported only inside the command that needs them.
"""

from __future__ import annotations

import sys

import click

from cli import batch, bench, calibrate, capture, evaluate, gpu, run, train
from tracker.errors import TrackerError


class _Group(click.Group):
    """A click group that reports library errors and bad options in one `error:` line instead of a traceback."""

    def main(self, *args, **kwargs):
        """Run a command; a bad option or argument is one line and exit 2 (click's own usage block is three)."""
        kwargs.pop("standalone_mode", None)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except click.UsageError as exc:
            where = f" (see: {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
            click.echo(f"error: {exc.format_message()}{where}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("interrupted", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)

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


for _command in (
    run.run,
    run.labels_import,
    capture.capture,
    batch.batch,
    evaluate.eval_command,
    evaluate.cross_eval,
    calibrate.calibrate,
    bench.bench,
    gpu.build_engine_cmd,
    gpu.check_gpu_cmd,
    gpu.info_cmd,
    train.train,
    train.export,
    train.edge_eval,
    train.finetune,
):
    main.add_command(_command)
