"""`iristrack capture`: keep the N best frames that pass the quality gates (lossless PNGs + capture.json)."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from pathlib import Path

import click

from cli.common import POSITIVE, _backend_options, _quiet_native_logs, _tracker_config, load_tracker
from cli.view import open_view, view_options


@click.command()
@click.argument("source")
@_backend_options
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="new or empty capture folder")
@click.option("--best", type=click.IntRange(min=1), default=3, show_default=True, help="frames to keep")
@click.option("--profile", "profile_path", type=click.Path(dir_okay=False), help="quality gates (.toml or .json)")
@click.option("--time-limit", "time_limit_s", type=POSITIVE, default=None, help="stop after this many seconds")
@click.option("--show", is_flag=True, help="window with PASS, or FAIL and the failing gates (q quits)")
@view_options
@click.option("--realtime", is_flag=True, help="replay a file at its own frame rate, as if it were a camera")
@click.option("--quiet", is_flag=True, help="no summary")
def capture(source, model, backend, out_dir, best, profile_path, time_limit_s, show, realtime, quiet) -> None:
    """Keep the BEST frames of SOURCE that pass the quality gates, as lossless PNGs with a JSON record.

    A camera (or --realtime) stops once it has them; a file is read to its end (or --time-limit) for its best.
    Exit 0 with them all, 1 with fewer (the record says what failed most).
    """
    from cli.run import _input_files, _is_image_source, _source_folders
    from tracker.capture import capture as run_capture
    from tracker.io.capture import check_capture_folder
    from tracker.io.sources import open_source
    from tracker.quality import load_profile

    _quiet_native_logs()
    profile = load_profile(profile_path) if profile_path else None  # a bad profile fails before anything opens
    inputs = [*_input_files(source, None), *([profile_path] if profile_path else [])]
    check_capture_folder(out_dir, [*_source_folders(source), *(p for p in inputs if Path(p).is_file())])
    with ExitStack() as stack:
        view = stack.enter_context(open_view())  # bound before the capture folder is created
        src = stack.enter_context(open_source(source, realtime=realtime, prefetch=False))
        config = _tracker_config("ellipse", 0.35, not _is_image_source(source))
        tracker = stack.enter_context(load_tracker(model, backend, config, quiet, live=src.is_live))
        done = run_capture(
            src, tracker, out_dir, best=best, profile=profile, time_limit_s=time_limit_s, show=show, view=view
        )
    if not quiet:
        click.echo(
            f"kept {done.kept} of {done.wanted} frames in {done.record.parent} ({done.frames_passed} of "
            f"{done.run.frames} frames passed the gates{'; time limit reached' if done.timed_out else ''})"
        )
        if done.failed_gates:
            top = ", ".join(f"{g} {n}" for g, n in sorted(done.failed_gates.items(), key=lambda kv: -kv[1])[:4])
            click.echo(f"gates failed most: {top}")
    if done.run.interrupted:
        sys.exit(130)
    if done.kept < done.wanted:
        worst = max(done.failed_gates, key=done.failed_gates.get) if done.failed_gates else "none"
        click.echo(f"error: kept {done.kept} of {done.wanted} frames; the gate failed most: {worst}", err=True)
        sys.exit(1)
