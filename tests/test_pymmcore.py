"""pymmcore-plus as a real client: its built-in writer on ``ome_stream``, and our handler.

Part 1 runs pymmcore-plus' own writer (``core.mda.run(seq, output="x.ome.zarr")``, and
``.ome.tiff`` and ``"memory"``) in a subprocess where ``sys.modules["ome_writers"]`` is
``ome_stream``, and checks every frame at its event's index with zarr-python / tifffile.
``OME_STREAM_MMCORE_TARGET=ome_writers`` runs the same checks against the real
ome-writers instead (the reference the checks were validated on).

Part 2 tests :mod:`ome_stream.mmcore`, our first-class handler, in process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pymmcore_plus")
useq = pytest.importorskip("useq")
tifffile = pytest.importorskip("tifffile")
zarr = pytest.importorskip("zarr")

sys.path.insert(0, str(Path(__file__).parent))
import _mmcore  # noqa: E402

TARGET = os.environ.get("OME_STREAM_MMCORE_TARGET", "ome_stream")
SRC = Path(__file__).parents[1] / "src"

# pymmcore-plus 0.18.1 needs ome-writers' settings API (AcquisitionSettings without
# dimensions/dtype, format="scratch", useq_to_acquisition_settings returning a dict,
# view(dynamic_shape=..., strict=...), get_metadata keyed by position name), which
# ome_stream is gaining on other branches (issue 14). Strict: an XPASS says "remove me".
PENDING_COMPAT = pytest.mark.xfail(
    TARGET == "ome_stream",
    reason="ome_stream lacks parts of the ome-writers API pymmcore-plus uses (issue 14)",
    strict=True,
)


def mda_positions() -> useq.MDASequence:
    """Time, channels, z and two named stage positions, positions outside channels."""
    return useq.MDASequence(
        time_plan={"interval": 0, "loops": 2},
        channels=["DAPI", "FITC"],
        z_plan={"range": 2, "step": 1},
        stage_positions=[
            useq.Position(x=0, y=0, z=0, name="left"),
            useq.Position(x=100, y=200, z=5, name="right"),
        ],
        axis_order="tpcz",
    )


def mda_plate() -> useq.MDASequence:
    """Two wells (A1, B3) of a 96-well plate, two fields each, time and channels."""
    plan = useq.WellPlatePlan(
        plate="96-well",
        a1_center_xy=(0, 0),
        selected_wells=([0, 1], [0, 2]),
        well_points_plan=useq.RandomPoints(
            num_points=2, fov_width=10, fov_height=10, random_seed=1
        ),
    )
    return useq.MDASequence(
        time_plan={"interval": 0, "loops": 2},
        channels=["DAPI", "Cy5"],
        stage_positions=plan,
    )


SEQUENCES = {"positions": mda_positions, "plate": mda_plate}


def position_number(event: useq.MDAEvent, sequence: useq.MDASequence) -> int:
    """The event's position in visiting order (stage position x grid point)."""
    index = {str(getattr(k, "value", k)): v for k, v in event.index.items()}
    p, g = index.get("p", 0), index.get("g", 0)
    grid = sequence.grid_plan
    n_grid = grid.num_positions() if grid is not None else 1
    return p * n_grid + g


def frame_index(event: useq.MDAEvent, axes: list[str]) -> tuple[int, ...]:
    """Where the event's frame sits in an array with ``axes`` (y, x excluded)."""
    index = {str(getattr(k, "value", k)): v for k, v in event.index.items()}
    return tuple(index.get(axis, 0) for axis in axes)


def check_frames(
    sequence: useq.MDASequence,
    images: list[tuple[list[str], np.ndarray]],
) -> None:
    """Snap ``n`` (the ``n``-th image event) is at that event's index of its position."""
    events = _mmcore.image_events(sequence)
    seen = set()
    for n, event in enumerate(events):
        axes, data = images[position_number(event, sequence)]
        where = frame_index(event, axes[:-2])
        np.testing.assert_array_equal(
            data[where], _mmcore.expected_frame(n), err_msg=f"snap {n} at {dict(event.index)}"
        )
        seen.add((position_number(event, sequence), where))
    # every stored frame is one of the acquired ones: no extra planes were left empty
    assert sum(int(np.prod(d.shape[:-2])) for _, d in images) == len(seen)


# --------------------------------------------------------------------- independent readers
def read_zarr(root: Path) -> tuple[list[str], list[tuple[list[str], np.ndarray]]]:
    """Every image of an OME-Zarr v0.5 root, in position order (plate, series or single)."""
    group = zarr.open_group(root, mode="r")
    ome = group.attrs["ome"]
    if "plate" in ome:
        paths = []
        for well in ome["plate"]["wells"]:
            images = group[well["path"]].attrs["ome"]["well"]["images"]
            paths += [f"{well['path']}/{image['path']}" for image in images]
    elif "bioformats2raw.layout" in ome:
        paths = list(group["OME"].attrs["ome"]["series"])
    else:
        paths = [""]
    images = []
    for path in paths:
        image = group[path] if path else group
        multiscale = image.attrs["ome"]["multiscales"][0]
        axes = [axis["name"] for axis in multiscale["axes"]]
        images.append((axes, image[multiscale["datasets"][0]["path"]][...]))
    return paths, images


def read_tiff(path: Path) -> tuple[list[str], list[tuple[list[str], np.ndarray]], Any]:
    """Every image of an OME-TIFF set, as its OME-XML places the planes (TiffData blocks).

    Each plane is read from the file its TiffData UUID names, at its IFD, so a file that
    lists every position finds the other positions' planes in their own files.
    """
    import ome_types

    with tifffile.TiffFile(path) as tif:
        ome = ome_types.from_xml(tif.ome_metadata)
    images = []
    for image in ome.images:
        pixels = image.pixels
        order = str(getattr(pixels.dimension_order, "value", pixels.dimension_order))[2:]
        sizes = {"C": pixels.size_c, "Z": pixels.size_z, "T": pixels.size_t}
        counts = [sizes[axis] for axis in order]  # fastest-varying first
        data = np.zeros((pixels.size_t, pixels.size_c, pixels.size_z, pixels.size_y, pixels.size_x))
        filled = 0
        for block in pixels.tiff_data_blocks:
            name = block.uuid.file_name if block.uuid is not None else path.name
            firsts = {"C": block.first_c, "Z": block.first_z, "T": block.first_t}
            start = int(np.ravel_multi_index([firsts[a] for a in order][::-1], counts[::-1]))
            with tifffile.TiffFile(path.parent / name) as tif:
                for k in range(block.plane_count or 1):
                    where = dict(
                        zip(order[::-1], np.unravel_index(start + k, counts[::-1]), strict=True)
                    )
                    data[where["T"], where["C"], where["Z"]] = tif.pages[block.ifd + k].asarray()
                    filled += 1
        assert filled == pixels.size_t * pixels.size_c * pixels.size_z, image.id
        images.append((["t", "c", "z", "y", "x"], data.astype(str(pixels.type.value))))
    return [image.name for image in ome.images], images, ome


def tiff_files(output: Path) -> list[Path]:
    """The files of an OME-TIFF output: the file itself, or one per position."""
    if output.exists():
        return [output]
    stem = output.name.removesuffix(".ome.tiff")
    return sorted((output.parent / stem).glob("*.ome.tif*"))


# --------------------------------------------------------------------- built-in writer
def run_builtin(tmp_path: Path, sequence: useq.MDASequence, output: str) -> dict[str, Any]:
    """Run pymmcore-plus' built-in writer in a subprocess on the chosen ``ome_writers``."""
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "target": TARGET,
                "sequence": sequence.model_dump(mode="json"),
                "output": output,
            }
        )
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, str(Path(_mmcore.__file__)), str(spec)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    # pymmcore-plus logs (not raises) failures to write its summary metadata
    logged = [line for line in proc.stderr.splitlines() if "Failed to add summary" in line]
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(spec.with_suffix(".log.json").read_text())
    assert result["ome_writers"] == TARGET
    result["logged_errors"] = logged
    result["stderr"] = proc.stderr
    _mmcore.check_log(sequence, result["log"])
    return result


@PENDING_COMPAT
@pytest.mark.parametrize("name", list(SEQUENCES))
def test_builtin_zarr(tmp_path: Path, name: str) -> None:
    """``output="x.ome.zarr"``: every frame at its index; named series; summary metadata."""
    sequence = SEQUENCES[name]()
    output = tmp_path / "x.ome.zarr"
    result = run_builtin(tmp_path, sequence, str(output))
    paths, images = read_zarr(output)
    if name == "plate":
        assert paths == ["A/1/fov0", "A/1/fov1", "B/3/fov0", "B/3/fov1"]
    else:
        assert paths == ["left", "right"]
    for axes, data in images:
        assert axes[-2:] == ["y", "x"]
        assert data.dtype == np.uint16
    check_frames(sequence, images)
    # pymmcore-plus writes its summary metadata through get_metadata/update_metadata
    assert not result["logged_errors"], result["logged_errors"]
    group = zarr.open_group(output, mode="r")
    for path in paths:
        summary = group[path].attrs["pymmcore_plus"]["summary_metadata"]
        assert summary["image_infos"][0]["width"] == _mmcore.WIDTH


@PENDING_COMPAT
@pytest.mark.parametrize("name", list(SEQUENCES))
def test_builtin_tiff(tmp_path: Path, name: str) -> None:
    """``output="x.ome.tiff"``: one file per position, each frame at its index."""
    sequence = SEQUENCES[name]()
    output = tmp_path / "x.ome.tiff"
    result = run_builtin(tmp_path, sequence, str(output))
    files = tiff_files(output)
    assert len(files) == 4 if name == "plate" else 2
    names, images, ome = read_tiff(files[0])
    if name == "plate":
        assert names == ["fov0", "fov1", "fov0", "fov1"]
        wells = [(w.row, w.column, len(w.well_samples)) for w in ome.plates[0].wells]
        assert wells == [(0, 0, 2), (1, 2, 2)]
    else:
        assert names == ["left", "right"]
    check_frames(sequence, images)
    assert not result["logged_errors"], result["logged_errors"]
    for file in files:
        with tifffile.TiffFile(file) as tif:
            xml = tif.ome_metadata or ""
        assert "summary_metadata_json" in xml, file.name


@PENDING_COMPAT
def test_builtin_memory(tmp_path: Path) -> None:
    """``output="memory"``: the live view after the run holds every frame."""
    sequence = useq.MDASequence(
        time_plan={"interval": 0, "loops": 3},
        channels=["DAPI", "FITC"],
        z_plan={"range": 1, "step": 1},
        axis_order="tcz",
    )
    result = run_builtin(tmp_path, sequence, "memory")
    assert result["view_shape"] == [3, 2, 2, _mmcore.HEIGHT, _mmcore.WIDTH]
    data = np.load(tmp_path / "spec.view.npy")
    check_frames(sequence, [(["t", "c", "z", "y", "x"], data)])
