"""Runs one (case, writer) measurement in a fresh process and prints a JSON result.

Usage: python -m benchmarks.worker CASE WRITER OUTDIR [--quick]

Frames are generated before anything is timed; the baseline RSS is taken after that, so
"peak extra memory" is what the writer itself adds. Wall time runs from opening the
writer until its data is synced to disk (``os.sync``). The output is left in place: the
runner deletes a whole batch at once, after every writer of the batch has run, so that no
measured writer pays for the deletes of another (see ``benchmarks/run.py``).

The ome-writers rows run this module with the interpreter of a separate virtualenv, where
``ome_stream`` is not installed: only ``benchmarks/`` and the camera module are needed.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from benchmarks.cases import FULL, QUICK, Case

_CAMERA = Path(__file__).parent.parent / "src" / "ome_stream" / "_camera.py"


def camera_frames(count: int, shape: tuple[int, int]) -> np.ndarray:
    """The simulated camera's frames, loaded without importing the ome_stream package."""
    spec = importlib.util.spec_from_file_location("_bench_camera", _CAMERA)
    if spec is None or spec.loader is None:  # pragma: no cover - an installed ome-stream
        from ome_stream._camera import camera_frames as frames
    else:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        frames = module.camera_frames
    result: np.ndarray = frames(count, shape)
    return result


class RssSampler:
    """Samples this process's RSS every few milliseconds in a thread."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self.baseline = self._process.memory_info().rss
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds of every thread of this process so far: (user, kernel)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def dims_kwargs(case: Case) -> list[dict[str, Any]]:
    return [
        {
            "name": d[0],
            "count": d[1],
            "chunk_size": d[2],
            **({"shard_size_chunks": d[3]} if len(d) > 3 else {}),
        }
        for d in case.dims
    ]


# ------------------------------------------------------------------ writers
def ome_stream_settings(case: Case, backend: str, root: Path) -> Any:
    from ome_stream import AcquisitionSettings, Dimension, Pyramid

    return AcquisitionSettings(
        root_path=str(root),
        dimensions=[Dimension(**d) for d in dims_kwargs(case)],
        dtype="uint16",
        format={"name": case.fmt, "backend": backend},
        compression=case.compression,
        pyramid=Pyramid(levels=case.pyramid) if case.pyramid else None,
        overwrite=True,
    )


def run_ome_stream(case: Case, backend: str, root: Path, frames: np.ndarray) -> dict[str, Any]:
    """The async core: ``open_stream``, fed from a task, a heartbeat task beside it."""
    import anyio

    from ome_stream import open_stream

    settings = ome_stream_settings(case, backend, root)
    waits: list[float] = []
    lags: list[float] = []

    async def heartbeat() -> None:
        while True:
            before = time.perf_counter()
            await anyio.sleep(0.005)
            lags.append(time.perf_counter() - before - 0.005)

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(heartbeat)
            async with open_stream(settings) as stream:
                for i in range(case.frames):
                    before = time.perf_counter()
                    # the camera hands its buffer over: no copy (a real driver's ring buffer
                    # would be released when the frame is written)
                    await stream.append(frames[i % len(frames)], copy=False)
                    waits.append(time.perf_counter() - before)
            tg.cancel_scope.cancel()

    anyio.run(main)
    lags = lags or [0.0]
    return {"waits": waits, "loop_lag": max(lags), "loop_lag_p99": float(np.percentile(lags, 99))}


def run_sync(case: Case, backend: str, root: Path, frames: np.ndarray) -> dict[str, Any]:
    """The drop-in facade: ``create_stream`` called like ome-writers' (frames not copied,
    as in the async row, so the two differ only by the facade)."""
    from ome_stream import create_stream

    settings = ome_stream_settings(case, backend, root)
    waits = []
    with create_stream(settings) as stream:
        for i in range(case.frames):
            before = time.perf_counter()
            stream.append(frames[i % len(frames)], copy=False)
            waits.append(time.perf_counter() - before)
    return {"waits": waits, "loop_lag": None}


def run_ome_writers(case: Case, backend: str, root: Path, frames: np.ndarray) -> dict[str, Any]:
    import ome_writers

    settings = ome_writers.AcquisitionSettings(
        root_path=str(root),
        dimensions=[ome_writers.Dimension(**d) for d in dims_kwargs(case)],
        dtype="uint16",
        format={"name": case.fmt, "backend": backend},
        compression=case.compression,
        overwrite=True,
    )
    waits = []
    with ome_writers.create_stream(settings) as stream:
        for i in range(case.frames):
            before = time.perf_counter()
            stream.append(frames[i % len(frames)])
            waits.append(time.perf_counter() - before)
    return {"waits": waits, "loop_lag": None}


def run_raw_tensorstore(case: Case, root: Path, frames: np.ndarray) -> dict[str, Any]:
    """The engine ceiling: tensorstore alone, one chunk-aligned write per frame, 8 in flight."""
    import tensorstore as ts

    from ome_stream.backends.tensorstore import zarr_codecs

    shape = [case.frames, *case.frame_shape]
    chunks = [1, *(d[2] for d in case.dims[-2:])]
    spec = {
        "driver": "zarr3",
        "kvstore": {"driver": "file", "path": str(root / "0")},
        "metadata": {"shape": shape, "data_type": "uint16",
                     "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunks}},
                     "codecs": zarr_codecs(case.compression, 2)},
        "create": True, "delete_existing": True,
    }  # fmt: skip
    array = ts.open(spec, context=ts.Context({"cache_pool": {"total_bytes_limit": 0}})).result()
    pending: list[Any] = []
    waits = []
    for i in range(case.frames):
        before = time.perf_counter()
        pending.append(array[i].write(frames[i % len(frames)]).commit)
        if len(pending) >= 8:
            pending.pop(0).result()
        waits.append(time.perf_counter() - before)
    for future in pending:
        future.result()
    return {"waits": waits, "loop_lag": None}


def run_raw_acquire_zarr(case: Case, root: Path, frames: np.ndarray) -> dict[str, Any]:
    """The engine alone: acquire-zarr with the case's chunks and shards, blosc-zstd level 3
    (the peers' level), one ``append`` per frame from this thread."""
    import acquire_zarr as az

    kinds = {"t": az.DimensionType.TIME, "c": az.DimensionType.CHANNEL}
    dims = [
        az.Dimension(
            name=d[0],
            kind=kinds.get(d[0], az.DimensionType.SPACE),
            array_size_px=d[1] or 0,
            chunk_size_px=d[2],
            shard_size_chunks=d[3] if len(d) > 3 else 1,
        )
        for d in case.dims
    ]
    array: dict[str, Any] = {"output_key": "0", "dimensions": dims, "data_type": "uint16"}
    if case.compression:
        codec = {"blosc-zstd": az.CompressionCodec.BLOSC_ZSTD}[case.compression]
        array["compression"] = az.CompressionSettings(
            compressor=az.Compressor.BLOSC1, codec=codec, level=3, shuffle=1
        )
    stream = az.ZarrStream(
        az.StreamSettings(store_path=str(root), arrays=[az.ArraySettings(**array)], overwrite=True)
    )
    waits = []
    for i in range(case.frames):
        before = time.perf_counter()
        stream.append(frames[i % len(frames)], key="0")
        waits.append(time.perf_counter() - before)
    stream.close()
    return {"waits": waits, "loop_lag": None}


def run_raw_tifffile(case: Case, root: Path, frames: np.ndarray) -> dict[str, Any]:
    """The engine ceiling: tifffile alone, one contiguous BigTIFF series."""
    import tifffile

    waits = []
    kwargs: dict[str, Any] = {}
    if case.compression:
        kwargs = {"compression": case.compression, "tile": (256, 256), "maxworkers": 2}
    with tifffile.TiffWriter(root, bigtiff=True, ome=False) as tif:
        for i in range(case.frames):
            before = time.perf_counter()
            tif.write(
                frames[i % len(frames)], contiguous=not case.compression, metadata=None, **kwargs
            )
            waits.append(time.perf_counter() - before)
    return {"waits": waits, "loop_lag": None}


def chunk_files(case: Case, root: Path) -> list[tuple[Path, tuple[slice, slice]]]:
    """Where a zarr v3 writer puts each chunk of a frame (``0/c/<chunk indices>``) and the
    frame's region it holds, for every frame in acquisition order (no shards)."""
    counts = [d[1] if d[1] is not None else case.frames for d in case.dims[:-2]]
    (_, height, chunk_y), (_, width, chunk_x) = (d[:3] for d in case.dims[-2:])
    regions = [
        ((cy, cx), (slice(y, y + chunk_y), slice(x, x + chunk_x)))
        for cy, y in enumerate(range(0, height, chunk_y))
        for cx, x in enumerate(range(0, width, chunk_x))
    ]
    out = []
    for index in np.ndindex(*counts):  # frame chunks are 1 along every non-frame axis
        for (cy, cx), region in regions:
            out.append((root / "0" / "c" / "/".join(map(str, (*index, cy, cx))), region))
    return out


def run_files(case: Case, root: Path, frames: np.ndarray) -> dict[str, Any]:
    """The floor of one object per chunk: the chunk files a zarr writer makes for ``case``,
    same paths and bytes, written with plain ``open``/``write`` (no zarr, no fsync)."""
    files = chunk_files(case, root)
    per_frame = len(files) // case.frames
    waits = []
    for i in range(case.frames):
        before = time.perf_counter()
        frame = frames[i % len(frames)]
        for path, region in files[i * per_frame : (i + 1) * per_frame]:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "wb") as fh:
                fh.write(np.ascontiguousarray(frame[region]).tobytes())
        waits.append(time.perf_counter() - before)
    return {"waits": waits, "loop_lag": None}


def run_disk(case: Case, root: Path, frames: np.ndarray) -> dict[str, Any]:
    """Sequential write + fsync of the same number of bytes, 8 MiB at a time."""
    total = case.frames * case.frame_bytes
    block = np.ascontiguousarray(frames[0]).tobytes()
    block = (block * (8 * 2**20 // len(block) + 1))[: 8 * 2**20]
    written = 0
    with open(root, "wb") as fh:
        while written < total:
            fh.write(block[: min(len(block), total - written)])
            written += min(len(block), total - written)
        fh.flush()
        os.fsync(fh.fileno())
    return {"waits": [], "loop_lag": None}


def preload(writer: str) -> None:
    """Import the writer's package and engine before anything is timed or sampled."""
    family, _, backend = writer.partition("/")
    engine = {"zarr-python": "zarr", "zarrs-python": "zarrs", "acquire-zarr": "acquire_zarr"}
    if family in ("ome-stream", "sync"):
        from ome_stream.backends.base import load_backend

        load_backend(backend)
    elif family == "ome-writers":
        importlib.import_module("ome_writers")
    if family not in ("disk", "files"):
        importlib.import_module(engine.get(backend, backend))


def measure(case: Case, writer: str, out: Path) -> dict[str, Any]:
    frames = camera_frames(8, case.frame_shape)
    suffix = ".ome.tiff" if case.fmt == "ome-tiff" or writer == "raw/tifffile" else ".ome.zarr"
    root = out / f"{case.name}-{writer.replace('/', '-')}{'' if writer == 'disk' else suffix}"
    family, _, backend = writer.partition("/")
    preload(writer)
    user_before, kernel_before = cpu_seconds()
    with RssSampler() as rss:
        start = time.perf_counter()
        if writer == "disk":
            result = run_disk(case, root, frames)
        elif writer == "files":
            result = run_files(case, root, frames)
        elif family == "ome-stream":
            result = run_ome_stream(case, backend, root, frames)
        elif family == "sync":
            result = run_sync(case, backend, root, frames)
        elif family == "ome-writers":
            result = run_ome_writers(case, backend, root, frames)
        elif writer == "raw/tensorstore":
            result = run_raw_tensorstore(case, root, frames)
        elif writer == "raw/acquire-zarr":
            result = run_raw_acquire_zarr(case, root, frames)
        else:
            result = run_raw_tifffile(case, root, frames)
        closed = time.perf_counter()
        os.sync()
        synced = time.perf_counter()
    user_after, kernel_after = cpu_seconds()
    kernel = kernel_after - kernel_before
    cpu = user_after - user_before + kernel
    waits = np.array(result["waits"] or [0.0]) * 1e3
    nbytes = case.frames * case.frame_bytes
    seconds = synced - start
    return {
        "case": case.name,
        "writer": writer,
        "seconds": seconds,
        "close_seconds": closed - start,
        "fps": case.frames / seconds,
        "gb_per_s": nbytes / seconds / 1e9,
        "peak_rss_mb": (rss.peak - rss.baseline) / 1e6,
        "cpu_seconds": cpu,
        "kernel_cpu_seconds": kernel,
        "append_ms": {
            q: float(np.percentile(waits, p)) for q, p in (("p50", 50), ("p99", 99), ("max", 100))
        },
        "loop_lag_ms": None if result["loop_lag"] is None else result["loop_lag"] * 1e3,
        "loop_lag_p99_ms": None
        if result.get("loop_lag_p99") is None
        else result["loop_lag_p99"] * 1e3,
        "load_1min": os.getloadavg()[0],
    }


def main(argv: list[str]) -> None:
    case_name, writer, out = argv[:3]
    cases = QUICK if "--quick" in argv else FULL
    print(json.dumps(measure(cases[case_name], writer, Path(out))))


if __name__ == "__main__":
    main(sys.argv[1:])
