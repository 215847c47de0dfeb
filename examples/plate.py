"""A multi-well plate (HCS): positions name their well; two fields in well C4.

Usage: python examples/plate.py OUTPUT_DIR [ome-zarr|ome-tiff]
"""

import sys
from pathlib import Path

import numpy as np

from ome_stream import (
    AcquisitionSettings,
    Dimension,
    Plate,
    Position,
    create_stream,
)


def main(output_dir: Path, fmt: str = "ome-zarr") -> str:
    settings = AcquisitionSettings(
        root_path=output_dir / "example_5d_plate",
        format=fmt,
        dimensions=[
            Dimension(name="t", count=2, chunk_size=1, type="time"),
            Dimension(
                name="p",
                type="position",
                # list the wells in the order the stage visits them
                coords=[
                    Position(name="fov0", plate_row="A", plate_column="1"),
                    Position(name="fov0", plate_row="A", plate_column="2"),
                    Position(name="fov0", plate_row="C", plate_column="4"),
                    Position(name="fov1", plate_row="C", plate_column="4"),
                ],
            ),
            Dimension(name="c", count=3, chunk_size=1, type="channel"),
            Dimension(name="z", count=4, chunk_size=1, type="space"),
            Dimension(name="y", count=64, chunk_size=32, type="space"),
            Dimension(name="x", count=64, chunk_size=32, type="space"),
        ],
        dtype="uint16",
        plate=Plate(
            name="Example Plate",
            row_names=["A", "B", "C", "D"],
            column_names=["1", "2", "3", "4", "5", "6", "7", "8"],
        ),
        overwrite=True,
    )
    with create_stream(settings) as stream:
        for i in range(settings.num_frames or 0):
            stream.append(np.full((64, 64), i, dtype="uint16"))
    return settings.output_path


if __name__ == "__main__":
    print(main(Path(sys.argv[1]), *sys.argv[2:]))
