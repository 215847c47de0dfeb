"""Event-driven acquisition: a 3D dataset with an unbounded first axis, each frame's
context in its metadata (position, timestamp, channel), to be arranged afterwards.

Uses the async API, as an event-driven microscope controller would.

Usage: python examples/event_driven.py OUTPUT_DIR [ome-zarr|ome-tiff]
"""

import sys
from pathlib import Path

import anyio
import numpy as np

from ome_stream import AcquisitionSettings, Dimension, open_stream

EVENTS = [  # what a smart microscope might decide to do, in order
    {"position": "cell-1", "channel": "GFP", "timestamp": 0.0},
    {"position": "cell-1", "channel": "DAPI", "timestamp": 0.4},
    {"position": "cell-7", "channel": "GFP", "timestamp": 1.1},
    {"position": "cell-1", "channel": "GFP", "timestamp": 2.0},
    {"position": "cell-3", "channel": "mCherry", "timestamp": 2.6},
]


async def acquire(output_dir: Path, fmt: str = "ome-zarr") -> str:
    settings = AcquisitionSettings(
        root_path=output_dir / "event_driven",
        format=fmt,
        dimensions=[
            Dimension(name="t", count=None, type="time", unit="s"),
            Dimension(name="y", count=64, chunk_size=64, type="space"),
            Dimension(name="x", count=64, chunk_size=64, type="space"),
        ],
        dtype="uint16",
        overwrite=True,
    )
    async with open_stream(settings) as stream:
        for i, event in enumerate(EVENTS):
            frame = np.full((64, 64), i, dtype="uint16")
            await stream.append(frame, metadata={**event, "delta_t": event["timestamp"]})
    return settings.output_path


def main(output_dir: Path, fmt: str = "ome-zarr") -> str:
    return anyio.run(acquire, output_dir, fmt)


if __name__ == "__main__":
    print(main(Path(sys.argv[1]), *sys.argv[2:]))
