"""Positions (the coords of a ``type="position"`` dimension) and the plate they may lie in."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any, Self, TypeAlias

from pydantic import AfterValidator, Field, field_validator, model_validator

from ome_stream.settings._base import NonEmptyStr, SettingsModel, check_path_name

__all__ = ["Plate", "Position", "PositionList"]

# Plate sizes known by well count, as (rows, columns).
_STANDARD_PLATES = {
    6: (2, 3), 12: (3, 4), 24: (4, 6), 48: (6, 8), 96: (8, 12), 384: (16, 24), 1536: (32, 48),
}  # fmt: skip


class Position(SettingsModel):
    """A stage position visited during the acquisition: each one is its own image.

    ``plate_row``/``plate_column`` place it in a well of a :class:`Plate` (it is then a
    field of that well); ``grid_row``/``grid_column`` place it in a tiled grid. The
    ``*_coord`` fields are stage coordinates, in the unit of the spatial dimensions. A
    plain string is accepted wherever a Position is expected and becomes its name.

    Examples
    --------
    >>> Position(name="fov0", plate_row="B", plate_column="3", x_coord=100.0).plate_row
    'B'

    """

    name: NonEmptyStr = Field(
        description="Position name; unique among the positions of one (well, grid cell)."
    )
    plate_row: str | None = Field(default=None, description="Row name of the well, e.g. 'A'.")
    plate_column: str | None = Field(default=None, description="Column name of the well, e.g. '1'.")
    grid_row: int | None = Field(default=None, description="Row index in a tiled grid.")
    grid_column: int | None = Field(default=None, description="Column index in a tiled grid.")
    x_coord: float | None = Field(default=None, description="Stage X coordinate.")
    y_coord: float | None = Field(default=None, description="Stage Y coordinate.")
    z_coord: float | None = Field(default=None, description="Stage Z coordinate.")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check_pairs(self) -> Self:
        if (self.plate_row is None) != (self.plate_column is None):
            raise ValueError("plate_row and plate_column must both be set or both be None")
        if (self.grid_row is None) != (self.grid_column is None):
            raise ValueError("grid_row and grid_column must both be set or both be None")
        return self


def _unique_names_per_group(positions: list[Position]) -> list[Position]:
    """Names must differ within a (well, grid cell) group; ungrouped names everywhere."""
    groups: dict[tuple[Any, ...], Counter[str]] = {}
    for pos in positions:
        key = (pos.plate_row, pos.plate_column, pos.grid_row, pos.grid_column)
        groups.setdefault(key, Counter())[pos.name] += 1
    for (row, column, grid_row, grid_column), counts in groups.items():
        duplicated = [name for name, n in counts.items() if n > 1]
        if not duplicated:
            continue
        if row is None and grid_row is None:
            raise ValueError(
                f"All positions without row/column must have unique names; duplicated: {duplicated}"
            )
        where = []
        if row is not None:
            where.append(f'well ("{row}", "{column}")')
        if grid_row is not None:
            where.append(f"grid position ({grid_row}, {grid_column})")
        raise ValueError(
            "Position names must be unique within each group. Duplicate names in "
            f"{', '.join(where)}: {duplicated}"
        )
    return positions


PositionList: TypeAlias = Annotated[list[Position], AfterValidator(_unique_names_per_group)]
"""Positions whose names are unique within each (well, grid cell) group."""


class Plate(SettingsModel):
    """The geometry of a multi-well plate, for HCS metadata.

    Which wells are imaged, and in which order, comes from the positions' ``plate_row``
    and ``plate_column``; the plate lists every row and column, imaged or not.

    Examples
    --------
    >>> Plate.from_standard_wells(24).row_names
    ['A', 'B', 'C', 'D']

    """

    row_names: list[str] = Field(description="Every row name of the plate, e.g. ['A', 'B'].")
    column_names: list[str] = Field(description="Every column name, e.g. ['1', '2', '3'].")
    name: str | None = Field(default=None, description="Plate name.")

    @field_validator("row_names", "column_names")
    @classmethod
    def _check_names(cls, names: list[str]) -> list[str]:
        for name in names:
            check_path_name(name, "Plate row/column name")
        if len(set(names)) != len(names):
            raise ValueError(f"Plate row/column names must be unique, got {names}")
        return names

    @classmethod
    def from_standard_wells(cls, num_wells_or_shape: int | tuple[int, int]) -> Self:
        """A plate of a standard well count (6 ... 1536), or of ``(rows, columns)``.

        Rows are named A..Z, then AA, BB, ...; columns 1, 2, ...

        Raises
        ------
        ValueError
            An unknown well count, or a shape that is not two positive integers.

        """
        if isinstance(num_wells_or_shape, tuple):
            shape = num_wells_or_shape
            if len(shape) != 2 or not all(int(n) > 0 for n in shape):
                raise ValueError(
                    "If providing a tuple for plate shape, it must be (n_rows, n_columns) "
                    f"with positive integers; got {shape}"
                )
            n_rows, n_columns = int(shape[0]), int(shape[1])
        else:
            if num_wells_or_shape not in _STANDARD_PLATES:
                raise ValueError(
                    f"Unrecognized standard plate size: {num_wells_or_shape}. Supported "
                    f"sizes: {list(_STANDARD_PLATES)}"
                )
            n_rows, n_columns = _STANDARD_PLATES[num_wells_or_shape]
        rows = [chr(ord("A") + i % 26) * (i // 26 + 1) for i in range(n_rows)]
        return cls(row_names=rows, column_names=[str(i + 1) for i in range(n_columns)])
