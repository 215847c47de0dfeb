"""useq-schema sequences become settings whose acquisition order is the event order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from ome_stream import (
    PositionDimension,
    create_stream,
    dims_from_useq,
    open_stream,
    useq_to_acquisition_settings,
)
from ome_stream.router import FrameRouter

useq = pytest.importorskip("useq", reason="useq-schema: pip install 'ome-stream[useq]'")

SEQUENCES = {
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
    "plate": useq.MDASequence(
        channels=["DAPI", "GFP"],
        stage_positions=useq.WellPlatePlan(
            plate=96,
            a1_center_xy=(0, 0),
            selected_wells=([0, 1], [0, 3]),
            well_points_plan={"rows": 1, "columns": 2, "fov_width": 100, "fov_height": 100},
        ),
    ),
    "time-only": useq.MDASequence(time_plan={"interval": 1, "loops": 4}),
}


@pytest.mark.parametrize("name", SEQUENCES)
def test_event_order_is_the_acquisition_order(name: str) -> None:
    sequence = SEQUENCES[name]
    settings = useq_to_acquisition_settings(
        sequence, root_path="x.ome.zarr", dtype="uint16", image_width=8, image_height=6
    )
    router = FrameRouter(settings)
    names = [d.name for d in settings.dimensions[:-2]]
    events = list(sequence)
    assert settings.num_frames == len(events)
    position_of = {}
    for number, event in enumerate(events):
        index = {str(getattr(k, "value", k)): v for k, v in event.index.items()}
        acquisition = router.acquisition_index(number)
        for axis, value in zip(names, acquisition, strict=True):
            if axis == "p":  # positions flatten p (and g) in iteration order
                key = (index.get("p", 0), index.get("g", 0))
                position_of.setdefault(key, value)
                assert position_of[key] == value
            else:
                assert index.get(axis, 0) == value
    assert settings.frame_shape == (6, 8)


def test_metadata_of_the_dimensions() -> None:
    dims = dims_from_useq(SEQUENCES["tpgcz"], 8, 6, pixel_size_um=0.65)
    assert [d.name for d in dims] == ["t", "p", "c", "z", "y", "x"]
    t, p, c, z, y, _ = dims
    assert (t.count, t.scale, t.unit) == (2, 2.0, "second")
    assert isinstance(p, PositionDimension)
    assert [pos.name for pos in p.positions] == [
        "p000_g000",
        "p000_g001",
        "cellB_g000",
        "cellB_g001",
    ]
    assert p.positions[3].x == 10 + 2.5 and p.positions[3].z == 5
    assert [ch.name for ch in c.channels] == ["DAPI", "FITC"]
    assert (z.count, z.scale) == (3, 1.0)
    assert y.scale == 0.65


def test_well_plate_plan_becomes_a_plate(tmp_path: Path) -> None:
    settings = useq_to_acquisition_settings(
        SEQUENCES["plate"],
        root_path=tmp_path / "p.ome.zarr",
        dtype="uint8",
        image_width=4,
        image_height=4,
    )
    assert settings.plate is not None
    assert settings.plate.row_names == list("ABCDEFGH")
    assert settings.plate.column_names == [str(i) for i in range(1, 13)]
    positions = settings.positions
    assert [(p.plate_row, p.plate_column, p.name) for p in positions] == [
        ("A", "1", "fov0"),
        ("A", "1", "fov1"),
        ("B", "4", "fov0"),
        ("B", "4", "fov1"),
    ]
    events = list(SEQUENCES["plate"])
    with create_stream(settings) as stream:
        for i, _ in enumerate(events):
            stream.append(np.full((4, 4), i, "uint8"))
    root = tmp_path / "p.ome.zarr"
    assert zarr.open_array(str(root / "B" / "4" / "1" / "0"), mode="r")[1, 0, 0] == 7


@pytest.mark.anyio
async def test_end_to_end_frames_land_at_their_event(tmp_path: Path) -> None:
    sequence = SEQUENCES["tpgcz"]
    settings = useq_to_acquisition_settings(
        sequence, root_path=tmp_path / "s.ome.zarr", dtype="uint16", image_width=8, image_height=6
    )
    events = list(sequence)
    async with open_stream(settings) as stream:
        for number, event in enumerate(events):
            await stream.append(
                np.full((6, 8), number, "uint16"), metadata={"x": event.x_pos, "y": event.y_pos}
            )
    root = tmp_path / "s.ome.zarr"
    for number, event in enumerate(events):
        index = {str(getattr(k, "value", k)): v for k, v in event.index.items()}
        position = index["p"] * 2 + index["g"]
        data = zarr.open_array(str(root / str(position) / "0"), mode="r")
        # stored t, c, z (OME-Zarr order)
        assert data[index["t"], index["c"], index["z"], 0, 0] == number


def test_sub_sequences_and_split_axes_are_rejected() -> None:
    sub = useq.MDASequence(
        channels=["A"],
        stage_positions=[
            {"x": 0, "y": 0, "sequence": {"z_plan": {"range": 2, "step": 1}}},
            {"x": 1, "y": 1},
        ],
    )
    with pytest.raises(ValueError, match="sub-sequence"):
        dims_from_useq(sub, 4, 4)
    split = useq.MDASequence(
        axis_order="pcgz",
        channels=["A", "B"],
        stage_positions=[(0, 0), (1, 1)],
        grid_plan={"rows": 1, "columns": 2, "fov_width": 1, "fov_height": 1},
    )
    with pytest.raises(ValueError, match="must be adjacent"):
        dims_from_useq(split, 4, 4)
