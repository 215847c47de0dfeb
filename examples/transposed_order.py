"""Acquire ALL channels at each z plane (t, z, c order); OME-Zarr stores t, c, z.

With the default storage_order="ome", frames are routed to their spec-compliant slot as
they arrive; OME-TIFF stores the acquisition order as is (DimensionOrder XYCZT).

Usage: python examples/transposed_order.py OUTPUT_DIR [ome-zarr|ome-tiff]
"""

import sys
from pathlib import Path

import numpy as np

from ome_stream import AcquisitionSettings, Dimension, create_stream


def main(output_dir: Path, fmt: str = "ome-zarr") -> str:
    settings = AcquisitionSettings(
        root_path=output_dir / "transposed",
        format=fmt,
        dimensions=[
            Dimension(name="t", count=3, type="time", scale=20, unit="s"),
            # a fast filter wheel: both channels at each plane before the stage moves
            Dimension(name="z", count=6, type="space", scale=0.3, unit="micrometer"),
            Dimension(name="c", count=2, type="channel", coords=["mCherry", "GFP"]),
            Dimension(name="y", count=96, chunk_size=48, scale=0.13, unit="micrometer"),
            Dimension(name="x", count=96, chunk_size=48, scale=0.13, unit="micrometer"),
        ],
        dtype="uint16",
        overwrite=True,
    )
    number = 0  # frame number: every pixel of a frame holds it
    with create_stream(settings) as stream:
        for _t in range(3):
            for _plane in range(6):
                for _channel in ("mCherry", "GFP"):  # only the filter changes between these
                    stream.append(np.full((96, 96), number, dtype="uint16"))
                    number += 1
    return settings.output_path


if __name__ == "__main__":
    print(main(Path(sys.argv[1]), *sys.argv[2:]))
