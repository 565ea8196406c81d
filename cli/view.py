"""`--view [--port N] [--host ADDR]`: the live view in the browser for `run` and `capture` (tracker/io/view.py)."""

from __future__ import annotations

import contextlib

import click
from click.core import ParameterSource

from tracker.io.view import DEFAULT_HOST, DEFAULT_PORT

_META = "iristrack.view."


def _remember(ctx: click.Context, param: click.Parameter, value):
    ctx.meta[_META + param.name] = value
    return value


def view_options(f):
    """Add --view, --port and --host to a command; `open_view()` reads them (the command's signature is unchanged)."""
    f = click.option(
        "--host",
        default=DEFAULT_HOST,
        show_default=True,
        expose_value=False,
        callback=_remember,
        help="address the view listens on; any other than loopback prints a URL with a random access token",
    )(f)
    f = click.option(
        "--port",
        type=click.IntRange(0, 65535),
        default=DEFAULT_PORT,
        show_default=True,
        expose_value=False,
        callback=_remember,
        help="port of the view (0: a free one)",
    )(f)
    f = click.option(
        "--view",
        is_flag=True,
        expose_value=False,
        callback=_remember,
        help="live view in the browser: overlay, numbers and plots (URL on stderr; README Live view)",
    )(f)
    return f


def open_view(quality=None) -> contextlib.AbstractContextManager:
    """The ViewSink of --view, listening already and its URL on stderr (a context manager; None without --view).

    Call it before any output file is created: a port in use is one `error:` line with nothing written.
    `quality`: run --quality's assessor, so the page shows each frame's gate verdict.
    """
    ctx = click.get_current_context()
    if not ctx.meta.get(_META + "view"):
        given = [
            f"--{name}" for name in ("port", "host") if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT
        ]
        if given:
            raise click.UsageError(f"{' and '.join(given)} set the --view server: add --view")
        return contextlib.nullcontext(None)
    from tracker.io.view import ViewSink

    sink = ViewSink(ctx.meta[_META + "host"], ctx.meta[_META + "port"], quality=quality)
    click.echo(f"view: {sink.url}", err=True)  # stderr: stdout stays the run's own report
    if sink.server.token:
        click.echo("view: anyone with this URL (it holds the token) can watch; share it only with them", err=True)
    return sink


def with_view(sink, view):
    """`sink` and the view written together (the view last: it only stores references), or `sink` alone."""
    if view is None:
        return sink
    from tracker.io.sinks import MultiSink

    return MultiSink([sink, view])
