"""The ``ome-stream`` command: a demo acquisition and dataset inspection.

``ome-stream demo [PATH]`` simulates a camera streaming into any format and backend and
reports throughput, buffer use, late frames and event-loop lag. ``ome-stream info PATH``
describes a dataset (images, channels, pixel sizes, positions, wells) from its files and
validates its metadata.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any, NoReturn, TextIO

import anyio
import numpy as np
from pydantic import ValidationError

from ome_stream._camera import SimulatedCamera
from ome_stream.errors import WriterError
from ome_stream.settings import AcquisitionSettings, Dimension
from ome_stream.stream import open_stream

__all__ = ["build_parser", "main", "parse_dims", "settings_error"]

DEFAULT_DIMS = "t:40,c:2,y:512:256,x:512:256"
DEFAULT_PATH = "ome-stream-demo.ome.zarr"


def parse_dims(spec: str) -> list[Dimension]:
    """Parse ``name:count[:chunk[:shard_chunks]],...`` (count ``inf`` = unbounded).

    The name ``p`` makes a position dimension of ``count`` positions.

    Examples
    --------
    >>> [d.count for d in parse_dims("t:inf,y:64:32,x:64:32")]
    [None, 64, 64]

    """
    dims: list[Dimension] = []
    for item in spec.split(","):
        parts = item.strip().split(":")
        if len(parts) < 2 or len(parts) > 4:
            raise argparse.ArgumentTypeError(
                f"dimension {item!r}: expected name:count[:chunk[:shard_chunks]]"
            )
        name, count, *rest = parts
        try:
            size = None if count.lower() in ("inf", "none", "?") else int(count)
            chunk = int(rest[0]) if rest else None
            shard = int(rest[1]) if len(rest) > 1 else None
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"dimension {item!r}: count, chunk and shard must be integers"
            ) from None
        try:
            if name == "p" and size is not None:
                dims.append(Dimension(name="p", type="position", count=size))
                continue
            dims.append(Dimension(name=name, count=size, chunk_size=chunk, shard_size_chunks=shard))
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"dimension {item!r}: {err}") from None
    return dims


@dataclass
class DemoReport:
    """What a demo acquisition measured."""

    frames: int
    seconds: float
    requested_fps: float
    frame_bytes: int
    peak_buffered_bytes: int
    buffer_budget_bytes: int
    late_frames: int
    worst_loop_lag_ms: float
    append_wait_ms: dict[str, float] = field(default_factory=dict)
    output_path: str = ""

    @property
    def fps(self) -> float:
        """Achieved frames per second, from open to close."""
        return self.frames / self.seconds if self.seconds else 0.0

    @property
    def megabytes_per_second(self) -> float:
        """Pixel data written per second (MB = 10**6 bytes)."""
        return self.frames * self.frame_bytes / self.seconds / 1e6 if self.seconds else 0.0

    def text(self) -> str:
        """Human-readable summary."""
        requested = f"{self.requested_fps:.1f}" if self.requested_fps else "unlimited"
        wait = self.append_wait_ms
        return "\n".join(
            [
                f"wrote {self.output_path}",
                f"frames:            {self.frames} in {self.seconds:.2f} s",
                f"rate:              {self.fps:.1f} fps achieved (requested {requested}), "
                f"{self.megabytes_per_second:.1f} MB/s",
                f"buffer:            peak {self.peak_buffered_bytes / 1e6:.1f} MB of a "
                f"{self.buffer_budget_bytes / 1e6:.1f} MB budget",
                f"late frames:       {self.late_frames} (would be dropped by a camera "
                "with a one-frame buffer)",
                f"event-loop lag:    worst {self.worst_loop_lag_ms:.2f} ms",
                f"append wait:       p50 {wait['p50']:.3f} ms, p99 {wait['p99']:.3f} ms, "
                f"max {wait['max']:.3f} ms",
            ]
        )


class _Progress:
    def __init__(self, total: int, stream: TextIO, enabled: bool) -> None:
        self.total, self.stream, self.enabled = total, stream, enabled
        self._last = 0.0

    def update(self, done: int, fps: float, buffered: int, force: bool = False) -> None:
        now = time.perf_counter()
        if not self.enabled or (not force and now - self._last < 0.1):
            return
        self._last = now
        width = 30
        filled = int(width * done / self.total) if self.total else 0
        bar = "#" * filled + "." * (width - filled)
        self.stream.write(
            f"\r[{bar}] {done}/{self.total} frames  {fps:7.1f} fps  "
            f"buffered {buffered / 1e6:6.1f} MB"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()


class _Heartbeat:
    """Measures event-loop lag: how late a short periodic sleep wakes up."""

    def __init__(self, period: float = 0.005) -> None:
        self.period = period
        self.worst = 0.0

    async def run(self) -> None:
        while True:
            before = time.perf_counter()
            await anyio.sleep(self.period)
            self.worst = max(self.worst, time.perf_counter() - before - self.period)


async def run_demo(
    settings: AcquisitionSettings,
    *,
    frames: int,
    fps: float,
    max_buffer_bytes: int | None = None,
    progress: bool = False,
) -> DemoReport:
    """Acquire ``frames`` simulated frames into ``settings`` and measure the run."""
    camera = SimulatedCamera(settings.frame_shape, settings.dtype, fps)
    period = 1.0 / fps if fps > 0 else 0.0
    bar = _Progress(frames, sys.stderr, progress)
    heartbeat = _Heartbeat()
    stream = open_stream(settings, max_buffer_bytes=max_buffer_bytes)
    waits: list[float] = []
    late = 0
    start = time.perf_counter()
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(heartbeat.run)
            async with stream:
                first = 0.0
                async for frame in camera.frames(frames):
                    now = time.perf_counter()
                    first = first or now  # the camera's schedule starts with its first frame
                    if period and now - (first + len(waits) * period) > period:
                        late += 1
                    await stream.append(frame)
                    waits.append(time.perf_counter() - now)
                    elapsed = time.perf_counter() - start
                    bar.update(len(waits), len(waits) / elapsed, stream.stats.bytes_buffered)
            seconds = time.perf_counter() - start
            tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # the heartbeat's task group wraps stream errors
        if len(group.exceptions) == 1 and isinstance(group.exceptions[0], Exception):
            raise group.exceptions[0] from None
        raise
    bar.update(len(waits), len(waits) / seconds, 0, force=True)
    bar.close()
    ms = np.array(waits or [0.0]) * 1e3
    return DemoReport(
        frames=len(waits),
        seconds=seconds,
        requested_fps=fps,
        frame_bytes=stream.layout.frame_nbytes,
        peak_buffered_bytes=stream.stats.peak_bytes_buffered,
        buffer_budget_bytes=stream.capacity * stream.layout.frame_nbytes,
        late_frames=late,
        worst_loop_lag_ms=heartbeat.worst * 1e3,
        append_wait_ms={
            "p50": float(np.percentile(ms, 50)),
            "p99": float(np.percentile(ms, 99)),
            "max": float(ms.max()),
        },
        output_path=settings.output_path,
    )


# which command-line option sets each settings field, and the attribute holding its value
_OPTIONS = {
    "root_path": ("PATH", "path"),
    "dimensions": ("--dims", None),
    "dtype": ("--dtype", "dtype"),
    "format": ("--format/--backend", None),
    "compression": ("--compression", "compression"),
    "overwrite": ("--overwrite", None),
}


def settings_error(err: ValidationError, args: argparse.Namespace) -> str:
    """A settings validation error as one line naming the option and the value given."""
    parts = []
    for error in err.errors(include_url=False):
        if (error["type"] == "literal_error" and error.get("input") != "") or (
            error["type"] == "too_long" and (error.get("ctx") or {}).get("max_length") == 0
        ):
            continue  # the "not set yet" branch of a field (dtype="", dimensions=()) says nothing
        message = str(error["msg"]).removeprefix("Value error, ")
        loc = error["loc"] or (message.split()[0].rstrip(":"),)  # a model check names its field
        if loc[0] in ("frame", "backend"):
            loc = ("dimensions",) if loc[0] == "frame" else ("format",)
        option, attribute = _OPTIONS.get(str(loc[0]), (None, None)) if loc else (None, None)
        if option is None:
            parts.append(message)
            continue
        if option.startswith("--format"):
            given = [
                f"{o} {v}" for o, v in (("--format", args.format), ("--backend", args.backend)) if v
            ]
            option = " ".join(given) or option
        elif attribute is not None and getattr(args, attribute, None) is not None:
            option = f"{option} {getattr(args, attribute)}"
        parts.append(f"{option}: {message.removeprefix(f'{loc[0]}: ')}")
    return "; ".join(parts)


def _demo(args: argparse.Namespace) -> int:
    dims = args.dims
    fmt: Any = None
    if args.backend:
        fmt = {"name": args.format, "backend": args.backend} if args.format else args.backend
    elif args.format:
        fmt = args.format
    path = args.path or (DEFAULT_PATH if fmt in (None, "ome-zarr") else f"ome-stream-demo.{fmt}")
    if isinstance(dims[0], Dimension) and dims[0].count is None and args.frames is None:
        print("ome-stream demo: an unbounded first dimension needs --frames N", file=sys.stderr)
        return 2
    try:
        settings = AcquisitionSettings(
            root_path=path,
            dimensions=dims,
            dtype=args.dtype,
            format=fmt,
            compression=args.compression,
            overwrite=args.overwrite,
        )
    except ValidationError as err:
        print(f"ome-stream demo: {settings_error(err, args)}", file=sys.stderr)
        return 2
    total = settings.num_frames
    frames = args.frames if args.frames is not None else total
    assert frames is not None
    if total is not None and frames > total:
        print(
            f"ome-stream demo: --frames {frames} exceeds the {total} frames of --dims",
            file=sys.stderr,
        )
        return 2
    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    try:
        report = anyio.run(
            lambda: run_demo(
                settings,
                frames=frames,
                fps=args.fps,
                max_buffer_bytes=args.max_buffer_mb * 1_000_000 if args.max_buffer_mb else None,
                progress=progress,
            )
        )
    except FileExistsError as err:  # the library's advice names the keyword, not the option
        message = str(err).replace("pass overwrite=True", "pass --overwrite")
        print(
            f"ome-stream demo: {message.replace('overwrite=True', '--overwrite')}", file=sys.stderr
        )
        return 1
    except (ImportError, WriterError) as err:
        print(f"ome-stream demo: {err}", file=sys.stderr)
        return 1
    if args.json:
        doc = {**report.__dict__, "fps": report.fps, "mb_per_s": report.megabytes_per_second}
        print(json.dumps(doc, indent=2))
    else:
        print(report.text())
    return 0


def _info(args: argparse.Namespace) -> int:
    from ome_stream.dataset_info import describe, render, to_json

    try:
        info = describe(args.path)
    except (FileNotFoundError, ValueError) as err:
        print(f"ome-stream info: {err}", file=sys.stderr)
        return 1
    print(to_json(info) if args.json else render(info))
    return 1 if info["problems"] else 0


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (no usage dump), exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser of ``ome-stream``."""
    parser = _Parser(prog="ome-stream", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    demo = sub.add_parser("demo", help="stream a simulated camera into a dataset")
    demo.add_argument("path", nargs="?", help=f"output path (default {DEFAULT_PATH})")
    demo.add_argument(
        "--dims",
        type=parse_dims,
        default=parse_dims(DEFAULT_DIMS),
        help=f"name:count[:chunk[:shard_chunks]],... (default {DEFAULT_DIMS})",
    )
    demo.add_argument("--format", choices=["ome-zarr", "ome-tiff"], help="output format")
    demo.add_argument("--backend", help="tensorstore, zarr-python, acquire-zarr or tifffile")
    demo.add_argument("--compression", help="e.g. blosc-zstd, zstd, zlib, lzw, none")
    demo.add_argument(
        "--fps",
        type=float,
        default=200.0,
        help="camera frame rate; 0 = as fast as storage takes them (default 200)",
    )
    demo.add_argument("--frames", type=int, help="number of frames (default: all of --dims)")
    demo.add_argument("--dtype", default="uint16", help="pixel type (default uint16)")
    demo.add_argument("--max-buffer-mb", type=int, help="buffer budget in MB (default 256 MiB)")
    demo.add_argument(
        "--overwrite",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="replace an existing dataset at PATH (default: yes)",
    )
    demo.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: when stderr is a terminal)",
    )
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    demo.set_defaults(run=_demo)
    info = sub.add_parser(
        "info",
        help="what a dataset holds: images, channels, pixel sizes, positions, wells",
        description="Describe an OME-Zarr or OME-TIFF dataset from its files and validate "
        "its metadata (exit status 1 if invalid).",
    )
    info.add_argument("path", help="OME-Zarr root, OME-TIFF file, or directory of OME-TIFFs")
    info.add_argument("--json", action="store_true", help="print the description as JSON")
    info.set_defaults(run=_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ome-stream`` command."""
    args = build_parser().parse_args(argv)
    status: int = args.run(args)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
