"""Unbounded time: stop whenever you like; the time axis is trimmed to what was acquired.

Usage: python examples/unbounded.py OUTPUT_DIR [ome-zarr|ome-tiff] [N_TIMEPOINTS]
"""

import sys
from pathlib import Path

import numpy as np

from ome_stream import AcquisitionSettings, Dimension, create_stream

DISHES = ["dish-1", "dish-2", "dish-3"]  # visited in turn at every time point


def main(output_dir: Path, fmt: str = "ome-zarr", timepoints: str = "5") -> str:
    settings = AcquisitionSettings(
        root_path=output_dir / "unbounded",
        format=fmt,
        dimensions=[
            Dimension(name="t", count=None, type="time", unit="s"),
            Dimension(name="p", type="position", coords=DISHES),
            Dimension(name="y", count=96, chunk_size=48, type="space"),
            Dimension(name="x", count=96, chunk_size=48, type="space"),
        ],
        dtype="uint16",
        overwrite=True,
    )
    with create_stream(settings) as stream:
        for i in range(int(timepoints) * len(DISHES)):  # the acquisition decides when to stop
            stream.append(np.full((96, 96), i, dtype="uint16"))
    return settings.output_path


if __name__ == "__main__":
    print(main(Path(sys.argv[1]), *sys.argv[2:]))
