"""Unbounded time: stop whenever you like; the time axis is trimmed to what was acquired.

Usage: python examples/unbounded.py OUTPUT_DIR [ome-zarr|ome-tiff] [N_TIMEPOINTS]
"""

import sys
from pathlib import Path

import numpy as np

from ome_stream import AcquisitionSettings, Dimension, create_stream


def main(output_dir: Path, fmt: str = "ome-zarr", timepoints: str = "5") -> str:
    settings = AcquisitionSettings(
        root_path=output_dir / "unbounded",
        format=fmt,
        dimensions=[
            Dimension(name="t", count=None, type="time"),
            Dimension(name="p", type="position", coords=["Pos0", "Pos1"]),
            Dimension(name="y", count=128, chunk_size=64, type="space"),
            Dimension(name="x", count=128, chunk_size=64, type="space"),
        ],
        dtype="uint16",
        overwrite=True,
    )
    with create_stream(settings) as stream:
        for i in range(int(timepoints) * 2):  # the acquisition decides when to stop
            stream.append(np.full((128, 128), i, dtype="uint16"))
    return settings.output_path


if __name__ == "__main__":
    print(main(Path(sys.argv[1]), *sys.argv[2:]))
