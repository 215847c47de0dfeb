"""Multiscale pyramids written during acquisition: each level equals an independent
downsampling of level 0, and the dataset validates as OME-Zarr 0.5."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorstore as ts
import zarr
from ome_zarr_models.v05.image import Image
from pydantic import ValidationError

from conftest import make_frames
from ome_stream import AcquisitionSettings, Dimension, Pyramid, available_backends, open_stream

ZARR_BACKENDS = [b for b in ("tensorstore", "zarr-python") if b in available_backends()]


def downsample(data: np.ndarray, axes: dict[int, int], method: str) -> np.ndarray:
    """Reference downsampling written independently of the library: bin each axis in
    ``axes`` by its factor; partial edge bins reduce over the elements that exist."""
    if method == "nearest":
        index = tuple(slice(None, None, axes.get(a, 1)) for a in range(data.ndim))
        return data[index]
    pad = [(0, (-n) % axes.get(a, 1)) for a, n in enumerate(data.shape)]
    values = data.astype(np.float64)
    if method == "max":
        values = np.pad(values, pad, constant_values=-np.inf)
    else:
        counts = np.pad(np.ones_like(values), pad)
        values = np.pad(values, pad)
    shape = []
    for a, n in enumerate(values.shape):
        f = axes.get(a, 1)
        shape += [n // f, f]
    reduce_axes = tuple(range(1, 2 * data.ndim, 2))
    if method == "max":
        return values.reshape(shape).max(axis=reduce_axes).astype(data.dtype)
    mean = values.reshape(shape).sum(axis=reduce_axes) / counts.reshape(shape).sum(axis=reduce_axes)
    return np.rint(mean).astype(data.dtype)


def read(path: Path) -> np.ndarray:
    return np.asarray(zarr.open_array(str(path), mode="r")[...])


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ZARR_BACKENDS)
@pytest.mark.parametrize(
    ("method", "downsample_z"), [("mean", True), ("max", True), ("nearest", False)]
)
async def test_5d_acquisition_with_three_levels(
    tmp_path: Path, backend: str, method: str, downsample_z: bool
) -> None:
    # acquired t, z, c; stored t, c, z (storage order "ome"); odd y/x/z sizes
    settings = AcquisitionSettings(
        root_path=tmp_path / "pyr.ome.zarr",
        format=backend,
        dtype="uint16",
        dimensions=[
            Dimension(name="t", count=2, type="time", scale=60, unit="s"),
            Dimension(name="z", count=5, chunk_size=2, type="space", unit="um", scale=0.5),
            Dimension(name="c", type="channel", coords=["DAPI", "FITC"]),
            Dimension(name="y", count=30, chunk_size=16, type="space", unit="um", scale=0.2),
            Dimension(name="x", count=45, chunk_size=16, type="space", unit="um", scale=0.2),
        ],
        pyramid=Pyramid(levels=3, method=method, downsample_z=downsample_z),
    )
    frames = make_frames(20, (30, 45))
    async with open_stream(settings) as stream:
        for frame in frames:
            await stream.append(frame)
    root = tmp_path / "pyr.ome.zarr"
    level0 = read(root / "0")
    np.testing.assert_array_equal(level0, frames.reshape(2, 5, 2, 30, 45).transpose(0, 2, 1, 3, 4))
    for level in (1, 2):
        f = 1 << level
        axes = {3: f, 4: f, **({2: f} if downsample_z else {})}
        expected = downsample(level0, axes, method)
        np.testing.assert_array_equal(read(root / str(level)), expected)
        spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(root / str(level))}}
        np.testing.assert_array_equal(ts.open(spec).result().read().result(), expected)
    image = Image.from_zarr(zarr.open_group(str(root), mode="r"))
    datasets = image.ome_attributes.multiscales[0].datasets
    assert [d.path for d in datasets] == ["0", "1", "2"]
    attrs = json.loads((root / "zarr.json").read_text())["attributes"]["ome"]
    scales = [
        d["coordinateTransformations"][0]["scale"] for d in attrs["multiscales"][0]["datasets"]
    ]
    zf = [1, 2, 4] if downsample_z else [1, 1, 1]
    assert scales == [[60.0, 1.0, 0.5 * zf[i], 0.2 * 2**i, 0.2 * 2**i] for i in range(3)]


@pytest.mark.anyio
@pytest.mark.parametrize("backend", ZARR_BACKENDS)
async def test_unbounded_pyramid_with_skips_stays_consistent(tmp_path: Path, backend: str):
    settings = AcquisitionSettings(
        root_path=tmp_path / "u.ome.zarr",
        format=backend,
        dtype="uint8",
        dimensions=[
            Dimension(name="t", count=None, chunk_size=2, type="time"),
            Dimension(name="z", count=3, chunk_size=3, type="space"),
            Dimension(name="y", count=17, chunk_size=8, type="space"),
            Dimension(name="x", count=12, chunk_size=8, type="space"),
        ],
        pyramid=Pyramid(min_size=5, downsample_z=True),
    )
    frames = make_frames(8, (17, 12), dtype="uint8")  # 2 full t, then 2 of 3 planes
    async with open_stream(settings) as stream:
        for i, frame in enumerate(frames):
            if i == 4:
                await stream.skip()
            else:
                await stream.append(frame)
    root = tmp_path / "u.ome.zarr"
    level0 = read(root / "0")
    assert level0.shape == (3, 3, 17, 12)
    expected0 = np.zeros((9, 17, 12), "uint8")
    expected0[:8] = frames
    expected0[4] = 0
    np.testing.assert_array_equal(level0, expected0.reshape(3, 3, 17, 12))
    levels = len(
        json.loads((root / "zarr.json").read_text())["attributes"]["ome"]["multiscales"][0][
            "datasets"
        ]
    )
    assert levels == 3  # 17 -> 9 -> 5
    for level in range(1, levels):
        f = 1 << level
        np.testing.assert_array_equal(
            read(root / str(level)), downsample(level0, {1: f, 2: f, 3: f}, "mean")
        )


def test_pyramid_settings_are_checked() -> None:
    dims = [
        Dimension(name="t", count=2),
        Dimension(name="y", count=8),
        Dimension(name="x", count=8),
    ]
    with pytest.raises(ValidationError, match="cannot write multiscale levels"):
        AcquisitionSettings(
            root_path="a.ome.tiff", dtype="uint8", dimensions=dims, pyramid=Pyramid(levels=2)
        )
    with pytest.raises(ValidationError, match="downsample_z needs a non-frame dimension"):
        AcquisitionSettings(
            root_path="a.ome.zarr",
            dtype="uint8",
            dimensions=dims,
            pyramid=Pyramid(levels=2, downsample_z=True),
        )
    with pytest.raises(ValidationError, match="method"):
        Pyramid(method="median")  # type: ignore[arg-type]
