"""TensorRT on an NVIDIA GPU: the same ONNX model, built into an engine for this GPU and TensorRT version.

Uses the TensorRT 10 tensor-name API (num_io_tensors, get_tensor_name, set_tensor_address, set_input_shape,
execute_async_v3) and pycuda with an explicit context: the device's primary context is retained at load time
and pushed/popped around every piece of GPU work in whichever thread does it, so the backend can be created in
one thread and used from another (no pycuda.autoinit). Host buffers are pinned and, with the device buffers,
allocated once for `max_batch`. Two buffer sets ("slots"), each with its own stream, double-buffer the work:
frame N+1's upload overlaps frame N's inference (`submit` / `collect`); `infer` is the blocking form.

tensorrt and pycuda are imported inside the methods that need them, never at module import.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tracker.backends.contract import check_model_io
from tracker.backends.engines import (
    EngineCard,
    ensure_engine,
    find_card,
    is_version_mismatch,
    probe_environment,
    rebuild_hint,
    stale_reason,
    trt_dtype_name,
)
from tracker.errors import ModelError

N_SLOTS = 2  # double buffering: one slot uploads while the other computes


@dataclass
class _Slot:
    """One set of I/O buffers: pinned host arrays, device allocations, a stream and its completion events."""

    host_in: np.ndarray  # (max_batch, H, W, 1) float32, page-locked
    host_out: np.ndarray  # (max_batch, H, W, 2) float32, page-locked
    dev_in: object  # pycuda DeviceAllocation
    dev_out: object
    stream: object  # pycuda Stream
    computed: object  # pycuda Event: recorded after execute_async_v3 (the next slot's compute waits on it)
    done: object  # pycuda Event: recorded after the device->host copy
    n: int = 0  # batch size in flight; 0 when free
    ticket: int = -1


class TensorRTBackend:
    """A deserialised engine, one execution context, two pinned/device buffer slots; a context manager."""

    name = "tensorrt"

    def __init__(
        self,
        model_path: str | Path,
        precision: str = "fp16",
        max_batch: int = 1,
        device: int = 0,
        rebuild: bool = True,
        workspace_mb: int = 1024,
    ) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise ModelError(f"model file not found: {path}")
        self._closed = True
        self._onnx_path = path if path.suffix.lower() == ".onnx" else None
        self._precision, self._device = precision, device
        if self._onnx_path is not None:
            self.engine_path = ensure_engine(
                path, precision, max_batch, rebuild, device=device, workspace_mb=workspace_mb
            )
        else:
            self.engine_path = path
            self._check_card(path, device)

        import pycuda.driver as cuda

        cuda.init()
        self._cuda = cuda
        self._cuda_ctx = cuda.Device(device).retain_primary_context()
        self.owner_thread = threading.get_ident()  # the thread that loaded the engine, for error messages
        self._lock = threading.Lock()
        self._closed = False
        self._slots: list[_Slot] = []
        try:
            with self._current():
                self._load(rebuild, max_batch, workspace_mb)
        except BaseException:
            self.close()
            raise
        self._tickets = 0
        self._next_slot = 0
        self._last_computed = None  # event of the most recent execute_async_v3
        self._outputs: dict[int, np.ndarray] = {}

    # -- loading -------------------------------------------------------------------------------------

    def _check_card(self, engine_path: Path, device: int) -> None:
        """A bare engine file must have a card that matches this machine; it cannot be rebuilt without its ONNX."""
        cpath = find_card(engine_path)
        if cpath is None:
            return  # an engine without a card may still deserialise; a version mismatch is caught there
        card = EngineCard.load(cpath)
        env = probe_environment(device)
        expected = EngineCard(
            env.tensorrt_version,
            env.gpu_name,
            env.compute_capability,
            card.precision,
            card.max_batch,
            card.onnx_sha256,
            card.input_hw,
        )
        reason = stale_reason(card, expected)
        if reason:
            raise ModelError(f"{engine_path.name}: {reason}; {rebuild_hint(None, card.precision, card.max_batch)}")

    def _load(self, rebuild: bool, max_batch: int, workspace_mb: int) -> None:
        """Deserialise the engine (rebuilding once on a version-tag error when allowed) and allocate buffers."""
        import tensorrt as trt

        from tracker.backends.engines import _capturing_logger, build_engine

        self._trt = trt
        self._logger = _capturing_logger(trt)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self._engine is None and is_version_mismatch(self._logger.errors):
            if self._onnx_path is None or not rebuild:
                raise ModelError(
                    f"{self.engine_path.name} was built with another TensorRT version; "
                    f"{rebuild_hint(self._onnx_path, self._precision, max_batch)}"
                )
            self._logger.errors.clear()
            cuda = self._cuda
            cuda.Context.pop()  # build_engine pushes its own context
            try:
                card = build_engine(
                    self._onnx_path, self.engine_path, self._precision, max_batch, workspace_mb, self._device
                )
            finally:
                self._cuda_ctx.push()
            del card
            self._engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self._engine is None:
            detail = self._logger.errors[-1] if self._logger.errors else "unknown error"
            raise ModelError(f"cannot load TensorRT engine {self.engine_path}: {detail}")
        self._bind_tensors()
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise ModelError(f"cannot create an execution context for {self.engine_path} (out of GPU memory?)")
        self._allocate()

    def _bind_tensors(self) -> None:
        """Check the engine's I/O tensors against the model contract (one (N, H, W, 1) -> one (N, H, W, 2), float32)."""
        trt, engine = self._trt, self._engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        specs = {mode: [] for mode in (trt.TensorIOMode.INPUT, trt.TensorIOMode.OUTPUT)}
        for name in names:
            specs.setdefault(engine.get_tensor_mode(name), []).append(
                (name, tuple(engine.get_tensor_shape(name)), trt_dtype_name(trt, engine.get_tensor_dtype(name)))
            )
        io = check_model_io(specs[trt.TensorIOMode.INPUT], specs[trt.TensorIOMode.OUTPUT], str(self.engine_path))
        self.input_name, self.output_name, self.input_hw = io.input_name, io.output_name, io.input_hw
        if io.batch is None:  # dynamic batch: the profile's max is the most one call can take
            self._static_batch = None
            self.max_batch = int(engine.get_tensor_profile_shape(self.input_name, 0)[2][0])
        else:
            self._static_batch = io.batch
            self.max_batch = self._static_batch

    def _allocate(self) -> None:
        """Pinned host and device buffers for max_batch, a stream and two events, per slot."""
        cuda = self._cuda
        h, w = self.input_hw
        for _ in range(N_SLOTS):
            host_in = cuda.pagelocked_empty((self.max_batch, h, w, 1), np.float32)
            host_out = cuda.pagelocked_empty((self.max_batch, h, w, 2), np.float32)
            self._slots.append(
                _Slot(
                    host_in=host_in,
                    host_out=host_out,
                    dev_in=cuda.mem_alloc(host_in.nbytes),
                    dev_out=cuda.mem_alloc(host_out.nbytes),
                    stream=cuda.Stream(),
                    computed=cuda.Event(),
                    done=cuda.Event(),
                )
            )

    # -- inference -----------------------------------------------------------------------------------

    @contextmanager
    def _current(self):
        """Make this backend's CUDA context current in the calling thread for the duration of the block."""
        if self._closed:
            raise ModelError("the TensorRT backend is closed")
        try:
            self._cuda_ctx.push()
        except self._cuda.Error as exc:
            raise ModelError(
                f"cannot make the CUDA context current in thread {threading.get_ident()} "
                f"(engine loaded in thread {self.owner_thread}): {exc}"
            ) from None
        try:
            yield
        finally:
            self._cuda.Context.pop()

    def submit(self, batch: np.ndarray) -> int:
        """Start (n, H, W, 1) float32, n <= max_batch, on the GPU without waiting; returns a ticket for collect().

        At most two batches are in flight; a third submit() before collect() raises RuntimeError.
        """
        n = int(batch.shape[0])
        if batch.shape[1:] != (*self.input_hw, 1):
            raise ValueError(f"expected (n, {self.input_hw[0]}, {self.input_hw[1]}, 1), got {batch.shape}")
        if not 1 <= n <= self.max_batch or (self._static_batch is not None and n != self._static_batch):
            limit = f"exactly {self._static_batch}" if self._static_batch else f"1..{self.max_batch}"
            raise ValueError(f"submit() takes batches of {limit}, got {n}; infer() splits larger batches")
        with self._lock, self._current():
            slot = self._slots[self._next_slot]
            if slot.n:
                raise RuntimeError("both buffer slots are in flight: collect() one before submitting another")
            np.copyto(slot.host_in[:n], batch, casting="same_kind")
            cuda, ctx = self._cuda, self._context
            cuda.memcpy_htod_async(slot.dev_in, slot.host_in[:n], slot.stream)  # overlaps the other slot's compute
            if self._last_computed is not None:
                slot.stream.wait_for_event(self._last_computed)  # one execution context: computes run in order
            ctx.set_input_shape(self.input_name, (n, *self.input_hw, 1))
            ctx.set_tensor_address(self.input_name, int(slot.dev_in))
            ctx.set_tensor_address(self.output_name, int(slot.dev_out))
            if not ctx.execute_async_v3(slot.stream.handle):
                raise ModelError(f"TensorRT execution failed: {(self._logger.errors or ['unknown error'])[-1]}")
            slot.computed.record(slot.stream)
            self._last_computed = slot.computed
            cuda.memcpy_dtoh_async(slot.host_out[:n], slot.dev_out, slot.stream)
            slot.done.record(slot.stream)
            self._tickets += 1
            slot.n, slot.ticket = n, self._tickets
            self._next_slot = (self._next_slot + 1) % N_SLOTS
            return slot.ticket

    def collect(self, ticket: int) -> np.ndarray:
        """Wait for a submitted batch; (n, H, W, 2) float32 view of a pinned buffer, reused two submits later."""
        with self._lock:
            slot = next((s for s in self._slots if s.n and s.ticket == ticket), None)
            if slot is None:
                raise ValueError(f"ticket {ticket} is not in flight (already collected?)")
            with self._current():
                slot.done.synchronize()
            n, slot.n = slot.n, 0
            return slot.host_out[:n]

    infer_async = submit
    wait = collect

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W, 1) float32 -> (N, H, W, 2) float32; N > max_batch runs in pipelined chunks.

        The result is a buffer reused by the next call of the same N.
        """
        n = int(batch.shape[0])
        step = self._static_batch or self.max_batch
        if n == step or (self._static_batch is None and n <= step):
            return self.collect(self.submit(batch))
        out = self._outputs.get(n)
        if out is None:
            out = self._outputs[n] = np.empty((n, *self.input_hw, 2), dtype=np.float32)
        pending: list[tuple[int, int, int]] = []  # (ticket, start, stop)
        padded = np.zeros((step, *self.input_hw, 1), dtype=np.float32) if self._static_batch else None
        for start in range(0, n, step):
            stop = min(start + step, n)
            chunk = batch[start:stop]
            if padded is not None and stop - start < step:  # a static engine takes exactly `step` items
                padded[: stop - start] = chunk
                padded[stop - start :] = 0.0
                chunk = padded
            if len(pending) == N_SLOTS:
                ticket, a, b = pending.pop(0)
                out[a:b] = self.collect(ticket)[: b - a]
            pending.append((self.submit(chunk), start, stop))
        for ticket, a, b in pending:
            out[a:b] = self.collect(ticket)[: b - a]
        return out

    # -- teardown ------------------------------------------------------------------------------------

    def close(self) -> None:
        """Wait for work in flight, free buffers, engine and context, and release the CUDA context; idempotent."""
        if self._closed:
            return
        cuda = self._cuda
        self._cuda_ctx.push()
        try:
            for slot in self._slots:
                slot.stream.synchronize()
                slot.dev_in.free()
                slot.dev_out.free()
                for host in (slot.host_in, slot.host_out):
                    if hasattr(host.base, "free"):
                        host.base.free()  # pinned memory goes back now, not when the GC gets to it
            self._slots.clear()
            self._outputs = {}
            # TensorRT objects must be destroyed while their CUDA context is current: context, engine, runtime.
            for attr in ("_context", "_engine", "_runtime"):
                if hasattr(self, attr):
                    setattr(self, attr, None)
            self._last_computed = None
        finally:
            cuda.Context.pop()
            self._cuda_ctx.detach()
            self._closed = True

    def __enter__(self) -> TensorRTBackend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"TensorRTBackend({self.engine_path.name}, input_hw={getattr(self, 'input_hw', None)}, "
            f"max_batch={getattr(self, 'max_batch', None)}, closed={self._closed})"
        )
