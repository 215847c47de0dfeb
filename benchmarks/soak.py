"""Soak test: an unbounded acquisition at a fixed rate, memory sampled all along.

Usage: python -m benchmarks.soak [--minutes 30] [--fps 50] [--backend tensorstore]
       [--shape 512] [--dir DIR]

Prints one line per sample (elapsed s, frames, RSS MB) and a verdict: the RSS growth
between the first and the last quarter of the run, which must stay flat (well under the
buffer budget). Not part of CI; `tests/test_benchmarks_smoke.py` runs it for a few seconds.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import anyio
import psutil

from ome_stream import AcquisitionSettings, dims_from_standard_axes, open_stream
from ome_stream._camera import SimulatedCamera


async def soak(seconds: float, fps: float, backend: str, shape: int, out: Path) -> dict[str, float]:
    suffix = ".ome.tiff" if backend == "tifffile" else ".ome.zarr"
    settings = AcquisitionSettings(
        root_path=out / f"soak{suffix}",
        format=backend,
        dtype="uint16",
        overwrite=True,
        dimensions=dims_from_standard_axes({"t": None, "y": shape, "x": shape}),
        max_buffer_bytes=64 * 2**20,
    )
    camera = SimulatedCamera((shape, shape), fps=fps)
    process = psutil.Process()
    samples: list[tuple[float, int, float]] = []
    start = time.perf_counter()
    async with open_stream(settings) as stream:
        next_sample = 0.0
        async for frame in camera.frames(None):
            await stream.append(frame)
            elapsed = time.perf_counter() - start
            if elapsed >= next_sample:
                rss = process.memory_info().rss / 1e6
                samples.append((elapsed, stream.stats.frames_written, rss))
                print(
                    f"{elapsed:8.1f} s  {stream.stats.frames_written:8d} frames  {rss:8.1f} MB",
                    flush=True,
                )
                next_sample += max(1.0, seconds / 60)
            if elapsed >= seconds:
                break
    quarter = max(1, len(samples) // 4)
    first = sum(s[2] for s in samples[:quarter]) / quarter
    last = sum(s[2] for s in samples[-quarter:]) / quarter
    shutil.rmtree(out / f"soak{suffix}", ignore_errors=True)
    return {
        "seconds": time.perf_counter() - start,
        "frames": stream.stats.frames_written,
        "rss_first_quarter_mb": first,
        "rss_last_quarter_mb": last,
        "growth_mb": last - first,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, help="overrides --minutes (short runs)")
    parser.add_argument("--fps", type=float, default=50.0)
    parser.add_argument("--backend", default="tensorstore")
    parser.add_argument("--shape", type=int, default=512)
    parser.add_argument("--dir", type=Path)
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    out = args.dir or Path(tempfile.mkdtemp(prefix="ome-stream-soak-"))
    result = anyio.run(soak, seconds, args.fps, args.backend, args.shape, out)
    flat = result["growth_mb"] < 32
    print(
        f"frames {result['frames']:.0f} in {result['seconds']:.0f} s; RSS first quarter "
        f"{result['rss_first_quarter_mb']:.1f} MB, last quarter "
        f"{result['rss_last_quarter_mb']:.1f} MB: growth {result['growth_mb']:+.1f} MB "
        f"({'flat' if flat else 'GROWING'})"
    )
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
