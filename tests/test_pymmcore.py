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
        channels=["Cy5", "FITC"],
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


def read_tiff(
    files: list[Path],
) -> tuple[list[str], list[tuple[list[str], np.ndarray]], Any, list[Any]]:
    """Every image of an OME-TIFF set, as the OME-XML places the planes (TiffData blocks).

    Each file's OME-XML is read; an image is taken from the file that holds its planes
    (its TiffData UUID names that file), so a set whose files all list every image and
    a set whose files each list their own read alike. Returns the image names and
    arrays in file order, the OME model of each file, and the OME ``Image`` of each
    array.
    """
    import ome_types

    names, images, models, described = [], [], [], []
    for path in files:
        with tifffile.TiffFile(path) as tif:
            ome = ome_types.from_xml(tif.ome_metadata)
        models.append((path, ome))
        for image in ome.images:
            blocks = image.pixels.tiff_data_blocks
            if {_planes_file(image, path, block) for block in blocks} != {path.name}:
                continue
            names.append(image.name)
            described.append(image)
            images.append((["t", "c", "z", "y", "x"], read_tiff_image(path, image.pixels)))
    return names, images, models, described


def _planes_file(image: Any, path: Path, block: Any = None) -> str:
    """The file holding a TiffData block's planes (the first block's by default)."""
    block = block if block is not None else image.pixels.tiff_data_blocks[0]
    return block.uuid.file_name if block.uuid is not None else path.name


def plate_wells(models: list[tuple[Path, Any]]) -> list[tuple[int, int, int]]:
    """(row, column, fields) of every well any file describes, each field counted once.

    A field is identified by the file holding its image's planes, so files that all
    describe the whole plate and files that each describe their own field agree.
    """
    fields: dict[tuple[int, int], set[str]] = {}
    for path, ome in models:
        files = {image.id: _planes_file(image, path) for image in ome.images}
        for plate in ome.plates:
            for well in plate.wells:
                for sample in well.well_samples:
                    fields.setdefault((well.row, well.column), set()).add(
                        files[sample.image_ref.id]
                    )
    return [(row, column, len(f)) for (row, column), f in sorted(fields.items())]


def read_tiff_image(path: Path, pixels: Any) -> np.ndarray:
    """One image's planes as (t, c, z, y, x), placed by its TiffData blocks."""
    order = str(getattr(pixels.dimension_order, "value", pixels.dimension_order))[2:]
    sizes = {"C": pixels.size_c, "Z": pixels.size_z, "T": pixels.size_t}
    counts = [sizes[axis] for axis in order][::-1]  # slowest-varying first
    shape = (pixels.size_t, pixels.size_c, pixels.size_z, pixels.size_y, pixels.size_x)
    data = np.zeros(shape, dtype=str(pixels.type.value))
    filled = 0
    with tifffile.TiffFile(path) as tif:
        for block in pixels.tiff_data_blocks:
            firsts = {"C": block.first_c, "Z": block.first_z, "T": block.first_t}
            start = int(np.ravel_multi_index([firsts[a] for a in order[::-1]], counts))
            for k in range(block.plane_count or 1):
                at = dict(zip(order[::-1], np.unravel_index(start + k, counts), strict=True))
                data[at["T"], at["C"], at["Z"]] = tif.pages[block.ifd + k].asarray()
                filled += 1
    assert filled == pixels.size_t * pixels.size_c * pixels.size_z, path.name
    return data


def check_planes(sequence: useq.MDASequence, described: list[Any]) -> None:
    """Each event's OME-XML Plane: the stage position and the 10 ms exposure, in seconds."""
    for event in _mmcore.image_events(sequence):
        index = {str(getattr(k, "value", k)): v for k, v in event.index.items()}
        image = described[position_number(event, sequence)]
        where = (index.get("t", 0), index.get("c", 0), index.get("z", 0))
        (plane,) = [p for p in image.pixels.planes if (p.the_t, p.the_c, p.the_z) == where]
        assert plane.position_x == pytest.approx(event.x_pos)
        assert plane.position_y == pytest.approx(event.y_pos)
        unit = str(getattr(plane.exposure_time_unit, "value", plane.exposure_time_unit))
        assert (plane.exposure_time, unit) == (pytest.approx(0.01), "s"), dict(event.index)


def tiff_files(output: Path) -> list[Path]:
    """The files of an OME-TIFF output: the file itself, or one per position."""
    if output.exists():
        return [output]
    stem = output.name.removesuffix(".ome.tiff")
    return sorted((output.parent / stem).glob("*.ome.tif*"))


# --------------------------------------------------------------------- built-in writer
def run_builtin(
    tmp_path: Path, sequence: useq.MDASequence, output: str, *, as_iterator: bool = False
) -> dict[str, Any]:
    """Run pymmcore-plus' built-in writer in a subprocess on the chosen ``ome_writers``.

    ``as_iterator``: pass the sequence's events as a plain iterator (size unknown).
    """
    spec = tmp_path / "spec.json"
    events: dict[str, Any] = {"sequence": sequence.model_dump(mode="json")}
    if as_iterator:
        events["events"] = [e.model_dump(mode="json") for e in _mmcore.image_events(sequence)]
    spec.write_text(json.dumps({"target": TARGET, "output": output, **events}))
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
    # pymmcore-plus' frame metadata, where ome-writers puts it, by storage index
    records = {
        (p, tuple(r["storage_index"])): r
        for p, path in enumerate(paths)
        for r in group[path].attrs["ome_writers"]["frame_metadata"]
    }
    events = _mmcore.image_events(sequence)
    assert len(records) == len(events)
    for event in events:
        axes = images[position_number(event, sequence)][0]
        record = records[(position_number(event, sequence), frame_index(event, axes[:-2]))]
        assert record["exposure_time"] == pytest.approx(0.01)  # 10 ms, in seconds
        assert record["position_x"] == pytest.approx(event.x_pos)
        assert record["position_y"] == pytest.approx(event.y_pos)


@pytest.mark.parametrize("name", list(SEQUENCES))
def test_builtin_tiff(tmp_path: Path, name: str) -> None:
    """``output="x.ome.tiff"``: one file per position, each frame at its index."""
    sequence = SEQUENCES[name]()
    output = tmp_path / "x.ome.tiff"
    result = run_builtin(tmp_path, sequence, str(output))
    files = tiff_files(output)
    assert len(files) == (4 if name == "plate" else 2)
    names, images, models, described = read_tiff(files)
    check_planes(sequence, described)
    if name == "plate":
        assert names == ["fov0", "fov1", "fov0", "fov1"]
        assert plate_wells(models) == [(0, 0, 2), (1, 2, 2)]
    else:
        assert names == ["left", "right"]
    check_frames(sequence, images)
    # as ome-writers writes it: any one file lists every position (what Bio-Formats needs)
    assert all(len(ome.images) == len(files) for _, ome in models)
    assert not result["logged_errors"], result["logged_errors"]
    for file in files:
        with tifffile.TiffFile(file) as tif:
            xml = tif.ome_metadata or ""
        assert "summary_metadata_json" in xml, file.name


def test_builtin_zarr_event_iterator(tmp_path: Path) -> None:
    """A plain iterator of events: pymmcore-plus asks for an unbounded t, y, x image."""
    sequence = useq.MDASequence(
        time_plan={"interval": 0, "loops": 3}, channels=["DAPI", "FITC"], axis_order="tc"
    )
    output = tmp_path / "it.ome.zarr"
    result = run_builtin(tmp_path, sequence, str(output), as_iterator=True)
    assert not result["logged_errors"], result["logged_errors"]
    _, images = read_zarr(output)
    ((axes, data),) = images
    assert axes == ["t", "y", "x"]
    expected = np.stack([_mmcore.expected_frame(n) for n in range(6)])
    np.testing.assert_array_equal(data, expected)  # trimmed to the frames acquired


MEMORY_SEQUENCES = {
    "tcz": lambda: useq.MDASequence(
        time_plan={"interval": 0, "loops": 3},
        channels=["DAPI", "FITC"],
        z_plan={"range": 1, "step": 1},
        axis_order="tcz",
    ),
    "positions": lambda: useq.MDASequence(
        time_plan={"interval": 0, "loops": 2},
        channels=["DAPI", "FITC"],
        stage_positions=[(0, 0, 0), (100, 100, 0)],
        axis_order="tpc",
    ),
}


@pytest.mark.parametrize("name", list(MEMORY_SEQUENCES))
def test_builtin_memory(tmp_path: Path, name: str) -> None:
    """``output="memory"``: the view after the run holds every frame, in acquisition axes.

    As ome-writers' view does, positions are an axis of the view (in ``axis_order``).
    """
    sequence = MEMORY_SEQUENCES[name]()
    result = run_builtin(tmp_path, sequence, "memory")
    axes = [str(a) for a in sequence.axis_order if sequence.sizes.get(a, 0) > 0]
    sizes = [sequence.sizes[a] for a in axes]
    assert result["view_shape"] == [*sizes, _mmcore.HEIGHT, _mmcore.WIDTH]
    data = np.load(tmp_path / "spec.view.npy")
    for n, event in enumerate(_mmcore.image_events(sequence)):
        np.testing.assert_array_equal(
            data[frame_index(event, axes)], _mmcore.expected_frame(n), err_msg=str(n)
        )


# --------------------------------------------------------------------- our handler
def frame_records(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    """The frame metadata entries of one image group (ome-writers' or our namespace)."""
    for namespace in ("ome_writers", "ome_stream"):
        if "frame_metadata" in attrs.get(namespace, {}):
            return list(attrs[namespace]["frame_metadata"])
    raise AssertionError(f"no frame metadata in {sorted(attrs)}")


def run_handler(tmp_path: Path, sequence: Any, suffix: str, **options: Any) -> tuple[Any, Path]:
    from ome_stream.mmcore import OMEStreamHandler

    core = _mmcore.make_core()
    output = tmp_path / f"run{suffix}"
    handler = OMEStreamHandler(output, **options)
    with handler.connected(core):
        core.mda.run(sequence)
    assert handler.error is None
    assert handler.frames_dropped == 0
    assert handler.stream is None  # closed at the end of the sequence
    _mmcore.check_log(sequence, core.camera.log)
    return core, output


@pytest.mark.parametrize("name", list(SEQUENCES))
def test_handler_zarr(tmp_path: Path, name: str) -> None:
    """Connected handler, OME-Zarr: frames at their indices, per-frame and summary metadata."""
    sequence = SEQUENCES[name]()
    _, output = run_handler(tmp_path, sequence, ".ome.zarr")
    paths, images = read_zarr(output)
    assert len(paths) == (4 if name == "plate" else 2)
    check_frames(sequence, images)
    group = zarr.open_group(output, mode="r")
    if name == "plate":
        wells = [w["path"] for w in group.attrs["ome"]["plate"]["wells"]]
        assert wells == ["A/1", "B/3"]
    events = _mmcore.image_events(sequence)
    records = {
        (p, tuple(sorted(r["event_index"].items()))): r
        for p, path in enumerate(paths)
        for r in frame_records(group[path].attrs.asdict())
    }
    assert len(records) == len(events)
    for event in events:
        key = tuple(sorted((str(getattr(k, "value", k)), v) for k, v in event.index.items()))
        record = records[(position_number(event, sequence), key)]
        assert record["channel"] == event.channel.config
        assert record["position_x"] == pytest.approx(event.x_pos)
        assert record["position_y"] == pytest.approx(event.y_pos)
        assert record["exposure_time"] == pytest.approx(0.01)  # 10 ms, in seconds
        assert record["delta_t"] >= 0
    summary = group.attrs["pymmcore_plus"]["summary_metadata"]
    assert summary["image_infos"][0]["width"] == _mmcore.WIDTH
    assert summary["mda_sequence"]["channels"][0]["config"] == events[0].channel.config


@pytest.mark.parametrize("name", list(SEQUENCES))
def test_handler_tiff(tmp_path: Path, name: str) -> None:
    """Connected handler, OME-TIFF: frames at their indices, plane positions from events."""
    sequence = SEQUENCES[name]()
    _, output = run_handler(tmp_path, sequence, ".ome.tiff")
    files = tiff_files(output)
    assert len(files) == (4 if name == "plate" else 2)
    _, images, models, described = read_tiff(files)
    check_frames(sequence, images)
    if name == "plate":
        assert plate_wells(models) == [(0, 0, 2), (1, 2, 2)]
    for event in _mmcore.image_events(sequence):
        index = {str(getattr(k, "value", k)): v for k, v in event.index.items()}
        image = described[position_number(event, sequence)]
        (plane,) = [
            p
            for p in image.pixels.planes
            if (p.the_t, p.the_c, p.the_z) == (index.get("t", 0), index["c"], index.get("z", 0))
        ]
        assert plane.position_x == pytest.approx(event.x_pos)
        assert plane.position_y == pytest.approx(event.y_pos)


def test_handler_as_mda_output(tmp_path: Path) -> None:
    """``core.mda.run(seq, output=handler)``: pymmcore-plus drives it from its relay thread."""
    from ome_stream.mmcore import OMEStreamHandler

    sequence = mda_positions()
    core = _mmcore.make_core()
    handler = OMEStreamHandler(tmp_path / "out.ome.zarr")
    core.mda.run(sequence, output=handler)
    handler.raise_if_failed()
    assert handler.stream is None
    _mmcore.check_log(sequence, core.camera.log)
    _, images = read_zarr(tmp_path / "out.ome.zarr")
    check_frames(sequence, images)


def test_handler_event_iterator_is_unbounded_time(tmp_path: Path) -> None:
    """A plain iterator of events (no sequence): frames stored in arrival order along t."""
    from ome_stream.mmcore import OMEStreamHandler

    events = [useq.MDAEvent(channel="DAPI" if i % 2 else "Cy5", z_pos=i) for i in range(5)]
    core = _mmcore.make_core()
    handler = OMEStreamHandler(tmp_path / "it.ome.zarr")
    with handler.connected(core):
        core.mda.run(iter(events))
    assert [e["z"] for e in core.camera.log] == [0, 1, 2, 3, 4]
    _, images = read_zarr(tmp_path / "it.ome.zarr")
    ((axes, data),) = images
    assert axes == ["t", "y", "x"]
    np.testing.assert_array_equal(data, np.stack([_mmcore.expected_frame(n) for n in range(5)]))


def test_handler_backpressure_reaches_the_mda_thread(tmp_path: Path, monkeypatch) -> None:
    """Storage slower than the camera: the camera never runs ahead of the buffer."""
    import slow_backend
    from ome_stream.mmcore import OMEStreamHandler

    slow_backend.register(monkeypatch)
    frame_bytes = _mmcore.HEIGHT * _mmcore.WIDTH * 2
    sequence = useq.MDASequence(time_plan={"interval": 0, "loops": 12}, channels=["DAPI"])
    core = _mmcore.make_core()
    # one snap per event: a hardware-sequenced burst fills the camera's own buffer
    core.mda.engine.use_hardware_sequencing = False
    ahead: list[tuple[int, int]] = []  # (snapped - written, capacity) at each frame

    class Observed(OMEStreamHandler):
        def frameReady(self, image, event, meta) -> None:
            assert self.stream is not None
            inner = self.stream._async  # the async core, for its counters
            ahead.append((len(core.camera.log) - inner.stats.frames_written, inner.capacity))
            super().frameReady(image, event, meta)

    handler = Observed(
        tmp_path / "slow.ome.zarr", format="slow-tensorstore", max_buffer_bytes=2 * frame_bytes
    )
    with handler.connected(core):
        core.mda.run(sequence)
    assert len(ahead) == 12
    assert all(capacity == 2 for _, capacity in ahead)
    # the snap being handed over, plus at most a full buffer: the camera waited for storage
    assert max(n for n, _ in ahead) <= 3
    _, images = read_zarr(tmp_path / "slow.ome.zarr")
    check_frames(sequence, images)


def test_handler_existing_target_stops_the_mda_before_any_frame(tmp_path: Path) -> None:
    """Connected: a settings/target error is raised and nothing is acquired or overwritten."""
    from ome_stream.mmcore import OMEStreamHandler

    target = tmp_path / "taken.ome.zarr"
    target.mkdir()
    (target / "keep.txt").write_text("precious")
    core = _mmcore.make_core()
    handler = OMEStreamHandler(target)
    with pytest.raises(FileExistsError), handler.connected(core):
        core.mda.run(mda_positions())
    assert core.camera.log == []
    assert (target / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in target.iterdir()) == ["keep.txt"]


def test_handler_unstorable_sequence_is_a_clear_error(tmp_path: Path) -> None:
    """A sequence that fills no rectangular array is refused, naming the reason."""
    from ome_stream.mmcore import OMEStreamHandler

    sequence = useq.MDASequence(
        time_plan={"interval": 0, "loops": 2},
        channels=[useq.Channel(config="DAPI"), useq.Channel(config="FITC", acquire_every=2)],
    )
    core = _mmcore.make_core()
    handler = OMEStreamHandler(tmp_path / "bad.ome.zarr")
    with pytest.raises(NotImplementedError, match="acquire_every"), handler.connected(core):
        core.mda.run(sequence)
    assert core.camera.log == []
    assert not (tmp_path / "bad.ome.zarr").exists()


def test_handler_as_output_reports_failure_after_the_run(tmp_path: Path) -> None:
    """As ``output=``, a failure cannot stop pymmcore-plus: it is kept, frames dropped."""
    from ome_stream.mmcore import OMEStreamHandler

    target = tmp_path / "taken.ome.zarr"
    target.mkdir()
    core = _mmcore.make_core()
    handler = OMEStreamHandler(target)
    core.mda.run(mda_positions(), output=handler)
    assert isinstance(handler.error, FileExistsError)
    assert handler.frames_dropped == len(_mmcore.image_events(mda_positions()))
    with pytest.raises(FileExistsError):
        handler.raise_if_failed()
    assert list(target.iterdir()) == []


@pytest.mark.parametrize("fmt", ["ome-zarr", "ome-tiff"])
def test_example_program(tmp_path: Path, fmt: str) -> None:
    """examples/pymmcore_plus_mda.py runs; its n-th snap (value n) is at the n-th event."""
    import importlib.util

    path = Path(__file__).parents[1] / "examples" / "pymmcore_plus_mda.py"
    spec = importlib.util.spec_from_file_location("pymmcore_plus_mda", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    output = Path(module.main(tmp_path, fmt))
    sequence = module.SEQUENCE
    assert len(_mmcore.image_events(sequence)) == 3 * 2 * 2 * 3  # t, p, c, z
    if fmt == "ome-zarr":
        _, images = read_zarr(output)
    else:
        files = sorted(output.glob("*.ome.tif*")) if output.is_dir() else [output]
        _, images, _, _ = read_tiff(files)
    assert len(images) == 2
    events = _mmcore.image_events(sequence)
    for n, event in enumerate(events):
        axes, data = images[position_number(event, sequence)]
        assert (data[frame_index(event, axes[:-2])] == n).all(), (n, dict(event.index))
    assert sum(int(np.prod(d.shape[:-2])) for _, d in images) == len(events)


def test_handler_skipped_event_leaves_its_frame_empty(tmp_path: Path) -> None:
    """An engine skipping an event: that frame stays 0, later frames stay at their index."""
    from pymmcore_plus.mda import MDAEngine, SkipEvent

    skipped = {"t": 1, "c": 0}

    class SkippingEngine(MDAEngine):
        def setup_event(self, event: useq.MDAEvent) -> None:
            index = {str(getattr(k, "value", k)): v for k, v in event.index.items()}
            if index == skipped:
                raise SkipEvent
            super().setup_event(event)

    sequence = useq.MDASequence(
        time_plan={"interval": 0, "loops": 3}, channels=["DAPI", "FITC"], axis_order="tc"
    )
    from ome_stream.mmcore import OMEStreamHandler

    core = _mmcore.make_core()
    core.mda.set_engine(SkippingEngine(core, use_hardware_sequencing=False))
    handler = OMEStreamHandler(tmp_path / "skip.ome.zarr")
    with handler.connected(core):
        core.mda.run(sequence)
    ((axes, data),) = read_zarr(tmp_path / "skip.ome.zarr")[1]
    assert axes == ["t", "c", "y", "x"]
    snap = 0
    for event in _mmcore.image_events(sequence):
        where = frame_index(event, ["t", "c"])
        if dict(zip(["t", "c"], where, strict=True)) == skipped:
            assert (data[where] == 0).all()
        else:
            np.testing.assert_array_equal(data[where], _mmcore.expected_frame(snap))
            snap += 1
    assert snap == len(core.camera.log) == 5


def test_handler_storage_failure_cancels_the_mda(tmp_path: Path) -> None:
    """Storage lost mid-run: the MDA is cancelled and the WriterError raised at the end."""
    import shutil

    from ome_stream import WriterError
    from ome_stream.mmcore import OMEStreamHandler

    output = tmp_path / "lost.ome.zarr"

    class LosingStorage(OMEStreamHandler):
        def frameReady(self, image, event, meta) -> None:
            super().frameReady(image, event, meta)
            if len(core.camera.log) == 3:
                assert self.stream is not None
                self.stream.flush()
                shutil.rmtree(output)
                output.write_text("not a dataset")

    sequence = useq.MDASequence(time_plan={"interval": 0, "loops": 200})
    core = _mmcore.make_core()
    core.mda.engine.use_hardware_sequencing = False
    handler = LosingStorage(output, max_buffer_bytes=2 * _mmcore.HEIGHT * _mmcore.WIDTH * 2)
    with pytest.raises(WriterError), handler.connected(core):
        core.mda.run(sequence)
    assert handler.error is not None
    assert len(core.camera.log) < 200  # cancelled, not run to the end into nothing


def test_mda_settings_from_summary_metadata() -> None:
    """The camera's frame size, dtype and pixel size come from pymmcore-plus' summary."""
    from ome_stream.mmcore import mda_settings

    summary = {
        "image_infos": [{"width": 40, "height": 30, "dtype": "uint8", "pixel_size_um": 0.25}]
    }
    settings = mda_settings(
        mda_positions(), summary, "s.ome.zarr", chunk_shapes={"z": 3}, compression="zstd"
    )
    assert settings.dtype == "uint8"
    assert settings.compression == "zstd"
    dims = {d.name: d for d in settings.dimensions if hasattr(d, "count")}
    assert (dims["y"].count, dims["x"].count) == (30, 40)
    assert (dims["y"].scale, dims["x"].scale) == (0.25, 0.25)
    assert dims["z"].chunk_size == 3
    assert settings.num_frames == len(_mmcore.image_events(mda_positions()))


@pytest.mark.parametrize(
    ("summary", "message"),
    [
        ({}, "no 'image_infos'"),
        (
            {
                "image_infos": [
                    {"width": 8, "height": 8, "dtype": "uint16", "num_camera_adapter_channels": 2}
                ]
            },
            "multi-camera",
        ),
    ],
)
def test_mda_settings_refuses_what_it_cannot_store(summary: dict, message: str) -> None:
    from ome_stream.mmcore import mda_settings

    with pytest.raises(ValueError, match=message):
        mda_settings(mda_positions(), summary, "s.ome.zarr")


def test_handler_hardware_sequenced_burst(tmp_path: Path) -> None:
    """A burst the camera acquires as one sequence: every frame still at its index."""
    sequence = useq.MDASequence(
        time_plan={"interval": 0, "loops": 20}, channels=["FITC"], axis_order="tc"
    )
    core, output = run_handler(tmp_path, sequence, ".ome.zarr")
    assert core.mda.engine.use_hardware_sequencing  # pymmcore-plus' default
    _, images = read_zarr(output)
    check_frames(sequence, images)
