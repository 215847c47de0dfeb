"""The settings model as ome-writers 0.3.2 defines it: dimensions, positions, channels, units."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from ome_stream import (
    AcquisitionSettings,
    Channel,
    Dimension,
    Plate,
    Position,
    PositionDimension,
    StandardAxis,
    dims_from_standard_axes,
)

FRAME = dims_from_standard_axes({"y": 4, "x": 4})


# ---------------------------------------------------------------- positions as a dimension
def test_position_objects_make_a_position_dimension_and_count() -> None:
    dim = Dimension(name="where", coords=[Position(name="a"), "b"])
    assert (dim.type, dim.count) == ("position", 2)
    assert all(isinstance(p, Position) for p in dim.coords or [])
    assert [p.name for p in Dimension(name="p", type="position", count=3).coords or []] == [
        "0",
        "1",
        "2",
    ]


def test_unbounded_or_empty_positions_are_not_implemented() -> None:
    with pytest.raises(NotImplementedError, match="Unbounded position dimensions"):
        Dimension(name="stage", type="position")
    with pytest.raises(NotImplementedError, match="Empty coords for position dimensions"):
        Dimension(name="stage", type="position", coords=[])


def test_position_dimension_is_a_deprecated_spelling_of_the_same_dimension() -> None:
    with pytest.warns(DeprecationWarning, match="PositionDimension is deprecated"):
        old = PositionDimension(positions=["a", "b"])
    assert old == Dimension(name="p", type="position", coords=["a", "b"])
    assert (old.name, old.type, old.count) == ("p", "position", 2)
    assert [p.name for p in old.coords or []] == ["a", "b"]  # type: ignore[union-attr]
    (p, *_) = dims_from_standard_axes({"p": ["x1", "x2"], "y": 4, "x": 4})
    assert type(p) is Dimension and p.type == "position"


def test_at_most_one_position_dimension_and_never_in_the_frame() -> None:
    with pytest.raises(ValidationError, match="Only one position dimension is allowed"):
        AcquisitionSettings(
            dimensions=[Dimension(name="p", count=1, type="position"),
                        Dimension(name="q", count=1, type="position"), *FRAME],
        )  # fmt: skip
    with pytest.raises(ValidationError, match="last two dimensions must be spatial"):
        AcquisitionSettings(
            dimensions=[
                Dimension(name="t", count=2),
                FRAME[0],
                Dimension(name="p", count=2, type="position"),
            ]
        )


# ---------------------------------------------------------------- Dimension
def test_string_coords_become_channels_on_a_channel_axis() -> None:
    dim = Dimension(name="c", type="channel", coords=["DAPI", Channel(name="GFP")])
    assert dim.count == 2
    assert dim.coords == [Channel(name="DAPI"), Channel(name="GFP")]
    plain = Dimension(name="c", coords=["DAPI", "GFP"])  # no type: labels stay strings
    assert (plain.type, plain.coords) == (None, ["DAPI", "GFP"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"coords": [Channel(name="a"), 1.5]}, "May not mix Channel objects"),
        ({"coords": [Position(name="a"), 2.0]}, "May not mix Position objects"),
        ({"coords": ["a", "a"], "type": "channel"}, "Channel names must be unique"),
        ({"coords": [Channel(name="a")], "unit": "um"}, "coords suggests type='channel'"),
        ({"coords": [Position(name="a")], "type": "time"}, "require type='position'"),
        ({"coords": ["a"], "count": 2}, r"Length of coords \(1\) does not match count \(2\)"),
        ({"type": "space", "unit": "parsecs per hour"}, "Unrecognized unit of length"),
        ({"type": "time", "unit": "um"}, "Unrecognized unit of time"),
    ],
)
def test_dimension_rules(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Dimension(name="d", **kwargs)


@pytest.mark.parametrize(
    ("unit", "ngff", "kind"),
    [
        ("um", "micrometer", "space"),
        ("µm", "micrometer", "space"),
        ("μm", "micrometer", "space"),  # greek mu
        ("micron", "micrometer", "space"),
        ("Micrometer", "micrometer", "space"),
        ("Å", "angstrom", "space"),
        ("sec", "second", "time"),
        ("ms", "millisecond", "time"),
        ("usec", "microsecond", "time"),
        ("furlongs", "furlongs", None),
    ],
)
def test_units_are_stored_by_ngff_name_and_imply_the_type(
    unit: str, ngff: str, kind: str | None
) -> None:
    dim = Dimension(name="d", unit=unit)
    assert (dim.unit, dim.type) == (ngff, kind)


def test_an_assigned_unit_is_checked_like_a_constructed_one() -> None:
    dim = Dimension(name="z", count=3, type="space")
    dim.unit = "nm"
    assert dim.unit == "nanometer"
    with pytest.raises(ValidationError, match="Unrecognized unit of length"):
        dim.unit = "kg"


def test_type_is_not_guessed_from_the_name_but_order_follows_it() -> None:
    dims = [Dimension(name="c", count=2), Dimension(name="t", count=3), *FRAME]
    assert [d.type for d in dims[:2]] == [None, None]
    s = AcquisitionSettings(root_path="a.ome.zarr", dimensions=dims, dtype="u1")
    assert [d.name for d in s.storage_index_dimensions] == ["t", "c"]
    with pytest.warns(UserWarning, match="expected to have type='space'"):
        s = AcquisitionSettings(
            root_path="a.ome.zarr", dtype="u1",
            dimensions=[Dimension(name="row", count=4), Dimension(name="col", count=4)],
        )  # fmt: skip
    assert [d.type for d in s.dimensions] == ["space", "space"]


# ---------------------------------------------------------------- Position, Channel, Plate
def test_position_pairs_and_names_per_group() -> None:
    with pytest.raises(ValidationError, match="plate_row and plate_column must both be set"):
        Position(name="a", plate_row="A")
    with pytest.raises(ValidationError, match="grid_row and grid_column must both be set"):
        Position(name="a", grid_row=1)
    tile = {"plate_row": "A", "plate_column": "1"}
    Dimension(
        name="p",
        coords=[Position(name="f", grid_row=0, grid_column=0, **tile),
                Position(name="f", grid_row=0, grid_column=1, **tile)],
    )  # fmt: skip
    with pytest.raises(ValidationError, match=r'Duplicate names in well \("A", "1"\)'):
        Dimension(name="p", coords=[Position(name="f", **tile), Position(name="f", **tile)])
    pos = Position(name="s", x_coord=1.5, y_coord=-2.0, z_coord=3.0)
    assert (pos.x_coord, pos.y_coord, pos.z_coord) == (1.5, -2.0, 3.0)


@pytest.mark.parametrize(
    ("color", "hex_"),
    [("magenta", "FF00FF"), ("#0f0", "00FF00"), ("00ccff", "00CCFF"), ((255, 128, 0), "FF8000")],
)
def test_channel_colors_and_light(color: object, hex_: str) -> None:
    ch = Channel(
        name="GFP",
        color=color,  # type: ignore[arg-type]
        excitation_wavelength_nm=488,
        emission_wavelength_nm=510,
        fluorophore="EGFP",
    )
    assert ch.color_hex == hex_
    assert Channel.model_validate_json(ch.model_dump_json()) == ch
    with pytest.raises(ValidationError):
        Channel(name="x", excitation_wavelength_nm=0)
    with pytest.raises(ValidationError):
        Channel(name="x", color="not a colour")  # type: ignore[arg-type]


def test_standard_plates() -> None:
    plate = Plate.from_standard_wells(96)
    assert (plate.row_names[-1], plate.column_names[-1]) == ("H", "12")
    assert Plate.from_standard_wells(1536).row_names[26:28] == ["AA", "BB"]
    assert Plate.from_standard_wells((2, 3)).column_names == ["1", "2", "3"]
    with pytest.raises(ValueError, match="Unrecognized standard plate size: 95"):
        Plate.from_standard_wells(95)
    with pytest.raises(ValueError, match="with positive integers"):
        Plate.from_standard_wells((0, 3))


def test_standard_axes() -> None:
    assert [a.value for a in StandardAxis] == ["x", "y", "z", "c", "t", "p"]
    assert [a.dimension_type() for a in StandardAxis] == [
        "space", "space", "space", "channel", "time", "position",
    ]  # fmt: skip
    assert (StandardAxis.X.unit(), StandardAxis.TIME.unit(), StandardAxis.POSITION.unit()) == (
        "micrometer",
        "second",
        None,
    )
    z = StandardAxis.Z.to_dimension(count=5, chunk_size=2, scale=0.5)
    assert (z.name, z.type, z.unit, z.count, z.chunk_size, z.scale) == (
        "z", "space", "micrometer", 5, 2, 0.5,
    )  # fmt: skip
    assert StandardAxis.POSITION.to_dimension(coords=["a"]).coords == [Position(name="a")]
