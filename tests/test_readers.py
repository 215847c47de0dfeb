"""The Python readers of the field over every scenario of the usage guide, each format and
backend: ome-zarr-py, bioio (bioio-ome-zarr, bioio-ome-tiff), ngff-zarr and napari-ome-zarr.
Each reader's pixels and key metadata are compared with what was acquired; what a reader
cannot do is asserted here too (so a fixed reader shows up) and written in docs/readers.md
with the call that works.

Every frame i of the examples holds the value i, so a plane's value says which frame it is.
napari-ome-zarr runs in its own venv, tests/.napari-venv (see .ci/run: napari's npe2 pytest
plugin does not load under this suite's filterwarnings=error), under Xvfb for the canvas.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

EXAMPLES = Path(__file__).parent.parent / "examples"
NAPARI_PYTHON = Path(__file__).parent / ".napari-venv" / "bin" / "python"
NAPARI_PROBE = Path(__file__).parent / "_napari_probe.py"
INSTALL_NAPARI = (
    "napari-ome-zarr tests need tests/.napari-venv (made by .ci/run): python3 -m venv "
    "tests/.napari-venv && tests/.napari-venv/bin/pip install napari napari-ome-zarr PyQt5"
)

BACKENDS = [
    ("ome-zarr", "tensorstore"),
    ("ome-zarr", "zarr-python"),
    ("ome-zarr", "acquire-zarr"),
    ("ome-tiff", "tifffile"),
]


@dataclass
class Image:
    """One image of a dataset (in position order): what it must hold."""

    axes: str  # the index axes of the stored image, e.g. "tcz"
    frames: np.ndarray  # frame number of each plane, shaped by ``axes``
    name: str | None = None


@dataclass
class Scenario:
    images: list[Image]
    scale: dict[str, float] = field(default_factory=dict)  # physical pixel sizes set


def scenario(name: str, fmt: str) -> Scenario:
    if name == "single_5d_image":
        return Scenario(
            [Image("tcz", np.arange(30).reshape(3, 2, 5))], {"z": 0.4, "y": 0.13, "x": 0.13}
        )
    if name == "transposed_order":
        acquired = np.arange(36).reshape(3, 6, 2)  # t, z, c
        zarr = fmt == "ome-zarr"  # OME-Zarr stores t, c, z; OME-TIFF as acquired
        image = Image("tcz", acquired.transpose(0, 2, 1)) if zarr else Image("tzc", acquired)
        return Scenario([image], {"z": 0.3, "y": 0.13, "x": 0.13})
    if name == "multiposition":
        acquired = np.arange(36).reshape(2, 3, 2, 3)  # t, p, c, z
        images = [Image("tcz", acquired[:, p], f"embryo-{p + 1}") for p in range(3)]
        return Scenario(images, {"z": 2.0, "y": 0.65, "x": 0.65})
    if name == "plate":  # B/3 site1, B/3 site2, B/4 site1, E/7 site1
        acquired = np.arange(48).reshape(3, 4, 2, 2)  # t, p, c, z
        return Scenario([Image("tcz", acquired[:, p]) for p in range(4)])
    if name == "unbounded":
        acquired = np.arange(9).reshape(3, 3)  # t, p
        return Scenario([Image("t", acquired[:, p], f"dish-{p + 1}") for p in range(3)])
    assert name == "event_driven"
    return Scenario([Image("t", np.arange(5))])


def image_paths(root: Path) -> list[Path]:
    """Every image of a dataset in position order, found as a reader's user would: the
    OME-TIFF files, or the OME-Zarr metadata (bioformats2raw series, plate wells)."""
    if root.is_file():
        return [root]
    if not (root / "zarr.json").is_file():
        return sorted(root.glob("*.ome.tif*"))
    import zarr

    ome = zarr.open_group(str(root), mode="r").attrs["ome"]
    if "multiscales" in ome:
        return [root]
    if "plate" in ome:
        paths = []
        for well in ome["plate"]["wells"]:
            images = zarr.open_group(str(root / well["path"]), mode="r").attrs["ome"]["well"]
            paths += [root / well["path"] / i["path"] for i in images["images"]]
        return paths
    series = zarr.open_group(str(root / "OME"), mode="r").attrs["ome"]["series"]
    return [root / s for s in series]


SCENARIOS = [
    "single_5d_image",
    "transposed_order",
    "multiposition",
    "plate",
    "unbounded",
    "event_driven",
]


def write(name: str, out: Path, fmt: str, backend: str) -> Path:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = ("3",) if name == "unbounded" else ()
    return Path(module.main(out, {"name": fmt, "backend": backend}, *args))


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """Every guide scenario written once with every backend."""
    written = {}
    for fmt, backend in BACKENDS:
        for name in SCENARIOS:
            out = tmp_path_factory.mktemp(f"{name}-{backend}")
            written[name, backend] = write(name, out, fmt, backend)
    return written


# --- one adapter per reader: (axes, level-0 pixels, {axis: scale}, channel names) -----------


@dataclass
class Read:
    axes: str
    data: np.ndarray
    scale: dict[str, float]
    channel_names: list[str] | None = None
    name: str | None = None


def read_ome_zarr_py(path: Path) -> Read:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    location = parse_url(str(path))
    assert location is not None
    nodes = [n for n in Reader(location)() if any(isinstance(s, Multiscales) for s in n.specs)]
    node = nodes[0]
    axes = "".join(a["name"] for a in node.metadata["axes"])
    scale = node.metadata["coordinateTransformations"][0][0]["scale"]
    return Read(
        axes,
        np.asarray(node.data[0]),
        dict(zip(axes, scale, strict=True)),
        node.metadata.get("channel_names"),
        node.metadata.get("name"),
    )


def read_bioio(path: Path, scene: int = 0) -> Read:
    """``scene``: the position, for an OME-TIFF file that lists every position's image."""
    import bioio_ome_tiff
    import bioio_ome_zarr
    from bioio import BioImage

    # an image inside a bioformats2raw or plate root does not end in .zarr: name the reader
    reader = bioio_ome_tiff.Reader if path.is_file() else bioio_ome_zarr.Reader
    with warnings.catch_warnings():
        # bioio-ome-tiff 1.4 passes ome-types 0.7 a deprecated argument (not our problem)
        warnings.filterwarnings("ignore", "As of version 0.4.0, the parser argument is ignored")
        image = BioImage(path, reader=reader)
        if len(image.scenes) > 1:
            image.set_scene(scene)
        sizes = image.physical_pixel_sizes
        scale = {a: v for a, v in zip("zyx", (sizes.Z, sizes.Y, sizes.X), strict=True) if v}
        return Read(
            image.dims.order.lower(),
            np.asarray(image.data),
            scale,
            [str(c) for c in image.channel_names],
            image.current_scene,
        )


def read_ngff_zarr(path: Path) -> Read:
    import ngff_zarr

    multiscales = ngff_zarr.from_ngff_zarr(str(path))
    level0 = multiscales.images[0]
    omero = multiscales.metadata.omero
    return Read(
        "".join(level0.dims),
        np.asarray(level0.data),
        dict(level0.scale),
        [c.label for c in omero.channels] if omero else None,
        multiscales.metadata.name,
    )


READERS = {"ome-zarr-py": read_ome_zarr_py, "bioio": read_bioio, "ngff-zarr": read_ngff_zarr}
ZARR_ONLY = {"ome-zarr-py", "ngff-zarr"}


def frame_numbers(read: Read, want: str) -> np.ndarray:
    """The frame number of each plane, with the index axes in ``want`` order."""
    data, axes = read.data, read.axes[:-2]
    assert read.axes[-2:] == "yx"
    for axis in [a for a in axes if a not in want]:
        assert data.shape[axes.index(axis)] == 1, f"{axis} is not a singleton axis"
        data, axes = data.squeeze(axes.index(axis)), axes.replace(axis, "")
    for axis in want:
        if axis not in axes:
            data, axes = data[np.newaxis], axis + axes
    data = data.transpose(*(axes.index(a) for a in want), -2, -1)
    planes = data.reshape(-1, *data.shape[-2:])
    assert (planes == planes[:, :1, :1]).all(), "a plane mixes frames"
    return planes[:, 0, 0].reshape(data.shape[:-2])


#: Every (reader, format, backend) cell that exists: ome-zarr-py and ngff-zarr read OME-Zarr only.
CELLS = [
    pytest.param(reader, fmt, backend, id=f"{reader}-{backend}")
    for reader in READERS
    for fmt, backend in BACKENDS
    if not (reader in ZARR_ONLY and fmt == "ome-tiff")
]


@pytest.mark.parametrize("name", SCENARIOS)
@pytest.mark.parametrize(("reader", "fmt", "backend"), CELLS)
def test_reader_matrix(datasets, reader: str, fmt: str, backend: str, name: str) -> None:
    root = datasets[name, backend]
    expected = scenario(name, fmt)
    for p, (image, path) in enumerate(zip(expected.images, image_paths(root), strict=True)):
        read = read_bioio(path, scene=p) if reader == "bioio" else READERS[reader](path)
        np.testing.assert_array_equal(frame_numbers(read, image.axes), image.frames)
        for axis, value in expected.scale.items():
            assert read.scale[axis] == pytest.approx(value), axis
        if "c" in image.axes:
            assert len(read.channel_names or []) == image.frames.shape[image.axes.index("c")]
        if image.name and fmt == "ome-zarr":
            assert read.name == image.name


# --- what the readers cannot open, and the call that works (docs/readers.md) -----------------


def test_bioformats2raw_root_opens_in_no_python_reader(datasets) -> None:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    root = datasets["multiposition", "tensorstore"]
    location = parse_url(str(root))
    assert location is not None
    assert list(Reader(location)()) == []  # ome-zarr-py: no node at all
    with pytest.raises(ValueError, match="bioformats2raw"):
        read_ngff_zarr(root)
    from bioio import BioImage
    from bioio_base.exceptions import UnsupportedFileFormatError

    with pytest.raises(UnsupportedFileFormatError):
        BioImage(root)
    # what works in each: the position's own group, root/<index>
    for read in READERS.values():
        assert read(image_paths(root)[1]).data.shape[-2:] == (80, 80)


def test_bioio_needs_the_reader_for_an_image_inside_a_root(datasets) -> None:
    from bioio import BioImage
    from bioio_base.exceptions import UnsupportedFileFormatError

    with pytest.raises(UnsupportedFileFormatError):
        BioImage(image_paths(datasets["multiposition", "tensorstore"])[0])  # no .zarr suffix


def test_plate_root(datasets) -> None:
    """ome-zarr-py reads a plate root as one stitched grid; ngff-zarr asks for a field."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Plate, Reader

    root = datasets["plate", "tensorstore"]
    location = parse_url(str(root))
    assert location is not None
    (node,) = [n for n in Reader(location)() if any(isinstance(s, Plate) for s in n.specs)]
    assert node.data[0].shape == (3, 2, 2, 8 * 48, 12 * 48)  # every row and column of the plate
    with pytest.raises(ValueError, match="HCS"):
        read_ngff_zarr(root)
    import bioio_ome_zarr
    from bioio import BioImage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns "Could not parse" first
        image = BioImage(root, reader=bioio_ome_zarr.Reader)
    assert image.scenes == ()  # bioio-ome-zarr 3.8 finds no image in a plate root


# --- napari-ome-zarr, in its own venv -------------------------------------------------------


def napari_python() -> str:
    if not NAPARI_PYTHON.is_file():
        pytest.skip(INSTALL_NAPARI)
    return str(NAPARI_PYTHON)


def napari_run(*args: str, display: bool = False) -> Any:
    command = [napari_python(), str(NAPARI_PROBE), *args]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen" if not display else "xcb"}
    if display:
        if shutil.which("xvfb-run") is None:
            pytest.skip("the napari canvas test needs Xvfb: apt-get install xvfb")
        command = ["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24", *command]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_napari_ome_zarr_matrix(datasets) -> None:
    """Every OME-Zarr image of every scenario and backend, in one napari process."""
    cells = [
        (name, backend, image, path)
        for (name, backend), root in datasets.items()
        if backend != "tifffile"
        for image, path in zip(scenario(name, "ome-zarr").images, image_paths(root), strict=True)
    ]
    results = napari_run("read", *(str(path) for *_, path in cells))
    for (name, backend, image, path), result in zip(cells, results, strict=True):
        where = f"{name}/{backend}/{path.name}"
        assert "error" not in result, where
        (layer,) = result["layers"]
        assert layer["kind"] == "image", where
        shape = layer["shape"]
        assert shape[:-2] == list(image.frames.shape), where  # t, c, z as stored
        assert layer["plane_min"] == layer["plane_max"] == image.frames.ravel().tolist(), where
        if "c" in image.axes:  # one napari layer per channel
            assert layer["channel_axis"] == image.axes.index("c"), where
            assert len(layer["name"]) == shape[layer["channel_axis"]], where


def test_napari_cannot_open_a_bioformats2raw_root(datasets) -> None:
    root = datasets["multiposition", "tensorstore"]
    (result,) = napari_run("read", str(root))
    assert "error" in result  # open root/<index> instead (docs/readers.md)


@pytest.fixture(scope="module")
def napari_canvas(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """napari's canvas showing a camera-like uint16 image (values ~100-2000) of ours."""
    from ome_stream import AcquisitionSettings, create_stream, dims_from_standard_axes

    tmp_path = tmp_path_factory.mktemp("napari")
    settings = AcquisitionSettings(
        root_path=tmp_path / "cells.ome.zarr",
        dimensions=dims_from_standard_axes({"c": 1, "y": 256, "x": 256}),
        dtype="uint16",
    )
    yy, xx = np.mgrid[:256, :256]
    frame = (100 + 1900 * np.exp(-((yy - 128) ** 2 + (xx - 128) ** 2) / 4000)).astype("uint16")
    with create_stream(settings) as stream:
        stream.append(frame)
    png = tmp_path / "canvas.png"
    shown = napari_run("screenshot", settings.output_path, str(png), display=True)
    assert png.is_file() and shown["shape"][0] > 100
    return shown


def test_napari_renders_our_image_under_xvfb(napari_canvas: dict[str, Any]) -> None:
    """With napari's own auto-contrast the image shows: the canvas test can pass."""
    assert napari_canvas["autocontrast"]["bright_fraction"] > 0.05, napari_canvas


def test_napari_default_view_shows_the_image(napari_canvas: dict[str, Any]) -> None:
    """napari's first view uses the omero window: it must show the image, not black."""
    assert napari_canvas["default"]["bright_fraction"] > 0.05, napari_canvas
