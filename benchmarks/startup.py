"""Time to first frame: a fresh interpreter imports the writer, opens a stream, appends.

Usage: python -m benchmarks.startup [--rounds 7] [--frames 10] [--dir DIR] [--json OUT]

What a script, a test suite or a command-line tool pays before its first frame is stored,
ome-stream's ``create_stream`` against ome-writers' on the same settings (tensorstore for
OME-Zarr, tifffile for OME-TIFF). Every measurement is a new interpreter; the two writers
alternate and swap places every round. Printed: medians [min-max] of the import, the
open, the first frame's ``append`` and the close, and ours/ome-writers by the medians of
the time until the first frame is handed over. Not part of CI;
``tests/test_benchmarks_smoke.py`` runs one round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

WRITERS = {"ome-stream": "ome_stream", "ome-writers": "ome_writers"}
FORMATS = {"ome-zarr": ("tensorstore", ".ome.zarr"), "ome-tiff": ("tifffile", ".ome.tiff")}

# run in a fresh interpreter: argv = module, format, backend, path, frames
CHILD = """
import time
start = time.perf_counter()
import importlib, json, sys
module, fmt, backend, path, frames = sys.argv[1:6]
lib = importlib.import_module(module)
import numpy as np
imported = time.perf_counter()
settings = lib.AcquisitionSettings(
    root_path=path,
    dimensions=[
        lib.Dimension(name="t", count=int(frames), chunk_size=1),
        lib.Dimension(name="y", count=512, chunk_size=512, type="space"),
        lib.Dimension(name="x", count=512, chunk_size=512, type="space"),
    ],
    dtype="uint16",
    format={"name": fmt, "backend": backend},
)
frame = np.arange(512 * 512, dtype="uint16").reshape(512, 512)
stream = lib.create_stream(settings)
opened = time.perf_counter()
stream.append(frame)
first = time.perf_counter()
for _ in range(int(frames) - 1):
    stream.append(frame)
stream.close()
closed = time.perf_counter()
print(json.dumps({
    "import": imported - start, "open": opened - imported, "first_append": first - opened,
    "to_first_frame": first - start, "close": closed - first, "total": closed - start,
}))
"""

PHASES = ("import", "open", "first_append", "to_first_frame", "close", "total")


def measure(writer: str, fmt: str, out: Path, frames: int) -> dict[str, Any]:
    """One fresh interpreter: the writer's phases in seconds."""
    backend, suffix = FORMATS[fmt]
    path = out / f"{writer}{suffix}"
    result = subprocess.run(
        [sys.executable, "-c", CHILD, WRITERS[writer], fmt, backend, str(path), str(frames)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{writer} on {fmt} failed:\n{result.stderr}")
    row: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return {"writer": writer, "format": fmt, **row}


def run(rounds: int, frames: int, root: Path) -> list[dict[str, Any]]:
    """Every writer on every format, ``rounds`` times, order swapped each round."""
    rows = []
    for r in range(rounds):
        order = list(WRITERS) if r % 2 == 0 else list(reversed(WRITERS))
        for fmt in FORMATS:
            for writer in order:
                with tempfile.TemporaryDirectory(dir=root) as out:
                    rows.append({"round": r, **measure(writer, fmt, Path(out), frames)})
    return rows


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """The table's lines: medians [min-max] in ms, and ours/ome-writers per format."""
    lines = ["format    writer        " + "".join(f"{p:>22}" for p in PHASES)]
    for fmt in FORMATS:
        medians = {}
        for writer in WRITERS:
            mine = [row for row in rows if row["format"] == fmt and row["writer"] == writer]
            cells = []
            for phase in PHASES:
                values = [1e3 * row[phase] for row in mine]
                cells.append(
                    f"{statistics.median(values):8.0f} [{min(values):.0f}-{max(values):.0f}]"
                )
            medians[writer] = statistics.median(row["to_first_frame"] for row in mine)
            lines.append(f"{fmt:9} {writer:13} " + "".join(f"{c:>22}" for c in cells))
        ratio = medians["ome-writers"] / medians["ome-stream"]
        lines.append(f"{fmt:9} time to first frame, ome-writers / ome-stream: {ratio:.2f}x")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--dir", type=Path, default=None, help="where outputs go")
    parser.add_argument("--json", type=Path, default=None, help="write every row here")
    args = parser.parse_args(argv)
    root = args.dir or Path(tempfile.gettempdir())
    root.mkdir(parents=True, exist_ok=True)
    rows = run(args.rounds, args.frames, root)
    print("\n".join(summary(rows)))
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
