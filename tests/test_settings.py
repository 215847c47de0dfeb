"""The settings model: every example of the usage guide, and every rule it states."""

from __future__ import annotations

import math
import re
import warnings

import pytest
from pydantic import ValidationError

from _settings import (
    FIELDS,
    SCREEN,
    SITES,
    VISIT_SHAPE,
    Z_STEP,
    field_positions,
    plate_settings,
    visit_dims,
)
from ome_stream import (
    AcquisitionSettings,
    Channel,
    Dimension,
    Plate,
    Position,
    StandardAxis,
    dims_from_standard_axes,
)

BASIC_DIMS = [
    Dimension(name="t", count=5, chunk_size=1, type="time", unit="s"),
    Dimension(name="c", count=4, chunk_size=1, type="channel"),
    Dimension(name="z", count=24, chunk_size=8, type="space", unit="um"),
    Dimension(name="y", count=512, chunk_size=128, type="space", unit="um"),
    Dimension(name="x", count=768, chunk_size=256, type="space", unit="um"),
]

GUIDE_WARNING = (
    "\n\nOutput format could not be inferred from root_path 'root'. \n"
    "Picking the first available format/backend: 'ome-zarr'/'tensorstore'. \n"
    "This may not be what you want, and may be an error in future versions.\n"
    "Please specify the desired format explicitly (e.g. format='ome-zarr')\n"
    "or via the extension of `root_path`."
)


def test_basic_pattern() -> None:
    settings = AcquisitionSettings(
        root_path="example.ome.zarr", dimensions=BASIC_DIMS, dtype="uint16"
    )
    assert settings.file_format == "ome-zarr"
    assert settings.backend == "tensorstore"
    assert settings.num_frames == 5 * 4 * 24
    assert settings.frame_shape == (512, 768)
    assert settings.dimensions[0].unit == "second"
    assert settings.dimensions[2].unit == "micrometer"


def test_dims_from_standard_axes_matches_the_explicit_list() -> None:
    dims = dims_from_standard_axes(
        {"t": 5, "c": 4, "z": 24, "y": 512, "x": 768},
        chunk_shapes={"z": 8, "y": 128, "x": 256},
    )
    assert dims == BASIC_DIMS


def test_dims_from_standard_axes_positions_and_errors() -> None:
    dims = dims_from_standard_axes({"t": None, "p": ["A1", "B2"], "y": 8, "x": 8})
    assert type(dims[1]) is Dimension and dims[1].type == "position"
    assert [p.name for p in dims[1].coords] == ["A1", "B2"]
    assert dims[0].count is None
    dims = dims_from_standard_axes({"p": 3, "y": 8, "x": 8})
    assert [p.name for p in dims[0].coords] == ["0", "1", "2"]
    with pytest.raises(ValueError, match=r"Standard axes names must be one of .* Got: \['q'"):
        dims_from_standard_axes({"q": 2, "y": 8, "x": 8})
    with pytest.raises(ValueError, match="chunk_shapes: standard axes names"):
        dims_from_standard_axes({"y": 8, "x": 8}, chunk_shapes={"w": 2})
    assert StandardAxis("z").dimension_type() == "space"
    assert StandardAxis.TIME.unit() == "second"


@pytest.mark.parametrize(
    ("root_path", "fmt", "expected_format", "expected_backend", "expected_output"),
    [
        ("output.ome.tiff", None, "ome-tiff", "tifffile", "output.ome.tiff"),
        ("output", "ome-tiff", "ome-tiff", "tifffile", "output.ome.tiff"),
        ("output.ome.zarr", None, "ome-zarr", "tensorstore", "output.ome.zarr"),
        ("output", "ome-zarr", "ome-zarr", "tensorstore", "output.ome.zarr"),
        (
            "output",
            {"name": "ome-zarr", "backend": "acquire-zarr"},
            "ome-zarr",
            "acquire-zarr",
            "output.ome.zarr",
        ),
        ("output", "acquire-zarr", "ome-zarr", "acquire-zarr", "output.ome.zarr"),
        ("output", "zarr-python", "ome-zarr", "zarr-python", "output.ome.zarr"),
        ("output", "tifffile", "ome-tiff", "tifffile", "output.ome.tiff"),
        ("data/run.zarr", None, "ome-zarr", "tensorstore", "data/run.zarr"),
        ("run.tif", None, "ome-tiff", "tifffile", "run.tif"),
    ],
)
def test_format_selection(root_path, fmt, expected_format, expected_backend, expected_output):
    kwargs = {} if fmt is None else {"format": fmt}
    settings = AcquisitionSettings(
        root_path=root_path,
        dimensions=dims_from_standard_axes({"t": 2, "y": 16, "x": 16}),
        dtype="uint8",
        **kwargs,
    )
    assert settings.file_format == expected_format
    assert settings.backend == expected_backend
    assert settings.output_path == expected_output


def test_omitting_format_and_suffix_warns_with_the_guide_text() -> None:
    with pytest.warns(UserWarning, match="could not be inferred") as record:
        settings = AcquisitionSettings(
            root_path="root",
            dimensions=dims_from_standard_axes({"x": 512, "y": 512}),
            dtype="uint8",
        )
    assert len(record) == 1
    assert str(record[0].message) == GUIDE_WARNING
    assert (settings.file_format, settings.backend) == ("ome-zarr", "tensorstore")
    # Once resolved, a JSON round trip is explicit and does not warn again.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = AcquisitionSettings.model_validate_json(settings.model_dump_json())
    assert again == settings


def test_explicit_format_wins_and_unknown_names_are_errors() -> None:
    dims = dims_from_standard_axes({"y": 8, "x": 8})
    # as in ome-writers, an explicit format beats the suffix (which it keeps)
    s = AcquisitionSettings(root_path="a.ome.tiff", format="ome-zarr", dimensions=dims, dtype="u1")
    assert (s.file_format, s.output_path) == ("ome-zarr", "a.ome.tiff")
    with pytest.raises(ValidationError, match="neither a format"):
        AcquisitionSettings(root_path="a", format="hdf5", dimensions=dims, dtype="u1")
    with pytest.raises(ValidationError, match="backend"):
        AcquisitionSettings(
            root_path="a",
            format={"name": "ome-zarr", "backend": "tifffile"},
            dimensions=dims,
            dtype="u1",
        )


def test_single_5d_and_multi_position_examples() -> None:
    five_d = [
        Dimension(name="t", count=6, type="time"),
        Dimension(name="c", count=2, type="channel", coords=["GFP", "mCherry"]),
        Dimension(name="z", count=9, chunk_size=3, type="space", scale=0.3, unit="micrometer"),
        Dimension(name="y", count=1200, chunk_size=400, scale=0.108, unit="micrometer"),
        Dimension(name="x", count=1600, chunk_size=400, scale=0.108, unit="micrometer"),
    ]
    s = AcquisitionSettings(root_path="a.ome.zarr", dimensions=five_d, dtype="uint16")
    assert [d.name for d in s.storage_index_dimensions] == ["t", "c", "z"]
    tzc = [five_d[0], five_d[2], five_d[1], *five_d[3:]]
    s = AcquisitionSettings(root_path="a.ome.zarr", dimensions=tzc, dtype="uint16")
    assert [d.name for d in s.storage_index_dimensions] == ["t", "c", "z"]
    assert s.storage_permutation == (0, 2, 1)
    # OME-TIFF stores the acquisition order as is.
    s = AcquisitionSettings(root_path="a.ome.tiff", dimensions=tzc, dtype="uint16")
    assert [d.name for d in s.storage_index_dimensions] == ["t", "z", "c"]
    assert s.num_frames == 6 * 9 * 2 and s.frame_shape == (1200, 1600)

    multi = visit_dims((256, 192), chunk=64)
    s = AcquisitionSettings(root_path="m.ome.zarr", dimensions=multi, dtype="uint16")
    assert [p.name for p in s.positions] == list(SITES)
    assert s.num_frames == math.prod(VISIT_SHAPE)
    assert [d.name for d in s.storage_index_dimensions] == ["t", "c", "z"]  # p is not stored
    assert s.dimensions[3].scale == Z_STEP and s.dimensions[3].unit == "micrometer"


def test_plate_example() -> None:
    settings = AcquisitionSettings(
        root_path="viability_screen",
        format="ome-zarr",
        dimensions=[
            Dimension(name="t", count=4, type="time"),
            Dimension(name="p", coords=field_positions()),  # the type comes from the coords
            *dims_from_standard_axes({"c": 2, "y": 120, "x": 160}, chunk_shapes={"y": 60}),
        ],
        dtype="uint16",
        plate=SCREEN,
    )
    assert settings.output_path == "viability_screen.ome.zarr"
    assert settings.dimensions[1].type == "position"
    assert [(p.plate_row, p.plate_column, p.name) for p in settings.positions] == list(FIELDS)
    assert settings.num_frames == 4 * len(FIELDS) * 2
    with pytest.raises(ValidationError, match=r"Missing row/column for positions: \['a'\]"):
        settings.dimensions = (
            Dimension(name="p", type="position", coords=["a"]),
            *settings.dimensions[-2:],
        )
    # a position outside the plate is refused (ome-writers only warns, then drops it)
    with pytest.raises(ValidationError, match=r"not in the plate definition: \['f \(Q, 12\)'\]"):
        AcquisitionSettings(
            root_path="p.ome.zarr",
            dtype="uint8",
            plate=Plate(row_names=["H"], column_names=["12"]),
            dimensions=[
                Dimension(name="p", coords=[Position(name="f", plate_row="Q", plate_column="12")]),
                *dims_from_standard_axes({"y": 4, "x": 4}),
            ],
        )


def test_unbounded_only_first() -> None:
    AcquisitionSettings(
        root_path="u.ome.zarr",
        dtype="uint16",
        dimensions=[
            Dimension(name="t", count=None, type="time", unit="s"),
            Dimension(name="p", type="position", coords=list(SITES)),
            *dims_from_standard_axes({"y": 96, "x": 128}, chunk_shapes={"y": 48, "x": 64}),
        ],
    )
    with pytest.raises(ValidationError, match="Only the first dimension may be unbounded"):
        AcquisitionSettings(
            root_path="u.ome.zarr",
            dtype="uint16",
            dimensions=[
                Dimension(name="c", count=2),
                Dimension(name="z", count=None),
                *dims_from_standard_axes({"y": 4, "x": 4}),
            ],
        )


def test_compression_is_checked_against_the_backend() -> None:
    dims = dims_from_standard_axes({"t": 2, "y": 8, "x": 8})
    ok = AcquisitionSettings(
        root_path="a.ome.zarr", dimensions=dims, dtype="u2", compression="blosc-zstd"
    )
    assert ok.compression == "blosc-zstd"
    with pytest.raises(
        ValidationError, match="compression 'lzw' is not supported by the 'tensorstore' backend"
    ):
        AcquisitionSettings(root_path="a.ome.zarr", dimensions=dims, dtype="u2", compression="lzw")
    with pytest.raises(
        ValidationError, match="compression 'blosc-lz4' is not supported by the 'tifffile' backend"
    ):
        AcquisitionSettings(
            root_path="a.ome.tif", dimensions=dims, dtype="u2", compression="blosc-lz4"
        )


def test_storage_order_rules() -> None:
    dims = [
        Dimension(name="t", count=2),
        Dimension(name="z", count=5),
        Dimension(name="c", count=2),
        *dims_from_standard_axes({"y": 4, "x": 4}),
    ]
    s = AcquisitionSettings(
        root_path="a.ome.zarr", dimensions=dims, dtype="u1", storage_order="acquisition"
    )
    assert [d.name for d in s.storage_index_dimensions] == ["t", "z", "c"]
    s = AcquisitionSettings(
        root_path="a.ome.zarr", dimensions=dims, dtype="u1", storage_order=["c", "t", "z", "y", "x"]
    )
    assert [d.name for d in s.storage_index_dimensions] == ["c", "t", "z"]
    assert s.storage_permutation == s.storage_index_permutation == (2, 0, 1)
    for bad in (["c", "t", "y", "x"], ["c", "c", "t", "z", "y", "x"]):
        with pytest.raises(ValidationError, match="storage_order names .* don't match"):
            AcquisitionSettings(
                root_path="a.ome.zarr", dimensions=dims, dtype="u1", storage_order=bad
            )
    with pytest.raises(ValidationError, match=r"may not \(yet\) permute the last two"):
        AcquisitionSettings(
            root_path="a.ome.zarr",
            dimensions=dims,
            dtype="u1",
            storage_order=["c", "t", "z", "x", "y"],
        )


@pytest.mark.parametrize(
    "bad", ["a/b", "a\\b", "..", ".", "", "  ", "tab\there", "nul\x00", "q?", "c:"]
)
def test_unsafe_names_are_rejected(bad: str) -> None:
    with pytest.raises(ValidationError, match="name"):
        Dimension(name=bad, count=2)
    # a Position may carry any name, but not into a dataset, where it names a group
    position = Dimension(name="p", type="position", coords=[Position(name=bad)]) if bad else None
    with pytest.raises(ValidationError, match="name"):
        AcquisitionSettings(
            root_path="a.ome.zarr",
            dtype="u1",
            dimensions=[
                position or Dimension(name="p", coords=[Position(name=bad)]),
                *dims_from_standard_axes({"y": 4, "x": 4}),
            ],
        )


def test_duplicate_names_are_rejected() -> None:
    with pytest.raises(ValidationError, match=r"unique names; duplicated: \['a'\]"):
        Dimension(name="p", type="position", coords=["a", "b", "a"])
    # the same field name in two different wells is fine
    Dimension(
        name="p",
        coords=[
            Position(name="f", plate_row="A", plate_column="1"),
            Position(name="f", plate_row="A", plate_column="2"),
        ],
    )
    with pytest.raises(ValidationError, match="names must be unique, duplicates: \\['y'\\]"):
        AcquisitionSettings(
            root_path="a.ome.zarr",
            dtype="u1",
            dimensions=[Dimension(name="y", count=2), *dims_from_standard_axes({"y": 4, "x": 4})],
        )


NGFF_RULE = "may contain only the letters A-Z, a-z and the digits 0-9"


@pytest.mark.parametrize(
    ("field", "problem", "renamed"),
    [
        (("B", "2", "site-1"), r"position 1 \(well B/2\) has field name 'site-1'", "site1"),
        (("B", "2", "site_1"), r"position 1 \(well B/2\) has field name 'site_1'", "site1"),
        (("B", "2", "site.1"), r"position 1 \(well B/2\) has field name 'site\.1'", "site1"),
        (("B", "2", "site 1"), r"position 1 \(well B/2\) has field name 'site 1'", "site1"),
        (("B", "2", "Ä1"), r"position 1 \(well B/2\) has field name 'Ä1'", "1"),
        (("B-1", "2", "site1"), r"plate row name 'B-1'", "B1"),
        (("B", "2_a", "site1"), r"plate column name '2_a'", "2a"),
    ],
    ids=["hyphen", "underscore", "dot", "space", "non-ascii", "row", "column"],
)
def test_ome_zarr_plate_names_must_be_ngff_names(
    field: tuple[str, str, str], problem: str, renamed: str
) -> None:
    """NGFF 0.5 allows only [A-Za-z0-9] in plate row, column and field names: an OME-Zarr
    plate refuses the rest by name, suggesting the first one without the rest; OME-TIFF
    and scratch, which store them, take them."""
    fields = (("A", "1", "site1"), field)
    original = re.escape(repr(next(n for n in field if n not in ("B", "2", "site1"))))
    suggestion = f"Rename them \\(e\\.g\\. {original} to '{renamed}'\\)"
    for fmt in ("tensorstore", "zarr-python"):
        with pytest.raises(ValidationError, match=f"{NGFF_RULE}: {problem}\\. {suggestion}"):
            plate_settings("s.ome.zarr", fields, format=fmt)
    for root, fmt in (("s.ome.tiff", "ome-tiff"), ("", "scratch")):
        settings = plate_settings(root, fields, format=fmt)
        assert [(p.plate_row, p.plate_column, p.name) for p in settings.positions] == list(fields)


def test_ome_zarr_plate_name_errors_list_every_problem() -> None:
    fields = (("A-1", "1", "f0"), *(("A-1", "1", f"site-{n}") for n in range(6)))
    expected = (
        r"plate row name 'A-1'; position 1 \(well A-1/1\) has field name 'site-0'; "
        r".*position 4 \(well A-1/1\) has field name 'site-3'; and 2 more\."
    )
    with pytest.raises(ValidationError, match=expected):
        plate_settings("s.ome.zarr", fields)
    # a refused assignment leaves the settings as they were
    settings = plate_settings("s.ome.tiff", fields)
    with pytest.raises(ValidationError, match=NGFF_RULE):
        settings.format = "tensorstore"
    assert settings.format.name == "ome-tiff"


def test_ome_zarr_plate_fields_of_one_well_need_different_names() -> None:
    """Grid cells make names unique for the settings, but an OME-Zarr plate stores a field
    at row/column/name only: two 'fov0' of well A1 would share one image group."""
    coords = [
        Position(name="fov0", plate_row="A", plate_column="1", grid_row=0, grid_column=g)
        for g in range(2)
    ] + [Position(name="fov0", plate_row="A", plate_column="2", grid_row=0, grid_column=0)]
    kwargs: dict = {
        "dtype": "uint8",
        "plate": Plate(row_names=["A"], column_names=["1", "2"]),
        "dimensions": [
            Dimension(name="p", type="position", coords=coords),
            *dims_from_standard_axes({"y": 4, "x": 4}),
        ],
    }
    with pytest.raises(
        ValidationError, match=r"need different names.*: positions 0 and 1 are both 'A/1/fov0'\."
    ):
        AcquisitionSettings(root_path="g.ome.zarr", **kwargs)
    tiff = AcquisitionSettings(root_path="g.ome.tiff", **kwargs)  # one file per position
    assert len(tiff.tiff_file_paths()) == 3


def test_errors_name_the_field_and_value() -> None:
    with pytest.raises(ValidationError, match="'complex64' is not a supported pixel type"):
        AcquisitionSettings(
            root_path="a.ome.zarr",
            dtype="complex64",
            dimensions=dims_from_standard_axes({"y": 4, "x": 4}),
        )
    with pytest.raises(ValidationError, match="Unrecognized unit of length: 'kg'"):
        Dimension(name="z", count=3, type="space", unit="kg")
    with pytest.raises(ValidationError, match=r"Length of coords \(3\) does not match count \(2\)"):
        Dimension(name="c", count=2, coords=["a", "b", "c"])
    with pytest.raises(ValidationError, match="At most 5 non-position dimensions"):
        AcquisitionSettings(
            root_path="a.ome.zarr",
            dtype="u1",
            dimensions=[Dimension(name=n, count=2) for n in "abcd"]
            + dims_from_standard_axes({"y": 4, "x": 4}),
        )


def test_channels_and_json_round_trip() -> None:
    settings = AcquisitionSettings(
        root_path="c.ome.zarr",
        dtype="uint16",
        dimensions=[
            Dimension(
                name="c",
                count=2,
                type="channel",
                coords=[Channel(name="DAPI", color="#0000ff"), "GFP"],
            ),
            *dims_from_standard_axes({"y": 4, "x": 4}),
        ],
    )
    dim = settings.dimensions[0]
    assert isinstance(dim, Dimension)
    assert dim.channels == [Channel(name="DAPI", color="blue"), Channel(name="GFP")]
    assert [c.color_hex for c in dim.channels] == ["0000FF", None]
    again = AcquisitionSettings.model_validate_json(settings.model_dump_json())
    assert again == settings
