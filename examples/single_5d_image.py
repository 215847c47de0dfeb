"""Single 5D image: at each time point, for each channel, acquire a z stack.

Usage: python examples/single_5d_image.py OUTPUT_DIR [ome-zarr|ome-tiff]
"""

import sys
from pathlib import Path

import numpy as np

from ome_stream import AcquisitionSettings, Dimension, create_stream


def main(output_dir: Path, fmt: str = "ome-zarr") -> str:
    settings = AcquisitionSettings(
        root_path=output_dir / "single_5d",
        format=fmt,
        dimensions=[
            Dimension(name="t", count=2, chunk_size=1, type="time"),
            Dimension(name="c", count=3, chunk_size=1, type="channel"),
            Dimension(name="z", count=4, chunk_size=1, type="space", scale=0.5, unit="um"),
            Dimension(name="y", count=256, chunk_size=128, type="space", scale=0.1, unit="um"),
            Dimension(name="x", count=256, chunk_size=128, type="space", scale=0.1, unit="um"),
        ],
        dtype="uint16",
        overwrite=True,
    )
    with create_stream(settings) as stream:
        for i in range(settings.num_frames or 0):
            stream.append(np.full((256, 256), i, dtype="uint16"))  # frame i holds the value i
    return settings.output_path


if __name__ == "__main__":
    print(main(Path(sys.argv[1]), *sys.argv[2:]))
