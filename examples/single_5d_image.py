"""Single 5D image: at each time point, for each channel, acquire a z stack.

Usage: python examples/single_5d_image.py OUTPUT_DIR [ome-zarr|ome-tiff]
"""

import sys
from pathlib import Path

import numpy as np

from ome_stream import AcquisitionSettings, Dimension, create_stream

FRAME = (192, 192)  # camera pixels (binned), 0.13 µm each


def main(output_dir: Path, fmt: str = "ome-zarr") -> str:
    settings = AcquisitionSettings(
        root_path=output_dir / "single_5d",
        format=fmt,
        dimensions=[
            Dimension(name="t", count=3, type="time", unit="s"),
            Dimension(name="c", count=2, type="channel", coords=["DAPI", "GFP"]),
            Dimension(name="z", count=5, type="space", scale=0.4, unit="micrometer"),
            Dimension(name="y", count=FRAME[0], chunk_size=96, scale=0.13, unit="micrometer"),
            Dimension(name="x", count=FRAME[1], chunk_size=96, scale=0.13, unit="micrometer"),
        ],
        dtype="uint16",
        overwrite=True,
    )
    with create_stream(settings) as stream:
        for i in range(settings.num_frames or 0):
            stream.append(np.full(FRAME, i, dtype="uint16"))  # frame i holds the value i
    return settings.output_path


if __name__ == "__main__":
    print(main(Path(sys.argv[1]), *sys.argv[2:]))
