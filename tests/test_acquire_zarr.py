"""The acquire-zarr backend: the zarr scenarios it can carry, read back with zarr-python
and tensorstore; the rest rejected up front with a useful message."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorstore as ts
import zarr
from ome_zarr_models.v05.bioformats2raw import BioFormats2Raw
from ome_zarr_models.v05.image import Image
from pydantic import ValidationError

from conftest import make_frames
from ome_stream import (
    AcquisitionSettings,
    Dimension,
    Pyramid,
    available_backends,
    create_stream,
    dims_from_standard_axes,
    open_stream,
)

pytestmark = pytest.mark.skipif(
    "acquire-zarr" not in available_backends(),
    reason="acquire-zarr is not installed: pip install 'ome-stream[acquire-zarr]'",
)


def read_both(path: Path) -> np.ndarray:
    by_zarr = np.asarray(zarr.open_array(str(path), mode="r")[...])
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)}}
    np.testing.assert_array_equal(ts.open(spec).result().read().result(), by_zarr)
    return by_zarr


@pytest.mark.anyio
@pytest.mark.parametrize("compression", [None, "blosc-zstd", "blosc-lz4"])
async def test_single_image(tmp_path: Path, compression: str | None) -> None:
    settings = AcquisitionSettings(
        root_path=tmp_path / "a.ome.zarr",
        format="acquire-zarr",
        dtype="uint16",
        compression=compression,
        dimensions=[
            Dimension(name="t", count=4, chunk_size=2, shard_size_chunks=2),
            Dimension(name="c", count=2, chunk_size=1, type="channel"),
            Dimension(name="y", count=48, chunk_size=16, unit="um", scale=0.2),
            Dimension(name="x", count=32, chunk_size=16, unit="um", scale=0.2),
        ],
    )
    frames = make_frames(8, (48, 32))
    async with open_stream(settings) as stream:
        for frame in frames:
            await stream.append(frame)
    root = tmp_path / "a.ome.zarr"
    np.testing.assert_array_equal(read_both(root / "0"), frames.reshape(4, 2, 48, 32))
    meta = json.loads((root / "0" / "zarr.json").read_text())
    assert meta["dimension_names"] == ["t", "c", "y", "x"]
    if compression:
        codecs = json.dumps(meta["codecs"])
        assert compression.removeprefix("blosc-") in codecs
    image = Image.from_zarr(zarr.open_group(str(root), mode="r"))
    assert [a.name for a in image.ome_attributes.multiscales[0].axes] == ["t", "c", "y", "x"]


def test_multi_position_unbounded_with_skips_sync(tmp_path: Path) -> None:
    settings = AcquisitionSettings(
        root_path=tmp_path / "m.ome.zarr",
        format={"name": "ome-zarr", "backend": "acquire-zarr"},
        dtype="uint8",
        dimensions=[
            Dimension(name="t", count=None, chunk_size=1, type="time"),
            Dimension(name="p", type="position", coords=["Pos0", "Pos1"]),
            *dims_from_standard_axes({"y": 16, "x": 16}),
        ],
    )
    frames = make_frames(7, (16, 16), dtype="uint8")
    with create_stream(settings) as stream:
        for i, frame in enumerate(frames):
            if i == 2:
                stream.skip()
            else:
                stream.append(frame)
    root = tmp_path / "m.ome.zarr"
    expected = frames.copy()
    expected[2] = 0
    expected = np.concatenate([expected, np.zeros((1, 16, 16), "uint8")]).reshape(4, 2, 16, 16)
    for p in range(2):
        np.testing.assert_array_equal(read_both(root / f"Pos{p}" / "0"), expected[:, p])
    BioFormats2Raw.from_zarr(zarr.open_group(str(root), mode="r"))


def test_what_acquire_zarr_cannot_do_is_rejected_up_front() -> None:
    dims = dims_from_standard_axes({"t": 2, "z": 3, "c": 2, "y": 8, "x": 8})
    with pytest.raises(
        ValidationError,
        match="only appends frames in acquisition order.*can reorder: tensorstore, zarr-python",
    ):
        AcquisitionSettings(
            root_path="a.ome.zarr", format="acquire-zarr", dtype="uint8", dimensions=dims
        )  # 'ome' order stores t, c, z
    AcquisitionSettings(
        root_path="a.ome.zarr",
        format="acquire-zarr",
        dtype="uint8",
        dimensions=dims,
        storage_order="acquisition",
    )
    with pytest.raises(
        ValidationError, match="compression 'zstd' is not supported by the 'acquire-zarr' backend"
    ):
        AcquisitionSettings(
            root_path="a.ome.zarr",
            format="acquire-zarr",
            dtype="uint8",
            dimensions=dims,
            storage_order="acquisition",
            compression="zstd",
        )
    with pytest.raises(ValidationError, match="cannot write multiscale levels"):
        AcquisitionSettings(
            root_path="a.ome.zarr",
            format="acquire-zarr",
            dtype="uint8",
            dimensions=dims,
            storage_order="acquisition",
            pyramid=Pyramid(levels=2),
        )
