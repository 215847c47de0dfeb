"""A multi-well plate (HCS): positions name their well; two sites in well B3.

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

#: the wells this screen images, in the order the stage visits them: (row, column, site)
VISITS = [("B", "3", "site1"), ("B", "3", "site2"), ("B", "4", "site1"), ("E", "7", "site1")]


def main(output_dir: Path, fmt: str = "ome-zarr") -> str:
    settings = AcquisitionSettings(
        root_path=output_dir / "drug_screen",
        format=fmt,
        dimensions=[
            Dimension(name="t", count=3, type="time", unit="s"),
            Dimension(
                name="p",
                type="position",
                coords=[Position(name=s, plate_row=r, plate_column=c) for r, c, s in VISITS],
            ),
            Dimension(name="c", count=2, type="channel", coords=["Hoechst", "Alexa 488"]),
            Dimension(name="z", count=2, type="space", scale=1.5, unit="micrometer"),
            Dimension(name="y", count=48, chunk_size=24, type="space"),
            Dimension(name="x", count=48, chunk_size=24, type="space"),
        ],
        dtype="uint16",
        plate=Plate(
            name="96-well screen",
            row_names=list("ABCDEFGH"),
            column_names=[str(n) for n in range(1, 13)],
        ),
        overwrite=True,
    )
    with create_stream(settings) as stream:
        for i in range(settings.num_frames or 0):
            stream.append(np.full((48, 48), i, dtype="uint16"))
    return settings.output_path


if __name__ == "__main__":
    print(main(Path(sys.argv[1]), *sys.argv[2:]))
