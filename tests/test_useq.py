"""useq-schema sequences become settings whose acquisition order is the event order."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from ome_zarr_models.v05.bioformats2raw import BioFormats2Raw
from ome_zarr_models.v05.hcs import HCS

from conftest import make_frames
from ome_stream import (
    AcquisitionSettings,
    Dimension,
    create_stream,
    dims_from_useq,
    open_stream,
    useq_to_acquisition_settings,
)
from ome_stream.router import FrameRouter

useq = pytest.importorskip("useq", reason="useq-schema: pip install 'ome-stream[useq]'")


def _absolute_grid_sequence() -> Any:
    # useq warns that stage x/y are replaced by an absolute grid; that is the point here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return useq.MDASequence(
            axis_order="tpgcz",
            stage_positions=[(5, 5, 1.0), (9, 9, 2.0)],
            grid_plan={"top": 0, "left": 0, "bottom": -2, "right": 2, "fov_width": 2},
            channels=["A"],
        )


SEQUENCES = {
    # plain products of plans: the layout comes from the plans alone
    "tpgcz": useq.MDASequence(
        axis_order="tpgcz",
        time_plan={"interval": 2, "loops": 2},
        z_plan={"range": 2, "step": 1},
        channels=["DAPI", "FITC"],
        stage_positions=[(0, 0, 0), {"x": 10, "y": 10, "z": 5, "name": "cellB"}],
        grid_plan={"rows": 1, "columns": 2, "fov_width": 5, "fov_height": 5},
    ),
    "tczp": useq.MDASequence(
        axis_order="tczp",
        time_plan={"interval": 0.5, "loops": 3},
        z_plan={"range": 1, "step": 0.5},
        channels=["A"],
        stage_positions=[(0, 0), (1, 1)],
    ),
    "grid-before-positions": useq.MDASequence(
        axis_order="gpcz",
        channels=["A", "B"],
        stage_positions=[(0, 0), (100, 100)],
        grid_plan={"rows": 2, "columns": 1, "fov_width": 3, "fov_height": 3},
    ),
    "grid-only": useq.MDASequence(
        channels=["A"], grid_plan={"rows": 2, "columns": 2, "fov_width": 1, "fov_height": 1}
    ),
    "absolute-grid": _absolute_grid_sequence(),
    "plate": useq.MDASequence(
        channels=["DAPI", "GFP"],
        stage_positions=useq.WellPlatePlan(
            plate=96,
            a1_center_xy=(0, 0),
            selected_wells=([0, 1], [0, 3]),
            well_points_plan={"rows": 1, "columns": 2, "fov_width": 100, "fov_height": 100},
        ),
    ),
    "plate-random-points": useq.MDASequence(
        z_plan={"range": 1, "step": 1},
        stage_positions=useq.WellPlatePlan(
            plate=24,
            a1_center_xy=(0, 0),
            selected_wells=([0, 1], [1, 2]),
            well_points_plan={"num_points": 2, "random_seed": 3},
        ),
    ),
    "time-only": useq.MDASequence(time_plan={"interval": 1, "loops": 4}),
    "autofocus": useq.MDASequence(
        channels=["A", "B"],
        z_plan={"range": 2, "step": 1},
        stage_positions=[(0, 0, 0), (1, 1, 1)],
        autofocus_plan={"autofocus_motor_offset": 10, "axes": ("p",)},
    ),
    # sub-sequences: the layout is read from the events and checked against them
    "sub-z-same-shape": useq.MDASequence(
        axis_order="tpcz",
        time_plan={"interval": 1, "loops": 2},
        channels=["A", "B"],
        stage_positions=[
            {"x": 0, "y": 0, "z": 10, "sequence": {"z_plan": {"range": 2, "step": 1}}},
            {"x": 5, "y": 5, "z": 20, "sequence": {"z_plan": {"above": 1, "below": 1, "step": 1}}},
        ],
    ),
    "sub-grids-of-different-size": useq.MDASequence(
        axis_order="tcpg",
        channels=["A", "B"],
        stage_positions=[
            {"x": 0, "y": 0, "sequence": {"grid_plan": {"rows": 1, "columns": 2}}},
            {"x": 50, "y": 50, "name": "big", "sequence": {"grid_plan": {"rows": 1, "columns": 3}}},
        ],
    ),
}


def image_events(sequence: Any) -> list[Any]:
    """The events that take a frame (autofocus events take none)."""
    return [e for e in sequence if isinstance(e.action, useq.AcquireImage)]


def event_index(event: Any) -> dict[str, int]:
    return {str(getattr(k, "value", k)): v for k, v in event.index.items()}


def position_numbers(sequence: Any, events: list[Any]) -> list[int]:
    """Each event's place on the position axis: (p, g) flattened, outer axis first."""
    used = set().union(*(event_index(e) for e in events))
    axes = [a for a in sequence.axis_order if a in ("p", "g") and a in used]
    axes += [a for a in ("p", "g") if a in used and a not in axes]
    keys = [tuple(event_index(e).get(a, 0) for a in axes) for e in events]
    number = {key: n for n, key in enumerate(sorted(set(keys)))}
    return [number[key] for key in keys]


def dims(sequence: Any, width: int = 8, height: int = 6, **options: Any) -> list[Dimension]:
    return useq_to_acquisition_settings(sequence, width, height, **options)["dimensions"]


def make(
    sequence: Any, root: Path | str = "x.ome.zarr", *, format: str = "auto", **options: Any
) -> AcquisitionSettings:
    fields = useq_to_acquisition_settings(sequence, image_width=8, image_height=6, **options)
    return AcquisitionSettings(root_path=str(root), dtype="uint16", format=format, **fields)


@pytest.mark.parametrize("name", SEQUENCES)
def test_frame_number_of_every_event_is_its_place_in_iteration(name: str) -> None:
    sequence = SEQUENCES[name]
    settings = make(sequence)
    router = FrameRouter(settings)
    events = image_events(sequence)
    assert settings.num_frames == len(events)
    assert settings.frame_shape == (6, 8)
    positions = position_numbers(sequence, events)
    dims = settings.dimensions[:-2]
    for number, (event, position) in enumerate(zip(events, positions, strict=True)):
        index = event_index(event)
        acquisition = tuple(
            position if d.type == "position" else index.get(d.name, 0) for d in dims
        )
        assert router.frame_number(acquisition) == number
        assert router.acquisition_index(number) == acquisition
        for dim, value in zip(dims, acquisition, strict=True):
            if dim.type == "position":
                stored = dim.coords[value]
                assert (stored.x_coord, stored.y_coord) == pytest.approx((event.x_pos, event.y_pos))
                if stored.plate_row is not None:
                    # useq names a plate position after its well, e.g. 'B4_0001'
                    well = event.pos_name.split("_")[0]
                    assert f"{stored.plate_row}{stored.plate_column}" == well
            elif dim.name == "c":
                assert dim.channels is not None
                assert dim.channels[value].name == event.channel.config


def test_dimension_metadata() -> None:
    result = dims(
        SEQUENCES["tpgcz"], pixel_size_um=0.65, chunk_shapes={"z": 3, "y": 3}, shard_shapes={"t": 2}
    )
    assert [d.name for d in result] == ["t", "p", "c", "z", "y", "x"]
    t, p, c, z, y, x = result
    assert p.type == "position" and t.type == "time"
    assert (t.count, t.scale, t.unit, t.type, t.shard_size_chunks) == (2, 2.0, "second", "time", 2)
    # ome-writers' names: the stage position's name (or index); grid cells by row/column
    assert [(pos.name, pos.grid_row, pos.grid_column) for pos in p.coords] == [
        ("0", 0, 0),
        ("0", 0, 1),
        ("cellB", 0, 0),
        ("cellB", 0, 1),
    ]
    # a relative grid is centred on the stage position; z comes from the stage position
    assert [(pos.x_coord, pos.y_coord, pos.z_coord) for pos in p.coords] == [
        (-2.5, 0.0, 0.0),
        (2.5, 0.0, 0.0),
        (7.5, 10.0, 5.0),
        (12.5, 10.0, 5.0),
    ]
    assert c.channels is not None
    assert ([ch.name for ch in c.channels], c.type, c.scale, c.unit) == (
        ["DAPI", "FITC"],
        "channel",
        1.0,
        None,
    )
    assert (z.count, z.scale, z.unit, z.chunk_size) == (3, 1.0, "micrometer", 3)
    assert (y.count, y.scale, y.unit, y.chunk_size) == (6, 0.65, "micrometer", 3)
    assert (x.count, x.scale, x.unit, x.chunk_size) == (8, 0.65, "micrometer", None)


def test_default_scales_are_ome_writers_and_units_override() -> None:
    sequence = useq.MDASequence(
        time_plan={"interval": 3, "loops": 2}, z_plan={"relative": [0, 1, 3]}
    )
    t, z, y, x = dims(sequence, 4, 4)
    assert (t.scale, t.unit) == (3.0, "second")
    assert (z.count, z.scale, z.unit) == (3, 1.0, "micrometer")  # planes not evenly spaced
    assert (y.scale, y.unit, x.scale, x.unit) == (None, "micrometer", None, "micrometer")
    t, z, _, x = dims(
        sequence, 4, 4, units={"t": (500.0, "millisecond"), "z": (0.3, "nm"), "x": None}
    )
    assert (t.scale, t.unit, z.scale, z.unit, x.scale) == (
        500.0,
        "millisecond",
        0.3,
        "nanometer",
        None,
    )


@pytest.mark.parametrize(
    ("plans", "t_scale", "z_scale"),
    [
        ({"time_plan": {"duration": 4, "loops": 3}}, 2.0, None),
        ({"time_plan": {"interval": 0.25, "duration": 1}}, 0.25, None),
        ({"time_plan": [{"interval": 1, "loops": 2}, {"interval": 1, "loops": 3}]}, 1.0, None),
        ({"time_plan": [{"interval": 1, "loops": 2}, {"interval": 5, "loops": 3}]}, 1.0, None),
        ({"z_plan": {"absolute": [1, 3, 5]}}, None, 2.0),
        ({"z_plan": {"absolute": [1, 2, 5]}}, None, 1.0),
        ({"z_plan": {"top": 4, "bottom": 0, "step": 2}}, None, 2.0),
        ({"z_plan": {"above": 1, "below": 1, "step": 0.5}}, None, 0.5),
    ],
)
def test_time_and_z_scales_of_every_plan(
    plans: dict[str, Any], t_scale: float | None, z_scale: float | None
) -> None:
    sequence = useq.MDASequence(**plans)
    by_name = {d.name: d for d in dims(sequence, 4, 4)}
    sizes = {str(getattr(k, "value", k)): v for k, v in sequence.sizes.items() if v}
    assert {n: d.count for n, d in by_name.items() if n not in "yx"} == sizes
    for axis, expected in (("t", t_scale), ("z", z_scale)):
        if axis in by_name:
            assert by_name[axis].scale == expected


def test_well_plate_plan_becomes_a_plate() -> None:
    settings = make(SEQUENCES["plate"])
    assert settings.plate is not None
    assert settings.plate.row_names == list("ABCDEFGH")
    assert settings.plate.column_names == [str(i) for i in range(1, 13)]
    assert [(p.plate_row, p.plate_column, p.name) for p in settings.positions] == [
        ("A", "1", "fov0"),
        ("A", "1", "fov1"),
        ("B", "4", "fov0"),
        ("B", "4", "fov1"),
    ]
    big = useq.MDASequence(
        stage_positions=useq.WellPlatePlan(
            plate=1536, a1_center_xy=(0, 0), selected_wells=([31], [47])
        )
    )
    settings = make(big)
    assert settings.plate is not None
    assert settings.plate.row_names[25:28] == ["Z", "AA", "AB"]
    assert len(settings.plate.row_names) == 32 and settings.plate.column_names[-1] == "48"
    assert [(p.plate_row, p.plate_column) for p in settings.positions] == [("AF", "48")]


def test_repeated_position_names_are_numbered() -> None:
    # ome-writers would reject the repeated name; unnamed positions are named by index
    sequence = useq.MDASequence(
        stage_positions=[{"x": 0, "name": "cell"}, {"x": 1, "name": "cell"}, {"x": 2}]
    )
    (positions, *_) = dims(sequence, 4, 4)
    assert positions.type == "position"
    assert [p.name for p in positions.coords] == ["cell", "cell_1", "2"]


def test_a_dict_is_accepted_as_sequence() -> None:
    settings = make({"channels": ["A", "B"], "z_plan": {"range": 1, "step": 1}})
    assert [(d.name, d.count) for d in settings.dimensions] == [
        ("c", 2),
        ("z", 2),
        ("y", 6),
        ("x", 8),
    ]


def _image_paths(root: Path) -> list[str]:
    """Image paths in position order, from the NGFF metadata (plate or bioformats2raw)."""
    group = zarr.open_group(str(root), mode="r")
    ome = dict(group.attrs)["ome"]
    if "plate" not in ome:
        BioFormats2Raw.from_zarr(group)
        series = dict(zarr.open_group(str(root / "OME"), mode="r").attrs)["ome"]["series"]
        return list(series)
    HCS.from_zarr(group)
    paths = []
    for well in ome["plate"]["wells"]:
        images = dict(zarr.open_group(str(root / well["path"]), mode="r").attrs)["ome"]
        paths += [f"{well['path']}/{image['path']}" for image in images["well"]["images"]]
    return paths


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["tpgcz", "plate", "autofocus", "sub-z-same-shape"])
async def test_frames_land_at_their_event(tmp_path: Path, name: str) -> None:
    sequence = SEQUENCES[name]
    root = tmp_path / "mda.ome.zarr"
    settings = make(sequence, root, format="tensorstore")
    events = image_events(sequence)
    frames = make_frames(len(events), (6, 8))
    async with open_stream(settings) as stream:
        for event, frame in zip(events, frames, strict=True):
            await stream.append(frame, metadata={"x": event.x_pos, "y": event.y_pos})

    paths = _image_paths(root)
    positions = position_numbers(sequence, events)
    assert len(paths) == max(positions) + 1
    if settings.plate is not None:
        # the image of each event sits in the well useq names for that event
        for event, position in zip(events, positions, strict=True):
            well = event.pos_name.split("_")[0]
            row, column = paths[position].split("/")[:2]
            assert row + column == well
    sizes: dict[str, int] = {}
    for event in events:
        for axis, value in event_index(event).items():
            sizes[axis] = max(sizes.get(axis, 0), value + 1)
    for number, (event, position) in enumerate(zip(events, positions, strict=True)):
        array = zarr.open_array(str(root / paths[position] / "0"), mode="r")
        image = dict(zarr.open_group(str(root / paths[position]), mode="r").attrs)["ome"]
        axes = [axis["name"] for axis in image["multiscales"][0]["axes"]]
        assert array.shape == tuple(sizes[a] if a in sizes else {"y": 6, "x": 8}[a] for a in axes)
        index = event_index(event)
        where = tuple(index.get(a, 0) if a not in ("y", "x") else slice(None) for a in axes)
        np.testing.assert_array_equal(array[where], frames[number])


def test_tpgcz_scales_reach_the_ngff_metadata(tmp_path: Path) -> None:
    root = tmp_path / "s.ome.zarr"
    settings = make(SEQUENCES["tpgcz"], root, format="tensorstore", pixel_size_um=0.5)
    with create_stream(settings) as stream:
        for frame in make_frames(settings.num_frames or 0, (6, 8)):
            stream.append(frame)
    first = _image_paths(root)[0]
    image = dict(zarr.open_group(str(root / first), mode="r").attrs)["ome"]["multiscales"][0]
    axes = [(a["name"], a.get("unit")) for a in image["axes"]]
    assert axes == [
        ("t", "second"),
        ("c", None),
        ("z", "micrometer"),
        ("y", "micrometer"),
        ("x", "micrometer"),
    ]
    scale = image["datasets"][0]["coordinateTransformations"][0]["scale"]
    assert scale == [2.0, 1.0, 1.0, 0.5, 0.5]


REJECTED = {
    "sub-sequences-of-different-size": (
        useq.MDASequence(
            axis_order="tpcz",
            channels=["A"],
            stage_positions=[
                {"x": 0, "y": 0, "sequence": {"z_plan": {"range": 2, "step": 1}}},
                {"x": 1, "y": 1, "name": "other", "sequence": {"z_plan": {"range": 4, "step": 1}}},
            ],
        ),
        r"positions differ in shape.*p=0 has c=1, z=3 but position p=1 \('other'\) has c=1, z=5",
    ),
    "sub-sequence-on-one-position-only": (
        useq.MDASequence(
            axis_order="tpcz",
            channels=["A"],
            stage_positions=[
                {"x": 0, "y": 0, "sequence": {"z_plan": {"range": 2, "step": 1}}},
                {"x": 1, "y": 1},
            ],
        ),
        r"positions differ in shape.*p=0 has c=1, z=3 but position p=1 has c=1",
    ),
    "sub-grid-inside-channels": (
        useq.MDASequence(
            channels=["A", "B"],
            stage_positions=[
                {"x": 0, "y": 0, "sequence": {"grid_plan": {"rows": 1, "columns": 2}}},
                {"x": 1, "y": 1},
            ],
        ),
        "image event 1 .* comes out of order",
    ),
    "sub-sequence-channels-differ": (
        useq.MDASequence(
            stage_positions=[
                {"x": 0, "y": 0, "sequence": {"channels": ["A", "B"]}},
                {"x": 1, "y": 1, "sequence": {"channels": ["A", "C"]}},
            ],
        ),
        "channel 1 is 'B' at some positions and 'C' at others",
    ),
    "positions-and-grid-not-adjacent": (
        useq.MDASequence(
            axis_order="pcgz",
            channels=["A", "B"],
            stage_positions=[(0, 0), (1, 1)],
            grid_plan={"rows": 1, "columns": 2, "fov_width": 1, "fov_height": 1},
        ),
        "axis_order='pcg' with non-adjacent position and grid axes",
    ),
    "acquire-every": (
        useq.MDASequence(
            time_plan={"interval": 2.5, "loops": 4},
            channels=[{"config": "A", "acquire_every": 2}, "B"],
        ),
        "channel 'A' has acquire_every=2",
    ),
    "do-stack-false": (
        useq.MDASequence(
            z_plan={"range": 2, "step": 1}, channels=["A", {"config": "B", "do_stack": False}]
        ),
        "channel 'B' has do_stack=False: it takes one plane where the other channels take 3",
    ),
    "plate-with-grid-plan": (
        useq.MDASequence(
            stage_positions=useq.WellPlatePlan(
                plate=24, a1_center_xy=(0, 0), selected_wells=([0], [1])
            ),
            grid_plan={"rows": 1, "columns": 2, "fov_width": 1, "fov_height": 1},
        ),
        "WellPlatePlan with grid_plan is not supported",
    ),
}


@pytest.mark.parametrize("name", REJECTED)
def test_ragged_sequences_are_rejected_with_the_reason(name: str) -> None:
    # NotImplementedError, as in ome-writers (pymmcore-plus falls back on it)
    sequence, message = REJECTED[name]
    with pytest.raises(NotImplementedError, match=message):
        make(sequence)


def test_a_sequence_without_images_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="no image events"):
        make(useq.MDASequence())


def test_skipping_channels_are_fine_when_nothing_is_skipped() -> None:
    # acquire_every with one time point, do_stack=False with one plane: still rectangular
    sequence = useq.MDASequence(
        time_plan={"interval": 1, "loops": 1},
        z_plan={"range": 0, "step": 1},
        channels=[{"config": "A", "acquire_every": 3, "do_stack": False}, "B"],
    )
    settings = make(sequence)
    assert settings.num_frames == len(image_events(sequence)) == 2


def test_bad_options_and_inputs() -> None:
    with pytest.raises(ValueError, match=r"chunk_shapes: unknown axis names \['p'\]"):
        make(SEQUENCES["tczp"], chunk_shapes={"p": 1})
    with pytest.raises(ValueError, match=r"units: unknown axis names \['T'\]"):
        make(SEQUENCES["tczp"], units={"T": (1.0, "second")})
    with pytest.raises(TypeError, match="got list"):
        make([1, 2, 3])


def test_missing_useq_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "useq", None)  # makes `import useq` fail
    with pytest.raises(ImportError, match=r"pip install 'ome-stream\[useq\]'"):
        useq_to_acquisition_settings({"channels": ["A"]}, 4, 4)


def test_ome_stream_imports_without_useq() -> None:
    code = (
        "import sys; sys.modules['useq'] = None\n"
        "import ome_stream\n"
        "assert callable(ome_stream.useq_to_acquisition_settings)\n"
        "try:\n"
        "    ome_stream.useq_to_acquisition_settings({}, 4, 4)\n"
        "except ImportError as err:\n"
        "    print(err)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert "pip install 'ome-stream[useq]'" in result.stdout


def test_the_result_is_the_mapping_acquisition_settings_takes() -> None:
    sequence = SEQUENCES["plate"]
    result = useq_to_acquisition_settings(sequence, 8, 6, pixel_size_um=0.5)
    assert set(result) == {"dimensions", "plate"}
    settings = AcquisitionSettings(**result)  # no root path: scratch arrays
    assert settings.file_format == "scratch"
    assert settings.num_frames == len(image_events(sequence))
    assert settings.plate == result["plate"]


def test_dims_from_useq_is_deprecated_but_answers_the_same() -> None:
    sequence = SEQUENCES["tczp"]
    with pytest.warns(DeprecationWarning, match="`dims_from_useq` is deprecated"):
        old = dims_from_useq(sequence, 8, 6, pixel_size_um=0.5)
    assert old == dims(sequence, pixel_size_um=0.5)


@pytest.mark.parametrize(
    ("sequence", "expected"),
    [
        # a grid without stage positions: numbered cells
        (
            useq.MDASequence(grid_plan={"rows": 1, "columns": 2}),
            [("0000", 0, 0), ("0001", 0, 1)],
        ),
        # random points (no row/column) around one named position: _g suffix
        (
            useq.MDASequence(
                stage_positions=[{"x": 1, "y": 2, "name": "rp"}],
                grid_plan={"num_points": 2, "random_seed": 1},
            ),
            [("rp_g0000", None, None), ("rp_g0001", None, None)],
        ),
        # ... around several positions: _p_g suffix
        (
            useq.MDASequence(
                stage_positions=[{"x": 1, "name": "rp"}, {"x": 9, "name": "rp"}],
                grid_plan={"num_points": 2, "random_seed": 1},
            ),
            [
                ("rp_p0000_g0000", None, None),
                ("rp_p0000_g0001", None, None),
                ("rp_p0001_g0000", None, None),
                ("rp_p0001_g0001", None, None),
            ],
        ),
    ],
)
def test_position_names_follow_ome_writers(sequence: Any, expected: list[Any]) -> None:
    (positions, *_) = dims(sequence)
    assert [(p.name, p.grid_row, p.grid_column) for p in positions.coords] == expected


def test_plate_from_the_wells_positions_name() -> None:
    sequence = useq.MDASequence(
        stage_positions=[
            {"x": 0, "y": 0, "name": "f0", "plate_row": 0, "plate_col": 0},
            {"x": 1, "y": 0, "name": "f0", "plate_row": 1, "plate_col": 2},
        ]
    )
    result = useq_to_acquisition_settings(sequence, 8, 6)
    plate = result["plate"]
    assert plate is not None
    assert (plate.row_names, plate.column_names) == (["A", "B"], ["1", "2", "3"])
    (positions, *_) = result["dimensions"]
    assert [(p.name, p.plate_row, p.plate_column) for p in positions.coords] == [
        ("f0", "A", "1"),
        ("f0", "B", "3"),
    ]
    assert useq_to_acquisition_settings(SEQUENCES["tczp"], 8, 6)["plate"] is None


def test_a_time_plan_without_end_is_the_unbounded_axis() -> None:
    sequence = useq.MDASequence(
        axis_order="tcz",
        time_plan={"interval": 0, "duration": 3},
        channels=["A", "B"],
        z_plan={"range": 2, "step": 1},
    )
    result = useq_to_acquisition_settings(sequence, 8, 6)
    assert [(d.name, d.count) for d in result["dimensions"]] == [
        ("t", None),
        ("c", 2),
        ("z", 3),
        ("y", 6),
        ("x", 8),
    ]
    assert AcquisitionSettings(root_path="u.ome.zarr", dtype="u2", **result).is_unbounded
