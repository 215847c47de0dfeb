"""Acquisitions the tests share, in our own values: a plain time series, a multi-position
visit plan and a well-plate screen. Tests build on these and compute what they expect from
the constants here, so a changed value changes every expectation with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ome_stream import AcquisitionSettings, Dimension, Plate, Position, dims_from_standard_axes

# ---------------------------------------------------------------- a plain time series


def series(
    root: Path | str,
    t: int | None,
    frame: tuple[int, int] = (8, 8),
    dtype: str = "uint16",
    **kwargs: Any,
) -> AcquisitionSettings:
    """``t`` time points (``None``: unbounded) of ``frame``-sized frames, stored at ``root``."""
    return AcquisitionSettings(
        root_path=root,
        dtype=dtype,
        dimensions=dims_from_standard_axes({"t": t, "y": frame[0], "x": frame[1]}),
        **kwargs,
    )


# ---------------------------------------------------------------- a multi-position visit plan

#: the stage positions visited at every time point (their OME-Zarr groups, OME image names)
SITES = ("ctrl-1", "ctrl-2", "drug-1")
#: (t, p, c, z) of the visit plan: every time point, each site, 2 channels, 3 planes each
VISIT_SHAPE = (3, len(SITES), 2, 3)
Z_STEP = 1.5  # micrometer between planes
PIXEL_SIZE = 0.65  # micrometer per pixel in y and x


def visit_dims(frame: tuple[int, int] = (16, 16), chunk: int | None = None) -> list[Dimension]:
    """The visit plan's dimensions (t, p, c, z, y, x), frames of ``frame`` pixels in chunks
    of ``chunk`` (the whole frame when omitted)."""
    t, _, c, z = VISIT_SHAPE
    return [
        Dimension(name="t", count=t, type="time"),
        Dimension(name="p", type="position", coords=list(SITES)),
        Dimension(name="c", count=c, type="channel"),
        Dimension(name="z", count=z, type="space", scale=Z_STEP, unit="micrometer"),
        *(
            Dimension(name=name, count=n, chunk_size=chunk or n, scale=PIXEL_SIZE, unit="um")
            for name, n in zip("yx", frame, strict=True)
        ),
    ]


# ---------------------------------------------------------------- a well-plate screen

#: a 48-well plate: rows A-F, columns 1-8
SCREEN = Plate(
    name="48-well viability screen",
    row_names=list("ABCDEF"),
    column_names=[str(n) for n in range(1, 9)],
)
#: the fields imaged, in stage order: (row, column, field name); well B2 has two
FIELDS = (("B", "2", "site1"), ("B", "2", "site2"), ("D", "5", "site1"), ("F", "8", "site1"))


def field_positions(n: int = len(FIELDS)) -> list[Position]:
    """The first ``n`` fields of the screen as positions."""
    return [Position(name=f, plate_row=r, plate_column=c) for r, c, f in FIELDS[:n]]


def field_paths(n: int = len(FIELDS)) -> list[str]:
    """Where the first ``n`` fields are stored in an OME-Zarr plate: ``row/column/field``."""
    return ["/".join(field) for field in FIELDS[:n]]


def well_index(row: str, column: str) -> tuple[int, int]:
    """The 0-based (row, column) of a well of the screen, as OME-XML numbers wells."""
    return SCREEN.row_names.index(row), SCREEN.column_names.index(column)


def plate_settings(
    root: Path | str,
    fields: tuple[tuple[str, str, str], ...],
    frame: tuple[int, int] = (8, 8),
    **kwargs: Any,
) -> AcquisitionSettings:
    """One ``frame`` per field ``(row, column, field name)``, in a plate of just those rows
    and columns (in first-visit order)."""
    return AcquisitionSettings(
        root_path=root,
        dtype="uint16",
        dimensions=[
            Dimension(
                name="p",
                type="position",
                coords=[Position(name=f, plate_row=r, plate_column=c) for r, c, f in fields],
            ),
            *dims_from_standard_axes({"y": frame[0], "x": frame[1]}),
        ],
        plate=Plate(
            row_names=list(dict.fromkeys(r for r, _, _ in fields)),
            column_names=list(dict.fromkeys(c for _, c, _ in fields)),
        ),
        **kwargs,
    )
