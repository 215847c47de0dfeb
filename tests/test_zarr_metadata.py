"""OME-Zarr metadata: where ome-writers puts each piece, read back with zarr-python and
tensorstore and validated with ome-zarr-models (NGFF 0.5)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import ome_types
import pytest
import tensorstore as ts
import tifffile
import zarr
from ome_zarr_models.v05.bioformats2raw import BioFormats2Raw
from ome_zarr_models.v05.hcs import HCS
from ome_zarr_models.v05.image import Image

from _settings import SCREEN, field_paths, field_positions
from ome_stream import (
    AcquisitionSettings,
    Dimension,
    Position,
    available_backends,
    create_stream,
    dims_from_standard_axes,
    open_stream,
)
from ome_stream.layout import AcquisitionRecord, Layout
from ome_stream.metadata.api import accept_update, current_metadata

BACKENDS = [b for b in ("tensorstore", "zarr-python", "acquire-zarr") if b in available_backends()]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


def attributes(group: Path) -> dict[str, Any]:
    """A group's attributes, as zarr-python reads them (checked against the raw JSON)."""
    attrs = dict(zarr.open_group(str(group), mode="r").attrs)
    assert attrs == json.loads((group / "zarr.json").read_text())["attributes"]
    return attrs


def read_tensorstore(path: Path) -> np.ndarray:
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)}}
    return np.asarray(ts.open(spec, read=True).result().read().result())


def staged(name: str, x: float, y: float, z: float, **kwargs: Any) -> Position:
    """A Position with stage coordinates."""
    return Position(name=name, x_coord=x, y_coord=y, z_coord=z, **kwargs)


@pytest.mark.anyio
async def test_positions_are_series_named_by_position(tmp_path: Path, backend: str) -> None:
    settings = AcquisitionSettings(
        root_path=tmp_path / "m.ome.zarr",
        format=backend,
        dtype="uint16",
        dimensions=[
            Dimension(
                name="p", type="position", coords=[staged("ctrl-1", 10.0, 20.0, 1.5), "ctrl-2"]
            ),
            *dims_from_standard_axes({"t": 2, "y": 8, "x": 8}),
        ],
    )
    frames = np.arange(4 * 64, dtype="uint16").reshape(4, 8, 8)
    async with open_stream(settings) as stream:
        for i, frame in enumerate(frames):
            await stream.append(frame, frame_metadata={"delta_t": float(i % 2), "n": i})
        await stream.set_global_metadata("summary", {"positions": ["ctrl-1", "ctrl-2"]})
        assert list(stream.get_metadata()) == ["ctrl-1", "ctrl-2"]
    root = tmp_path / "m.ome.zarr"
    BioFormats2Raw.from_zarr(zarr.open_group(str(root), mode="r"))
    assert attributes(root / "OME")["ome"]["series"] == ["ctrl-1", "ctrl-2"]
    # global metadata only at the root
    assert attributes(root)["summary"] == {"positions": ["ctrl-1", "ctrl-2"]}
    for p, name in enumerate(["ctrl-1", "ctrl-2"]):
        np.testing.assert_array_equal(
            read_tensorstore(root / name / "0"), frames[2 * p : 2 * p + 2]
        )
        Image.from_zarr(zarr.open_group(str(root / name), mode="r"))
        attrs = attributes(root / name)
        assert "summary" not in attrs
        assert attrs["ome_writers"]["frame_metadata"] == [
            {"delta_t": 0.0, "n": 2 * p, "storage_index": [0]},
            {"delta_t": 1.0, "n": 2 * p + 1, "storage_index": [1]},
        ]
        assert attrs["ome_writers"]["version"]
        assert attrs["ome_stream"]["dimension_names"] == ["t", "y", "x"]
    # the stage position of each image, beside the frame metadata
    assert attributes(root / "ctrl-1")["ome_stream"]["position"] == {
        "name": "ctrl-1", "x": 10.0, "y": 20.0, "z": 1.5, "unit": "micrometer",
    }  # fmt: skip
    assert attributes(root / "ctrl-2")["ome_stream"]["position"] == {"name": "ctrl-2"}


def test_grid_positions_are_named_name_row_column(tmp_path: Path) -> None:
    positions = [
        Position(name=n, grid_row=0, grid_column=c) for n in ("ctrl-1", "ctrl-2") for c in (0, 1)
    ]
    settings = AcquisitionSettings(
        root_path=tmp_path / "g.ome.zarr",
        dtype="uint8",
        dimensions=[
            Dimension(name="p", type="position", coords=positions),
            *dims_from_standard_axes({"y": 4, "x": 4}),
        ],
    )
    with create_stream(settings) as stream:
        for p in range(4):
            stream.append(np.full((4, 4), p, "uint8"))
    names = ["ctrl-1_0_0", "ctrl-1_0_1", "ctrl-2_0_0", "ctrl-2_0_1"]
    root = tmp_path / "g.ome.zarr"
    assert attributes(root / "OME")["ome"]["series"] == names
    for p, name in enumerate(names):
        assert (read_tensorstore(root / name / "0") == p).all()


def test_plate_fields_are_named_by_position(tmp_path: Path) -> None:
    settings = AcquisitionSettings(
        root_path=tmp_path / "plate.ome.zarr",
        dtype="uint8",
        dimensions=[
            Dimension(name="p", type="position", coords=field_positions(3)),
            *dims_from_standard_axes({"y": 4, "x": 4}),
        ],
        plate=SCREEN,
    )
    with create_stream(settings) as stream:
        stream.set_global_metadata("experiment", {"name": "viability"})
        for p in range(3):
            stream.append(np.full((4, 4), p, "uint8"), frame_metadata={"p": p})
        assert list(stream.get_metadata()) == field_paths(3)
    root = tmp_path / "plate.ome.zarr"
    HCS.from_zarr(zarr.open_group(str(root), mode="r"))
    assert attributes(root)["experiment"] == {"name": "viability"}
    images = attributes(root / "B" / "2")["ome"]["well"]["images"]
    assert images == [{"path": "site1"}, {"path": "site2"}]
    assert field_paths(3) == ["B/2/site1", "B/2/site2", "D/5/site1"]
    for p, path in enumerate(field_paths(3)):
        assert (np.asarray(zarr.open_array(str(root / path / "0"), mode="r")) == p).all()
        attrs = attributes(root / path)
        assert attrs["ome_writers"]["frame_metadata"] == [{"p": p, "storage_index": []}]
        assert "experiment" not in attrs


@pytest.mark.anyio
async def test_update_metadata_replaces_attributes_but_keeps_frames(tmp_path: Path) -> None:
    settings = AcquisitionSettings(
        root_path=tmp_path / "u.ome.zarr",
        dtype="uint8",
        dimensions=dims_from_standard_axes({"t": 2, "y": 4, "x": 4}),
    )
    async with open_stream(settings) as stream:
        await stream.append(np.zeros((4, 4), "uint8"), frame_metadata={"delta_t": 0.5})
        await stream.set_global_metadata("ns", {"a": 1})
        documents = stream.get_metadata()
        assert set(documents) == {"."}
        assert documents["."]["ns"] == {"a": 1}
        documents["."] = {"ome": documents["."]["ome"], "custom": [1, 2]}
        await stream.update_metadata(documents)  # before close: applied at close
        await stream.append(np.zeros((4, 4), "uint8"))
    root = tmp_path / "u.ome.zarr"
    attrs = attributes(root)
    assert attrs["custom"] == [1, 2]
    assert "ome_stream" not in attrs  # replaced, as given
    # the recorded frames and the global namespaces are never lost by an update
    assert attrs["ome_writers"]["frame_metadata"] == [{"delta_t": 0.5, "storage_index": [0]}]
    assert attrs["ns"] == {"a": 1}
    Image.from_zarr(zarr.open_group(str(root), mode="r"))


def test_update_metadata_arguments_are_checked_before_anything_changes(tmp_path: Path) -> None:
    settings = AcquisitionSettings(
        root_path=tmp_path / "e.ome.zarr",
        dtype="uint8",
        dimensions=[
            Dimension(name="p", type="position", coords=["ctrl-1", "ctrl-2"]),
            *dims_from_standard_axes({"y": 4, "x": 4}),
        ],
    )
    layout = Layout(settings)
    record = AcquisitionRecord([a.shape for a in layout.arrays], [[], []])
    known = current_metadata(layout, record)
    assert list(known) == ["ctrl-1", "ctrl-2"]
    with pytest.raises(KeyError, match="Unknown path: nope"):
        accept_update(layout, known, {"ctrl-1": {}, "nope": {}})
    with pytest.raises(TypeError, match=r"Expected dict\[str, dict\]"):
        accept_update(layout, known, ["ctrl-1"])
    with pytest.raises(TypeError, match="attributes for 'ctrl-2'"):
        accept_update(layout, known, {"ctrl-2": "text"})
    with pytest.raises(ValueError, match="not JSON"):
        accept_update(layout, known, {"ctrl-2": {"x": object()}})
    assert accept_update(layout, known, {"ctrl-2": {"a": (1, 2)}}) == {"ctrl-2": {"a": [1, 2]}}


@pytest.mark.anyio
async def test_channel_window_comes_from_the_pixels_written(tmp_path: Path, backend: str) -> None:
    rng = np.random.default_rng(1)
    settings = AcquisitionSettings(
        root_path=tmp_path / "w.ome.zarr",
        format=backend,
        dtype="uint16",
        dimensions=[
            Dimension(name="t", count=None, type="time", unit="s"),
            Dimension(name="c", count=2, type="channel", coords=["bright", "dim"]),
            Dimension(name="z", count=5, type="space"),
            *dims_from_standard_axes({"y": 64, "x": 64}),
        ],
    )
    ranges = [(1000, 3000), (10, 40)]
    async with open_stream(settings) as stream:
        for _t in range(2):
            for low, high in ranges:
                for _z in range(5):
                    await stream.append(rng.integers(low, high + 1, (64, 64)).astype("uint16"))
    omero = attributes(tmp_path / "w.ome.zarr")["ome"]["omero"]
    for channel, (low, high) in zip(omero["channels"], ranges, strict=True):
        window = channel["window"]
        assert (window["min"], window["max"]) == (0, 65535)
        span = high - low
        assert low <= window["start"] < low + 0.05 * span
        assert high - 0.05 * span < window["end"] <= high
    Image.from_zarr(zarr.open_group(str(tmp_path / "w.ome.zarr"), mode="r"))


def test_window_of_a_channel_never_written_is_the_dtype_range(tmp_path: Path) -> None:
    settings = AcquisitionSettings(
        root_path=tmp_path / "s.ome.zarr",
        dtype="uint8",
        dimensions=dims_from_standard_axes({"c": 2, "y": 4, "x": 4}),
    )
    with create_stream(settings) as stream:
        stream.append(np.full((4, 4), 7, "uint8"))
        stream.skip()
    channels = attributes(tmp_path / "s.ome.zarr")["ome"]["omero"]["channels"]
    assert channels[0]["window"] == {"start": 7, "end": 8, "min": 0, "max": 255}
    assert channels[1]["window"] == {"start": 0, "end": 255, "min": 0, "max": 255}


def test_one_position_is_the_root_image(tmp_path: Path) -> None:
    settings = AcquisitionSettings(
        root_path=tmp_path / "one.ome.zarr",
        dtype="uint8",
        dimensions=[
            Dimension(name="p", type="position", coords=["ctrl-1"]),
            *dims_from_standard_axes({"t": 2, "y": 4, "x": 4}),
        ],
    )
    with create_stream(settings) as stream:
        for t in range(2):
            stream.append(np.full((4, 4), t, "uint8"))
        assert list(stream.get_metadata()) == ["."]
    root = tmp_path / "one.ome.zarr"
    image = Image.from_zarr(zarr.open_group(str(root), mode="r"))
    assert image.ome_attributes.multiscales[0].name == "ctrl-1"
    np.testing.assert_array_equal(read_tensorstore(root / "0")[:, 0, 0], [0, 1])


ZARR_ONLY = """
import sys
import numpy as np
from ome_stream import AcquisitionSettings, create_stream, dims_from_standard_axes

heavy = ("ome_types", "pint")
for backend in sys.argv[2:]:
    settings = AcquisitionSettings(
        root_path=f"{sys.argv[1]}/{backend}.ome.zarr",
        format=backend,
        dtype="uint16",
        dimensions=dims_from_standard_axes({"t": 3, "y": 16, "x": 16}),
    )
    with create_stream(settings) as stream:
        for t in range(3):
            stream.append(np.full((16, 16), t + 1, "uint16"), frame_metadata={"delta_t": t})
        documents = stream.get_metadata()
        documents["."]["note"] = {"lab": "bench 4"}
        stream.update_metadata(documents)
    assert not [m for m in heavy if m in sys.modules], [m for m in heavy if m in sys.modules]
tiff = AcquisitionSettings(
    root_path=f"{sys.argv[1]}/after.ome.tiff",
    dtype="uint16",
    dimensions=dims_from_standard_axes({"t": 1, "y": 16, "x": 16}),
)
with create_stream(tiff) as stream:
    stream.append(np.full((16, 16), 9, "uint16"))
print(sorted(m for m in heavy if m in sys.modules))
"""


def test_an_ome_zarr_stream_never_imports_ome_types(tmp_path: Path) -> None:
    # ome_types and pint take most of a second to import; only OME-TIFF needs them
    backends = available_backends("ome-zarr")
    result = subprocess.run(
        [sys.executable, "-c", ZARR_ONLY, str(tmp_path), *backends],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["['ome_types',", "'pint']"]  # the TIFF stream needs them
    for backend in backends:
        root = tmp_path / f"{backend}.ome.zarr"
        expected = np.arange(1, 4, dtype="uint16")[:, None, None] * np.ones((16, 16), "uint16")
        np.testing.assert_array_equal(zarr.open_array(str(root / "0"), mode="r")[:], expected)
        np.testing.assert_array_equal(read_tensorstore(root / "0"), expected)
        assert attributes(root)["note"] == {"lab": "bench 4"}
    page = tifffile.imread(tmp_path / "after.ome.tiff")
    assert page.shape == (16, 16) and (page == 9).all()
    assert ome_types.from_tiff(tmp_path / "after.ome.tiff").images[0].pixels.size_t == 1
