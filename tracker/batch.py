"""Batch runs over archives of recordings: one output per input, resumable, failures isolated, every core used.

Each input (a video, an image folder or image) is tracked by the same `tracker.run.run` loop and sinks as
`iristrack run`, into files under `out_dir` that mirror the inputs' paths relative to their common parent
folder (`s1/eye.mp4` -> `OUT/s1/eye.mp4.jsonl`, `.csv`, `.overlay.mp4`). Every file is written under
`NAME.partial` and renamed (os.replace, atomic) only when its input was read to the end, so a file under its
final name is always complete. An input is complete when all its requested final files exist: a rerun skips
it, and redoes any other (a `.partial` left by a kill is overwritten). A corrupt or unreadable input is
recorded as failed and the others go on.

Workers are processes (spawn), each with its own backend loaded once and a thread budget of
`cpu_count // workers` cores, fed one input at a time by this process, which only schedules, collects and
reports. On a Ray cluster (`ray_address`), each input is one Ray task with retries; the task does the same
per-input work, so the outputs and the resume rule are the same.
"""

from __future__ import annotations

import contextlib
import csv as csv_module
import glob
import json
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from multiprocessing.connection import wait
from pathlib import Path

from tracker.errors import TrackerError
from tracker.pipeline import TrackerConfig

PARTIAL_SUFFIX = ".partial"
SUMMARY_NAME = "batch_summary.json"
OUTPUT_SUFFIXES = {"jsonl": ".jsonl", "csv": ".csv", "video": ".overlay.mp4"}
MANIFEST_SUFFIXES = (".csv", ".txt", ".lst")
# Measured on a 2-core machine (README "Batch and cluster runs"): one pipelined worker already keeps both
# cores busy (decode + fit on one thread, inference on the other); a second process only adds contention.
CORES_PER_WORKER = 2
RAY_MAX_RETRIES = 3  # a task whose worker process died is run again this many times
_PROGRESS_EVERY_S = 0.5  # how often a worker reports its frame count
_GLOB_CHARS = set("*?[")
_STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


@dataclass(frozen=True)
class BatchOptions:
    """How each input is tracked; sent to every worker process (picklable)."""

    model: str | None = None
    backend: str = "auto"
    threads: int = 0  # CPU inference threads per worker (0: from the worker's core budget)
    rebuild: bool = True
    config: TrackerConfig = field(default_factory=TrackerConfig)
    pipelined: bool = True
    # Tests: a picklable zero-argument callable returning a backend, instead of loading `model`.
    backend_factory: Callable | None = None


@dataclass(frozen=True)
class Job:
    """One input and the final paths of its outputs (kind -> path)."""

    source: str
    outputs: dict[str, str]

    @property
    def complete(self) -> bool:
        """True when every requested output exists under its final name (a finished earlier run)."""
        return all(os.path.exists(p) for p in self.outputs.values())


@dataclass
class InputResult:
    """What became of one input: done (this run), complete (an earlier run), failed or interrupted."""

    source: str
    status: str
    frames: int = 0
    elapsed_s: float = 0.0
    error: str | None = None
    notes: list[str] = field(default_factory=list)  # skipped images, damaged stretches, a truncated end
    outputs: dict[str, str] = field(default_factory=dict)
    attempts: int = 1


@dataclass
class BatchSummary:
    """A batch: each input's result, wall time, and why it ended early if it did."""

    inputs: list[InputResult]
    out_dir: str
    workers: int
    elapsed_s: float = 0.0
    interrupted: bool = False
    stop_signal: int | None = None
    runner: str = "processes"

    def count(self, status: str) -> int:
        """How many inputs ended with `status`."""
        return sum(r.status == status for r in self.inputs)

    @property
    def failed(self) -> list[InputResult]:
        """The inputs that could not be tracked."""
        return [r for r in self.inputs if r.status == "failed"]

    @property
    def frames(self) -> int:
        """Frames tracked by this run (inputs completed earlier not counted)."""
        return sum(r.frames for r in self.inputs if r.status in ("done", "interrupted"))

    @property
    def fps(self) -> float:
        """Frames per second of wall time over the whole batch (startup included)."""
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict:
        """JSON-ready summary (written to OUT/batch_summary.json)."""
        return {
            "out_dir": self.out_dir,
            "runner": self.runner,
            "workers": self.workers,
            "files": len(self.inputs),
            "done": self.count("done"),
            "complete_before": self.count("complete"),
            "failed": self.count("failed"),
            "interrupted_inputs": self.count("interrupted"),
            "frames": self.frames,
            "elapsed_s": round(self.elapsed_s, 3),
            "frames_per_s": round(self.fps, 1),
            "interrupted": self.interrupted,
            "stop_signal": signal.Signals(self.stop_signal).name if self.stop_signal else None,
            "inputs": [asdict(r) for r in self.inputs],
        }


# --- inputs and outputs ---------------------------------------------------------------------------


def read_manifest(path: str | Path) -> list[str]:
    """Inputs listed in a manifest: a CSV with a `path` column, or a text file with one path a line.

    Blank lines and lines starting with # are ignored; relative paths are relative to the manifest's folder.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise TrackerError(f"cannot read manifest {path}: {exc.strerror or exc}") from exc
    if path.suffix.lower() == ".csv":
        rows = csv_module.DictReader(text.splitlines())
        if "path" not in (rows.fieldnames or []):
            raise TrackerError(f"manifest {path} has no 'path' column (found: {', '.join(rows.fieldnames or [])})")
        entries = [(row["path"] or "").strip() for row in rows]
    else:
        entries = [line.strip() for line in text.splitlines()]
    entries = [e for e in entries if e and not e.startswith("#")]
    return [e if os.path.isabs(os.path.expanduser(e)) else str(path.parent / e) for e in entries]


def expand_inputs(specs: Iterable[str], manifest: str | Path | None = None) -> list[str]:
    """INPUTS -> one source string per input, in order, without duplicates.

    A path that does not exist but holds glob characters is expanded, each match one input (sorted; pass a
    folder for an image sequence); a file ending in .csv/.txt/.lst is a manifest; anything else is kept as
    given (a missing one fails in its turn, reported like any unreadable input).
    """
    from tracker.io.images import natural_key

    out: list[str] = []
    todo = [*([str(manifest)] if manifest else []), *map(str, specs)]
    for spec in todo:
        path = Path(spec).expanduser()
        if not path.exists() and _GLOB_CHARS & set(spec):
            out += [str(p) for p in sorted(map(Path, glob.glob(str(path), recursive=True)), key=natural_key)]
        elif path.is_file() and path.suffix.lower() in MANIFEST_SUFFIXES:
            out += read_manifest(path)
        else:
            out.append(spec)
    seen: set[str] = set()
    return [s for s in out if not (os.path.abspath(s) in seen or seen.add(os.path.abspath(s)))]


def plan_jobs(sources: Sequence[str], out_dir: str | Path, *, csv: bool = False, video: bool = False) -> list[Job]:
    """One Job per source; outputs mirror the sources' paths relative to their common parent folder."""
    out_dir = Path(out_dir)
    absolute = [Path(os.path.abspath(os.path.expanduser(s))) for s in sources]
    if not absolute:
        return []
    root = Path(os.path.commonpath([str(p.parent) for p in absolute]))
    kinds = ["video"] * video + ["csv"] * csv + ["jsonl"]  # the JSONL is renamed last
    jobs = []
    for spec, path in zip(sources, absolute, strict=True):
        base = out_dir / path.relative_to(root)
        jobs.append(Job(spec, {k: str(base) + OUTPUT_SUFFIXES[k] for k in kinds}))
    return jobs


def _partial(path: str) -> str:
    return path + PARTIAL_SUFFIX


def _count_lines(path: str) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


# --- the work of one input (in a worker process, a Ray task, or this process) ---------------------------


def load_backend_for(options: BatchOptions):
    """The backend a worker uses for all its inputs, and its model's confidence calibration.

    The calibration is read first (as `iristrack run` does): a broken one fails before a backend opens.
    """
    from tracker.fit.confidence import confidence_for
    from tracker.paths import default_model_path

    confidence = confidence_for(options.model or default_model_path())
    if options.backend_factory is not None:
        backend = options.backend_factory()
    else:
        from tracker.backends.select import load_backend

        model = Path(options.model) if options.model else None
        backend = load_backend(model, options.backend, rebuild=options.rebuild, threads=options.threads)[0]
    return _Loaded(backend, confidence)


@dataclass(frozen=True)
class _Loaded:
    """A worker's backend and its model's confidence calibration."""

    backend: object
    confidence: object

    def close(self) -> None:
        """Release the backend."""
        self.backend.close()


def _is_image_source(spec: str) -> bool:
    """A folder, a glob or a single image: frames without a clock, never smoothed (as `iristrack run`)."""
    from tracker.io.images import is_image_name

    path = Path(spec).expanduser()
    return path.is_dir() or bool(_GLOB_CHARS & set(spec)) or (path.is_file() and is_image_name(path))


def _protected_files(job: Job, options: BatchOptions) -> list[Path]:
    """Files an output must never be: the input itself, the model, its card and its calibration."""
    from tracker.fit.confidence import calibration_path
    from tracker.paths import default_model_path

    model = Path(options.model) if options.model else default_model_path()
    return [Path(job.source), model, model.with_suffix(".json"), calibration_path(model)]


def process_input(
    job: Job,
    options: BatchOptions,
    loaded: _Loaded,
    *,
    on_frames: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> InputResult:
    """Track one input into its `.partial` files with `tracker.run.run`; rename them only when it completed.

    Never raises for a bad input: the error is in the result (status failed). An interrupted run (signal,
    `should_stop`) leaves its `.partial` files as they are (status interrupted).
    """
    from tracker.io.sinks import check_output_paths
    from tracker.io.sources import open_source
    from tracker.pipeline import Tracker
    from tracker.run import run

    t0 = time.perf_counter()
    notes: list[str] = []
    frames = [0, time.monotonic()]

    def counted(_result) -> None:
        frames[0] += 1
        if on_frames is not None and time.monotonic() - frames[1] >= _PROGRESS_EVERY_S:
            frames[1] = time.monotonic()
            on_frames(frames[0])

    result = InputResult(job.source, "failed", outputs=dict(job.outputs))
    try:
        finals = {f"--{kind}": path for kind, path in job.outputs.items()}
        check_output_paths(
            finals | {k + PARTIAL_SUFFIX: _partial(p) for k, p in finals.items()}, _protected_files(job, options)
        )
        with open_source(job.source, on_skip=notes.append, prefetch=not options.pipelined) as src:
            smooth = options.config.smooth and not _is_image_source(job.source)
            config = replace(options.config, smooth=smooth, confidence=loaded.confidence)
            tracker = Tracker(loaded.backend, config)  # shares the worker's backend; a new smoother per input
            with _open_sinks(job, src.fps) as sink:
                summary = run(
                    src, tracker, sink, pipelined=options.pipelined, on_result=counted, should_stop=should_stop
                )
        result.frames = summary.frames
        stopped = summary.interrupted or (should_stop is not None and should_stop())
        if summary.stop_signal is not None:
            result.status, result.error = "interrupted", f"stopped by {signal.Signals(summary.stop_signal).name}"
        elif stopped:
            result.status, result.error = "interrupted", "stopped"
        else:
            for final in job.outputs.values():  # JSONL last: it is the file a reader looks for first
                os.replace(_partial(final), final)
            result.status = "done"
    except KeyboardInterrupt:  # Ray's cancel, or a Ctrl-C outside the run loop
        result.status, result.error = "interrupted", "interrupted"
    except Exception as exc:  # a bad input is reported, the batch goes on
        result.error = str(exc) if isinstance(exc, TrackerError) else f"{type(exc).__name__}: {exc}"
    result.notes = notes
    result.elapsed_s = time.perf_counter() - t0
    return result


def _open_sinks(job: Job, fps: float | None):
    """MultiSink over a job's requested outputs, each opened on its `.partial` path (closed again on a failure)."""
    from tracker.io.sinks import CsvSink, JsonlSink, MultiSink
    from tracker.io.video import VideoSink

    opened = []
    with contextlib.ExitStack() as stack:  # a sink that fails to open closes the ones opened before it
        for kind, final in job.outputs.items():
            path = _partial(final)
            if kind == "jsonl":
                opened.append(stack.enter_context(JsonlSink(path)))
            elif kind == "csv":
                opened.append(stack.enter_context(CsvSink(path)))
            else:
                opened.append(stack.enter_context(VideoSink(path, fps=fps or 30.0)))
        stack.pop_all()
    return MultiSink(opened)


# --- the batch -------------------------------------------------------------------------------------


def default_workers(cpu_count: int | None = None) -> int:
    """Worker processes for this machine: one per CORES_PER_WORKER cores (measured), at least one."""
    return max(1, (cpu_count or os.cpu_count() or 1) // CORES_PER_WORKER)


def run_batch(
    inputs: Iterable[str],
    out_dir: str | Path,
    *,
    csv: bool = False,
    video: bool = False,
    workers: int | None = None,
    manifest: str | Path | None = None,
    options: BatchOptions | None = None,
    ray_address: str | None = None,
    progress: bool = False,
    on_result: Callable[[InputResult], None] | None = None,
) -> BatchSummary:
    """Track every input into its own files under `out_dir`; skip inputs already complete; summary JSON in out_dir.

    Args:
        inputs: videos, image folders, images, globs or manifests (see `expand_inputs`).
        out_dir: outputs mirror the inputs relative to their common parent folder (`plan_jobs`).
        csv: also write `NAME.csv` next to `NAME.jsonl`.
        video: also write the overlay video `NAME.overlay.mp4`.
        manifest: a CSV (`path` column) or text list of further inputs.
        workers: processes (None: `default_workers()`; 0: in this process, one input after another).
        options: model, backend, threads, tracker config (default: the shipped model, best backend).
        ray_address: run one Ray task per input on this cluster ("auto", "ray://host:10001", "local").
        progress: a tqdm bar over files, with frames and frames per second.
        on_result: called in this process with each input's result as it arrives.

    SIGINT/SIGTERM/SIGHUP stop the batch: inputs in progress keep their `.partial` files, `interrupted` and
    `stop_signal` say so. Raises TrackerError only for what stops every input (a model that cannot load).
    """
    options = options or BatchOptions()
    out_dir = Path(out_dir)
    jobs = plan_jobs(expand_inputs(inputs, manifest), out_dir, csv=csv, video=video)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results: dict[int, InputResult] = {}
    todo: list[int] = []
    for i, job in enumerate(jobs):
        if job.complete:
            results[i] = InputResult(job.source, "complete", _count_lines(job.outputs["jsonl"]), outputs=job.outputs)
        else:
            todo.append(i)
    workers = default_workers() if workers is None else workers
    reporter = _Progress(len(jobs), len(jobs) - len(todo), progress)

    def collect(i: int, result: InputResult, key: object = None) -> None:
        results[i] = result
        reporter.finished(result, key)
        if on_result is not None:
            on_result(result)

    summary = BatchSummary([], str(out_dir), workers, runner="ray" if ray_address else "processes")
    try:
        with _DriverSignals() as signals:
            if ray_address:
                _run_on_ray(jobs, todo, options, ray_address, collect, reporter, signals)
            elif workers == 0:
                _run_here(jobs, todo, options, collect, reporter, signals)
            else:
                _run_on_processes(jobs, todo, options, workers, collect, reporter, signals)
    finally:
        reporter.close()
    summary.inputs = [results.get(i) or InputResult(job.source, "not started") for i, job in enumerate(jobs)]
    summary.elapsed_s = time.perf_counter() - t0
    summary.stop_signal = signals.signum
    summary.interrupted = signals.signum is not None or any(r.status == "interrupted" for r in summary.inputs)
    if summary.stop_signal is None:
        summary.stop_signal = next((_signum(r.error) for r in summary.inputs if _signum(r.error)), None)
    _write_json(out_dir / SUMMARY_NAME, summary.to_dict())
    return summary


def _signum(error: str | None) -> int | None:
    if error and error.startswith("stopped by "):
        return int(signal.Signals[error.removeprefix("stopped by ")])
    return None


def _write_json(path: Path, data: dict) -> None:
    tmp = Path(_partial(str(path)))
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


class _Progress:
    """A tqdm bar over files with frames and frames per second; silent when disabled."""

    def __init__(self, total: int, already: int, enabled: bool) -> None:
        self._bar = None
        self._t0 = time.perf_counter()
        self._frames_done = 0
        self._live: dict[object, int] = {}
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, initial=already, unit="file", dynamic_ncols=True, leave=False)

    def frames(self, key: object, n: int) -> None:
        """A worker's frame count on its current input."""
        self._live[key] = n
        self._refresh()

    def finished(self, result: InputResult, key: object = None) -> None:
        """One input ended."""
        self._live.pop(key, None)
        self._frames_done += result.frames
        if self._bar is not None:
            self._bar.update()
        self._refresh()

    def _refresh(self) -> None:
        if self._bar is not None:
            frames = self._frames_done + sum(self._live.values())
            fps = frames / max(time.perf_counter() - self._t0, 1e-9)
            self._bar.set_postfix_str(f"{frames} frames, {fps:.0f} frames/s", refresh=False)
            self._bar.refresh()

    def write(self, message: str) -> None:
        """A line above the bar."""
        if self._bar is not None:
            self._bar.write(message)

    def close(self) -> None:
        """Remove the bar."""
        if self._bar is not None:
            self._bar.close()


class _DriverSignals:
    """In the scheduling process: the first SIGINT/SIGTERM/SIGHUP stops the batch, each one is passed to workers."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.count = 0
        self.on_signal: Callable[[int], None] | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        self.signum = self.signum or signum
        self.count += 1
        if self.on_signal is not None:
            self.on_signal(signum)

    @property
    def requested(self) -> bool:
        """True once a stop signal arrived."""
        return self.signum is not None

    def __enter__(self) -> _DriverSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in _STOP_SIGNALS:
                if signal.getsignal(sig) is not signal.SIG_IGN:
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)


def _run_here(jobs, todo, options, collect, reporter, signals) -> None:
    """workers=0: every input in this process, one after another (the run loop handles signals itself)."""
    loaded = load_backend_for(options)
    try:
        for i in todo:
            if signals.requested:
                return
            # The run loop puts its own stop handlers over ours while it runs, and puts ours back.
            result = process_input(jobs[i], options, loaded, on_frames=lambda n: reporter.frames(None, n))
            collect(i, result)
            if result.status == "interrupted":
                signals.signum = signals.signum or _signum(result.error) or signal.SIGINT
                return
    finally:
        loaded.close()


# --- worker processes -----------------------------------------------------------------------------


def _worker_main(conn, options: BatchOptions, parent_pid: int) -> None:
    """A worker process: load the backend once, then track each job it is sent until None or the driver is gone."""
    for sig in _STOP_SIGNALS:
        if sig != signal.SIGTERM:  # the driver passes every stop on as SIGTERM
            signal.signal(sig, signal.SIG_IGN)
    try:
        loaded = load_backend_for(options)
    except Exception as exc:
        conn.send(("init_failed", str(exc) if isinstance(exc, TrackerError) else f"{type(exc).__name__}: {exc}"))
        return
    orphaned = lambda: os.getppid() != parent_pid  # noqa: E731 (the driver was killed: stop, rename nothing)
    try:
        while True:
            try:
                job = conn.recv()
            except (EOFError, OSError):
                return
            if job is None or orphaned():
                return
            result = process_input(
                job, options, loaded, on_frames=lambda n: conn.send(("frames", n)), should_stop=orphaned
            )
            conn.send(("done", result))
    finally:
        loaded.close()


class _Worker:
    """One worker process, its pipe, and the job it holds."""

    def __init__(self, ctx, options: BatchOptions) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, options, os.getpid()), daemon=True)
        self.process.start()
        child.close()
        self.job: int | None = None

    def send(self, job_index: int | None, job: Job | None) -> None:
        self.job = job_index
        with contextlib.suppress(BrokenPipeError, OSError):  # it died: its sentinel says so
            self.conn.send(job)

    def signal(self, signum: int) -> None:
        if self.process.is_alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signum)


def _run_on_processes(jobs, todo, options, n_workers, collect, reporter, signals) -> None:
    """Feed `todo` to `n_workers` spawned processes one job at a time; a worker that dies fails its job only."""
    cpus = os.cpu_count() or 1
    n_workers = max(1, min(n_workers, len(todo)))
    if not todo:
        return
    if not options.threads and options.backend_factory is None:
        # Each worker's core budget: its pipelined run keeps one core for decoding and fitting.
        budget = max(1, cpus // n_workers)
        options = replace(options, threads=max(1, budget - 1) if options.pipelined and budget > 1 else budget)
    ctx = multiprocessing.get_context("spawn")
    pending = list(todo)
    pool: list[_Worker] = []

    def on_signal(signum: int) -> None:
        for w in pool:
            if w.job is not None:
                w.signal(signal.SIGTERM)

    signals.on_signal = on_signal
    try:
        pool += [_Worker(ctx, options) for _ in range(n_workers)]
        for w in pool[: len(pending)]:
            w.send(pending[0], jobs[pending.pop(0)])
        while any(w.job is not None for w in pool):
            ready = wait(
                [w.conn for w in pool if w.job is not None] + [w.process.sentinel for w in pool if w.job is not None],
                timeout=0.2,
            )
            for w in list(pool):
                if w.job is None:
                    continue
                message = None
                if w.conn in ready:
                    try:
                        message = w.conn.recv()
                    except (EOFError, OSError):
                        message = None
                if message is None and w.process.sentinel not in ready:
                    continue
                if message is not None and message[0] == "frames":
                    reporter.frames(w, message[1])
                    continue
                if message is not None and message[0] == "init_failed":
                    raise TrackerError(message[1])
                if message is not None:  # ("done", result)
                    result = message[1]
                else:  # the process died without a result: this input only fails
                    w.process.join(timeout=5)
                    code = w.process.exitcode
                    why = (
                        f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
                    )
                    result = InputResult(jobs[w.job].source, "failed", error=f"worker process died ({why})")
                    if signals.requested:
                        result.status, result.error = "interrupted", f"worker stopped ({why})"
                i = w.job
                w.job = None
                collect(i, result, w)
                if not w.process.is_alive():
                    pool.remove(w)
                    if pending and not signals.requested:
                        w = _Worker(ctx, options)
                        pool.append(w)
                if pending and not signals.requested:
                    w.send(pending[0], jobs[pending.pop(0)])
    finally:
        signals.on_signal = None
        for w in pool:
            if w.job is not None:
                w.signal(signal.SIGTERM)
            w.send(None, None)
        for w in pool:
            w.process.join(timeout=10)
            if w.process.is_alive():
                w.process.kill()
                w.process.join()


# --- Ray -------------------------------------------------------------------------------------------

_RAY_BACKEND: dict[tuple, object] = {}  # per Ray worker process: the backend, loaded by its first task


def _ray_task(job: Job, options: BatchOptions) -> InputResult:
    """One input on a Ray worker: the same work as a local worker (partial files, rename when complete)."""
    key = (options.model, options.backend, options.threads, options.backend_factory)
    if key not in _RAY_BACKEND:
        _RAY_BACKEND.clear()
        _RAY_BACKEND[key] = load_backend_for(options)
    return process_input(job, options, _RAY_BACKEND[key])


def _run_on_ray(jobs, todo, options, address, collect, reporter, signals) -> None:
    """One Ray task per input (retried when its worker dies); this process only schedules and collects."""
    try:
        import ray
    except ImportError as exc:
        raise TrackerError("--ray needs Ray: pip install 'iristrack[ray]'") from exc
    if not todo:
        return
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=None if address == "local" else address, log_to_driver=False, include_dashboard=False)
    # A task takes the cores of one local worker (CORES_PER_WORKER, measured): its pipelined run loop keeps
    # one core decoding and fitting and gives the backend the rest, so a node never runs more busy threads
    # than it has cores.
    if not options.threads and options.backend_factory is None:
        options = replace(options, threads=max(1, CORES_PER_WORKER - 1))
    remote = ray.remote(num_cpus=CORES_PER_WORKER, max_retries=RAY_MAX_RETRIES, retry_exceptions=False)(_ray_task)
    options_ref = ray.put(options)
    refs = {remote.remote(jobs[i], options_ref): i for i in todo}
    try:
        while refs and not signals.requested:
            done, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)
            for ref in done:
                i = refs.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as exc:  # retries spent (the worker died every time)
                    result = InputResult(
                        jobs[i].source, "failed", error=f"ray task failed: {type(exc).__name__}: {exc}"
                    )
                collect(i, result)
    finally:
        for ref in refs:
            ray.cancel(ref)  # KeyboardInterrupt in the task: its run stops, its files stay .partial
        for ref, i in refs.items():
            try:
                collect(i, ray.get(ref, timeout=30))
            except Exception:
                collect(i, InputResult(jobs[i].source, "interrupted", error="cancelled"))
        if started_here:
            ray.shutdown()


def format_table(summary: BatchSummary) -> str:
    """The summary as a small text table: files, frames, failures, frames per second."""
    d = summary.to_dict()
    head = ("files", "done", "complete before", "failed", "interrupted", "frames", "seconds", "frames/s")
    row = (
        d["files"],
        d["done"],
        d["complete_before"],
        d["failed"],
        d["interrupted_inputs"],
        d["frames"],
        f"{summary.elapsed_s:.1f}",
        f"{summary.fps:.0f}",
    )
    widths = [max(len(str(h)), len(str(v))) for h, v in zip(head, row, strict=True)]
    line = lambda cells: "  ".join(str(c).rjust(w) for c, w in zip(cells, widths, strict=True))  # noqa: E731
    return f"{line(head)}\n{line(row)}"
