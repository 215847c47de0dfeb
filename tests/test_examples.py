"""Every example program runs, for OME-Zarr and OME-TIFF, and its output reads back:
each frame i of the examples holds the value i, so the values show where frames went."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from ome_types import from_xml

EXAMPLES = Path(__file__).parent.parent / "examples"


def run(name: str, *args: str) -> str:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main(*args)


def zarr_array(path: str) -> np.ndarray:
    return np.asarray(zarr.open_array(path, mode="r")[...])


def tiff_array(path: str, image: int = 0) -> tuple[np.ndarray, object]:
    """Pixels of OME image ``image`` (every file of a multi-file set describes all)."""
    with tifffile.TiffFile(path) as tif:
        return tif.series[image].asarray(), from_xml(tif.ome_metadata)


def frame_numbers(data: np.ndarray) -> np.ndarray:
    """The frame number each stored frame holds (every pixel of frame i is i)."""
    planes = data.reshape(-1, *data.shape[-2:])
    assert (planes == planes[:, :1, :1]).all()
    return planes[:, 0, 0].reshape(data.shape[:-2])


@pytest.mark.parametrize("fmt", ["ome-zarr", "ome-tiff"])
def test_single_5d_image(tmp_path: Path, fmt: str) -> None:
    out = run("single_5d_image", tmp_path, fmt)
    data = zarr_array(f"{out}/0") if fmt == "ome-zarr" else tiff_array(out)[0]
    np.testing.assert_array_equal(frame_numbers(data), np.arange(30).reshape(3, 2, 5))


@pytest.mark.parametrize("fmt", ["ome-zarr", "ome-tiff"])
def test_transposed_order(tmp_path: Path, fmt: str) -> None:
    out = run("transposed_order", tmp_path, fmt)
    acquired = np.arange(36).reshape(3, 6, 2)  # t, z, c
    if fmt == "ome-zarr":
        np.testing.assert_array_equal(
            frame_numbers(zarr_array(f"{out}/0")), acquired.transpose(0, 2, 1)
        )  # stored t, c, z
    else:
        data, ome = tiff_array(out)
        assert ome.images[0].pixels.dimension_order.value == "XYCZT"
        np.testing.assert_array_equal(frame_numbers(data), acquired)


def position_images(out: str, fmt: str, groups: list[str]) -> list[tuple[np.ndarray, object]]:
    """Pixels and OME-XML (None for OME-Zarr) of each position, in acquisition order: the
    OME-Zarr image group named in ``groups``, or the OME-TIFF file numbered by position."""
    if fmt == "ome-zarr":
        return [(zarr_array(f"{out}/{group}/0"), None) for group in groups]
    stem = Path(out).name
    return [tiff_array(f"{out}/{stem}_p{p:03d}.ome.tiff", p) for p in range(len(groups))]


@pytest.mark.parametrize("fmt", ["ome-zarr", "ome-tiff"])
def test_multiposition(tmp_path: Path, fmt: str) -> None:
    out = run("multiposition", tmp_path, fmt)
    acquired = np.arange(36).reshape(2, 3, 2, 3)  # t, p, c, z
    images = position_images(out, fmt, ["embryo-1", "embryo-2", "embryo-3"])
    for p, (data, _) in enumerate(images):
        np.testing.assert_array_equal(frame_numbers(data), acquired[:, p])


@pytest.mark.parametrize("fmt", ["ome-zarr", "ome-tiff"])
def test_plate(tmp_path: Path, fmt: str) -> None:
    out = run("plate", tmp_path, fmt)
    acquired = np.arange(48).reshape(3, 4, 2, 2)  # t, p, c, z
    images = position_images(out, fmt, ["B/3/site1", "B/3/site2", "B/4/site1", "E/7/site1"])
    for p, (data, ome) in enumerate(images):
        if fmt == "ome-tiff":
            assert ome.plates[0].name == "96-well screen"
        np.testing.assert_array_equal(frame_numbers(data), acquired[:, p])
    if fmt == "ome-zarr":  # the whole 96-well plate is described, three wells were visited
        plate = zarr.open_group(out, mode="r").attrs["ome"]["plate"]
        assert plate["name"] == "96-well screen"
        assert [r["name"] for r in plate["rows"]] == list("ABCDEFGH")
        assert [c["name"] for c in plate["columns"]] == [str(n) for n in range(1, 13)]
        assert [w["path"] for w in plate["wells"]] == ["B/3", "B/4", "E/7"]


@pytest.mark.parametrize("fmt", ["ome-zarr", "ome-tiff"])
def test_unbounded(tmp_path: Path, fmt: str) -> None:
    out = run("unbounded", tmp_path, fmt, "3")
    acquired = np.arange(9).reshape(3, 3)  # t, p
    for p, (data, _) in enumerate(position_images(out, fmt, ["dish-1", "dish-2", "dish-3"])):
        np.testing.assert_array_equal(frame_numbers(data), acquired[:, p])


@pytest.mark.parametrize("fmt", ["ome-zarr", "ome-tiff"])
def test_event_driven(tmp_path: Path, fmt: str) -> None:
    out = run("event_driven", tmp_path, fmt)
    if fmt == "ome-zarr":
        np.testing.assert_array_equal(frame_numbers(zarr_array(f"{out}/0")), np.arange(5))
        records = zarr.open_group(out, mode="r").attrs["ome_writers"]["frame_metadata"]
        assert [r["position"] for r in records] == [
            "cell-1",
            "cell-1",
            "cell-7",
            "cell-1",
            "cell-3",
        ]
    else:
        data, ome = tiff_array(out)
        np.testing.assert_array_equal(frame_numbers(data), np.arange(5))
        planes = ome.images[0].pixels.planes
        assert [p.delta_t for p in planes] == [0.0, 0.4, 1.1, 2.0, 2.6]
        notes = {
            a.id: {m.k: m.value for m in a.value.ms}
            for a in ome.structured_annotations.map_annotations
        }
        assert notes[planes[2].annotation_refs[0].id]["position"] == "cell-7"


def test_an_example_runs_as_a_program(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "single_5d_image.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip().endswith("single_5d.ome.zarr")
