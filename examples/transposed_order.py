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
            Dimension(name="t", count=2, chunk_size=1, type="time"),
            Dimension(name="z", count=4, chunk_size=1, type="space", scale=0.5, unit="um"),
            Dimension(name="c", count=3, chunk_size=1, type="channel"),
            Dimension(name="y", count=128, chunk_size=64, type="space", scale=0.1, unit="um"),
            Dimension(name="x", count=128, chunk_size=64, type="space", scale=0.1, unit="um"),
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
