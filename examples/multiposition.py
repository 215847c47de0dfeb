"""Multiple positions: for each time point visit each position, then channels and z.

OME-Zarr writes one image per position (bioformats2raw layout); OME-TIFF one file per
position in a directory.

Usage: python examples/multiposition.py OUTPUT_DIR [ome-zarr|ome-tiff]
"""

import sys
from pathlib import Path

import numpy as np

from ome_stream import AcquisitionSettings, Dimension, create_stream

EMBRYOS = ["embryo-1", "embryo-2", "embryo-3"]  # one stage position each


def main(output_dir: Path, fmt: str = "ome-zarr") -> str:
    settings = AcquisitionSettings(
        root_path=output_dir / "multiposition",
        format=fmt,
        dimensions=[
            Dimension(name="t", count=2, type="time", scale=30, unit="s"),
            Dimension(name="p", type="position", coords=EMBRYOS),
            Dimension(name="c", type="channel", coords=["GFP", "mCherry"]),
            Dimension(name="z", count=3, type="space", scale=2.0, unit="micrometer"),
            Dimension(name="y", count=80, chunk_size=40, scale=0.65, unit="micrometer"),
            Dimension(name="x", count=80, chunk_size=40, scale=0.65, unit="micrometer"),
        ],
        dtype="uint16",
        overwrite=True,
    )
    number = 0  # frame number: every pixel of a frame holds it
    with create_stream(settings) as stream:
        for _t in range(2):
            for _embryo in EMBRYOS:  # the stage moves to the embryo here
                for _channel in range(2):
                    for _plane in range(3):
                        stream.append(np.full((80, 80), number, dtype="uint16"))
                        number += 1
    return settings.output_path


if __name__ == "__main__":
    print(main(Path(sys.argv[1]), *sys.argv[2:]))
