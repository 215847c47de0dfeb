"""Multiple positions: for each time point visit each position, then channels and z.

OME-Zarr writes one image per position (bioformats2raw layout); OME-TIFF one file per
position in a directory.

Usage: python examples/multiposition.py OUTPUT_DIR [ome-zarr|ome-tiff]
"""

import sys
from pathlib import Path

import numpy as np

from ome_stream import AcquisitionSettings, Dimension, create_stream


def main(output_dir: Path, fmt: str = "ome-zarr") -> str:
    settings = AcquisitionSettings(
        root_path=output_dir / "multiposition",
        format=fmt,
        dimensions=[
            Dimension(name="t", count=2, chunk_size=1, type="time"),
            Dimension(name="p", type="position", coords=["Pos0", "Pos1"]),
            Dimension(name="c", count=3, chunk_size=1, type="channel"),
            Dimension(name="z", count=4, chunk_size=1, type="space", scale=5, unit="um"),
            Dimension(name="y", count=128, chunk_size=64, type="space", scale=2, unit="um"),
            Dimension(name="x", count=128, chunk_size=64, type="space", scale=2, unit="um"),
        ],
        dtype="uint16",
        overwrite=True,
    )
    with create_stream(settings) as stream:
        for i in range(settings.num_frames or 0):
            stream.append(np.full((128, 128), i, dtype="uint16"))
    return settings.output_path


if __name__ == "__main__":
    print(main(Path(sys.argv[1]), *sys.argv[2:]))
