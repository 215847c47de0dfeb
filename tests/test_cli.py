"""The ``ome-stream`` command: the demo (the README's main job) and ``info``."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from ome_types import from_xml

from _settings import SCREEN, field_positions
from conftest import make_frames
from ome_stream import (
    AcquisitionSettings,
    Channel,
    Dimension,
    Position,
    create_stream,
    dims_from_standard_axes,
)
from ome_stream._camera import camera_frames
from ome_stream.cli import main, parse_dims


def test_console_script_runs_the_default_demo(tmp_path: Path) -> None:
    """Exactly what the README runs: ``ome-stream demo`` with no arguments."""
    script = Path(sys.executable).parent / "ome-stream"
    result = subprocess.run(
        [str(script), "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "frames:            80" in result.stdout
    assert "event-loop lag" in result.stdout and "append wait" in result.stdout
    data = zarr.open_array(str(tmp_path / "ome-stream-demo.ome.zarr" / "0"), mode="r")
    assert data.shape == (40, 2, 512, 512)
    assert data.chunks == (1, 1, 256, 256)
    assert data[...].min() > 0  # camera-like content everywhere: offset, background, noise


def test_demo_json_summary_and_content(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "d.ome.zarr"
    status = main(
        [
            "demo",
            str(out),
            "--dims",
            "t:6,c:2,y:64:32,x:48",
            "--fps",
            "0",
            "--compression",
            "zstd",
            "--json",
            "--no-progress",
        ]
    )
    assert status == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] == 12
    assert report["peak_buffered_bytes"] <= report["buffer_budget_bytes"]
    assert report["append_wait_ms"]["p99"] >= report["append_wait_ms"]["p50"]
    data = zarr.open_array(str(out / "0"), mode="r")
    assert data.shape == (6, 2, 64, 48)
    frames = camera_frames(8, (64, 48))
    expected = np.stack([frames[i % 8] for i in range(12)]).reshape(6, 2, 64, 48)
    np.testing.assert_array_equal(data[...], expected)
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "OME-Zarr 0.5, single image" in text and "metadata: valid" in text


def test_demo_unbounded_positions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "u.ome.zarr"
    assert (
        main(
            [
                "demo",
                str(out),
                "--dims",
                "t:inf,p:2,y:32,x:32",
                "--frames",
                "7",
                "--fps",
                "0",
                "--no-progress",
            ]
        )
        == 0
    )
    assert zarr.open_array(str(out / "0" / "0"), mode="r").shape == (4, 32, 32)
    assert zarr.open_array(str(out / "1" / "0"), mode="r").shape == (4, 32, 32)
    assert main(["demo", str(out), "--dims", "t:inf,y:8,x:8"]) == 2
    assert "needs --frames" in capsys.readouterr().err


def test_demo_reports_bad_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", str(tmp_path / "x.ome.zarr"), "--compression", "lzw"]) == 2
    assert "compression 'lzw' is not supported" in capsys.readouterr().err
    existing = tmp_path / "keep.ome.zarr"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    assert main(["demo", str(existing), "--fps", "0"]) == 1
    assert "refusing to delete" in capsys.readouterr().err
    assert (existing / "notes.txt").read_text() == "mine"


def test_parse_dims() -> None:
    dims = parse_dims("t:inf,p:3,z:5:2:2,y:64:32,x:64")
    assert dims[0].count is None
    assert dims[1].type == "position" and dims[1].count == 3
    assert (dims[2].chunk_size, dims[2].shard_size_chunks) == (2, 2)  # type: ignore[union-attr]
    for bad, message in [
        ("t", "expected name:count"),
        ("t:x", "must be integers"),
        ("a/b:3", "not a safe name"),
    ]:
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            parse_dims(bad)


# --- ome-stream info ---------------------------------------------------------------------------


def acquisition(root: Path, fmt: str, backend: str, **extra) -> AcquisitionSettings:
    """Two positions with stage coordinates, named coloured channels, scales and units."""
    compression = {"tifffile": "zlib", "acquire-zarr": "blosc-lz4"}.get(backend, "blosc-zstd")
    settings = AcquisitionSettings(
        root_path=root,
        format={"name": fmt, "backend": backend},
        dimensions=[
            Dimension(name="t", count=3, chunk_size=1, type="time", scale=2.5, unit="second"),
            Dimension(
                name="p",
                type="position",
                coords=[
                    Position(name="left", x_coord=-120.5, y_coord=40.0, z_coord=3.0),
                    Position(name="right", x_coord=980.0, y_coord=-12.25, z_coord=3.5),
                ],
            ),
            Dimension(
                name="c",
                count=2,
                chunk_size=1,
                type="channel",
                coords=[Channel(name="DAPI", color="0000FF"), Channel(name="GFP", color="00FF00")],
            ),
            Dimension(name="y", count=64, chunk_size=32, type="space", scale=0.65, unit="um"),
            Dimension(name="x", count=48, chunk_size=48, type="space", scale=0.65, unit="um"),
        ],
        dtype="uint16",
        compression=compression,
        **extra,
    )
    with create_stream(settings) as stream:
        for i, frame in enumerate(make_frames(12, (64, 48))):
            stream.append(frame, metadata={"exposure_time": 12.0, "laser": 488} if i < 4 else None)
    return settings


def info_json(path: str | Path, capsys: pytest.CaptureFixture[str]) -> dict:
    status = main(["info", str(path), "--json"])
    captured = capsys.readouterr()
    assert status == 0, captured
    return json.loads(captured.out)


@pytest.mark.parametrize("backend", ["tensorstore", "zarr-python", "acquire-zarr"])
def test_info_zarr_describes_every_image(tmp_path: Path, backend: str, capsys) -> None:
    settings = acquisition(tmp_path / "run.ome.zarr", "ome-zarr", backend)
    info = info_json(settings.output_path, capsys)
    assert info["format"] == "OME-Zarr 0.5"
    assert info["layout"] == "multi-position (bioformats2raw layout)"
    assert info["problems"] == []
    assert [i["name"] for i in info["images"]] == ["left", "right"]
    root = zarr.open_group(settings.output_path, mode="r")
    for image in info["images"]:
        (level,) = image["levels"]
        array = root[f"{image['path']}/{level['path']}"]  # the path info names is real
        assert level["shape"] == list(array.shape) == [3, 2, 64, 48]
        assert level["dtype"] == "uint16" and level["chunks"] == [1, 1, 32, 48]
        assert level["compression"].startswith(settings.compression)
        assert image["axes"] == ["t", "c", "y", "x"]
        assert [(c["name"], c["color"]) for c in image["channels"]] == [
            ("DAPI", "0000FF"),
            ("GFP", "00FF00"),
        ]
        assert image["pixel_size"] == {"y": [0.65, "micrometer"], "x": [0.65, "micrometer"]}
        assert image["time_interval"] == [2.5, "second"]
    # frames 0-3 carried metadata: t0 of both positions and t1 of 'left'... in frame order
    counts = [i["frame_metadata"]["frames"] for i in info["images"]]
    assert counts == [2, 2]
    assert {"exposure_time", "laser"} <= set(info["images"][0]["frame_metadata"]["keys"])
    text = (main(["info", settings.output_path]), capsys.readouterr().out)[1]
    for needed in ["image 'left'", "DAPI #0000FF", "x 0.65 micrometer", "time interval: 2.5"]:
        assert needed in text


def test_info_layout_is_backend_independent(tmp_path: Path, capsys) -> None:
    described = []
    for backend in ["tensorstore", "zarr-python", "acquire-zarr"]:
        settings = acquisition(tmp_path / f"{backend}.ome.zarr", "ome-zarr", backend)
        info = info_json(settings.output_path, capsys)
        for image in info["images"]:
            for level in image["levels"]:
                level.pop("compression")  # the one thing chosen per backend here
                if level["shards"] == level["chunks"]:  # acquire-zarr always shards: a shard
                    level["shards"] = None  # of one chunk holds what the chunk would
        described.append((info["layout"], info["images"]))
    assert described[0] == described[1] == described[2]


def test_info_tiff_directory_lists_files_and_images(tmp_path: Path, capsys) -> None:
    settings = acquisition(tmp_path / "run.ome.tiff", "ome-tiff", "tifffile")
    info = info_json(settings.output_path, capsys)
    files = [Path(f).name for f in settings.tiff_file_paths()]
    assert info["format"] == "OME-TIFF" and info["layout"] == "multi-position"
    assert [f["file"] for f in info["files"]] == files
    assert {f["compression"] for f in info["files"]} == {"adobe_deflate"}
    assert [(i["name"], i["path"]) for i in info["images"]] == list(
        zip(["left", "right"], files, strict=True)
    )
    for image in info["images"]:
        (level,) = image["levels"]
        assert level["shape"] == [3, 2, 64, 48] and image["axes"] == ["t", "c", "y", "x"]
        assert [(c["name"], c["color"]) for c in image["channels"]] == [
            ("DAPI", "0000FF"),
            ("GFP", "00FF00"),
        ]
        assert image["pixel_size"]["x"] == [0.65, "\u00b5m"]
        assert image["time_interval"] == [2.5, "s"]
        assert image["frame_metadata"]["frames"] == 2
        assert {"exposure_time", "laser"} <= set(image["frame_metadata"]["keys"])
    with tifffile.TiffFile(settings.tiff_file_paths()[1]) as tif:  # independent reader
        assert tif.series[0].shape == (3, 2, 64, 48)
        assert "right" in [i.name for i in from_xml(tif.ome_metadata).images]


def test_info_one_tiff_file_lists_the_whole_acquisition(tmp_path: Path, capsys) -> None:
    settings = acquisition(tmp_path / "run.ome.tiff", "ome-tiff", "tifffile")
    info = info_json(settings.tiff_file_paths()[0], capsys)
    assert [f["file"] for f in info["files"]] == [Path(f).name for f in settings.tiff_file_paths()]
    assert [i["name"] for i in info["images"]] == ["left", "right"]


@pytest.mark.parametrize(
    ("fmt", "backend"), [("ome-zarr", "tensorstore"), ("ome-tiff", "tifffile")]
)
def test_info_shows_stage_coordinates(tmp_path: Path, fmt: str, backend: str, capsys) -> None:
    settings = acquisition(tmp_path / f"run.{fmt.replace('-', '.')}", fmt, backend)
    info = info_json(settings.output_path, capsys)
    left, right = (i["position"] for i in info["images"])
    um = "micrometer" if fmt == "ome-zarr" else "\u00b5m"
    for position, name, xyz in [
        (left, "left", (-120.5, 40.0, 3.0)),
        (right, "right", (980.0, -12.25, 3.5)),
    ]:
        assert position["name"] == name
        got = [position[a] if fmt == "ome-zarr" else position[a][0] for a in "xyz"]
        assert got == list(xyz)
        assert (position.get("unit") if fmt == "ome-zarr" else position["x"][1]) == um


@pytest.mark.parametrize(
    ("fmt", "backend"), [("ome-zarr", "tensorstore"), ("ome-tiff", "tifffile")]
)
def test_info_plate_wells_and_fields(tmp_path: Path, fmt: str, backend: str, capsys) -> None:
    settings = AcquisitionSettings(
        root_path=tmp_path / f"plate.{fmt.replace('-', '.')}",
        format={"name": fmt, "backend": backend},
        dimensions=[
            Dimension(name="p", type="position", coords=field_positions(3)),
            *dims_from_standard_axes({"c": 2, "y": 12, "x": 16}),
        ],
        dtype="uint8",
        plate=SCREEN,
    )
    with create_stream(settings) as stream:
        for frame in make_frames(6, (12, 16), dtype="uint8"):
            stream.append(frame)
    info = info_json(settings.output_path, capsys)
    assert info["layout"] == "plate" and len(info["images"]) == 3
    plate = info["plate"]
    assert plate["name"] == SCREEN.name
    assert (plate["rows"], plate["columns"]) == (6, 8)
    fields = {(str(w["row"]), str(w["column"])): len(w["fields"]) for w in plate["wells"]}
    if fmt == "ome-zarr":
        assert plate["row_names"] == list("ABCDEF")
        assert plate["column_names"] == [str(n) for n in range(1, 9)]
        assert fields == {("B", "2"): 2, ("D", "5"): 1}
        assert [(i["well"], i["name"]) for i in info["images"]] == [
            ("B/2", "site1"),
            ("B/2", "site2"),
            ("D/5", "site1"),
        ]
    else:  # well names from the plate's naming convention; without one, 0-based indices
        assert fields in (
            {("B", "2"): 2, ("D", "5"): 1},
            {("#1", "#1"): 2, ("#3", "#4"): 1},  # before the OME-XML carries conventions
        )
    text = (main(["info", settings.output_path]), capsys.readouterr().out)[1]
    assert f"plate '{SCREEN.name}'" in text and "(2 field(s))" in text


def test_info_reports_invalid_metadata_and_non_datasets(tmp_path: Path, capsys) -> None:
    settings = acquisition(tmp_path / "run.ome.zarr", "ome-zarr", "tensorstore")
    first = info_json(settings.output_path, capsys)["images"][0]["path"]
    image = Path(settings.output_path) / first / "zarr.json"
    doc = json.loads(image.read_text())
    del doc["attributes"]["ome"]["multiscales"][0]["axes"]
    image.write_text(json.dumps(doc))
    assert main(["info", str(image.parent)]) == 1
    assert "metadata: OME-Zarr metadata invalid" in capsys.readouterr().out
    (tmp_path / "notes").mkdir()
    assert main(["info", str(tmp_path / "notes")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "neither OME-Zarr" in err
    assert main(["info", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--compression", "lzw"], "--compression lzw: compression 'lzw' is not supported"),
        (["--backend", "nope"], "--backend nope: format 'nope' is neither"),
        (["--format", "ome-tiff", "--backend", "tensorstore"], "--backend tensorstore: backend"),
        (["--dtype", "complex64"], "--dtype complex64: Invalid dtype: 'complex64' is not"),
        (["--dims", "t:3,y:8,y:8"], "--dims: Dimension names must be unique, duplicates: ['y']"),
        (["--dims", "t:x"], "argument --dims: dimension 't:x': count, chunk and shard"),
        (["--fps", "fast"], "argument --fps: invalid float value: 'fast'"),
    ],
)
def test_cli_errors_are_one_readable_line(tmp_path: Path, argv, expected, capsys) -> None:
    with pytest.raises(SystemExit) if argv[0] == "--fps" or argv[1] == "t:x" else _no_exit():
        status = main(["demo", str(tmp_path / "x.ome.zarr"), *argv, "--fps", "0"][:None])
        assert status == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert expected in err
    assert "pydantic" not in err and "http" not in err and "Traceback" not in err


class _no_exit:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False


def test_no_overwrite_names_the_option(tmp_path: Path, capsys) -> None:
    out = tmp_path / "keep.ome.zarr"
    assert main(["demo", str(out), "--dims", "t:2,y:8,x:8", "--fps", "0", "--no-progress"]) == 0
    capsys.readouterr()
    before = zarr.open_array(str(out / "0"), mode="r")[...]
    assert main(["demo", str(out), "--dims", "t:2,y:8,x:8", "--no-overwrite"]) == 1
    err = capsys.readouterr().err
    assert "already exists; pass --overwrite to replace it" in err and "overwrite=True" not in err
    np.testing.assert_array_equal(zarr.open_array(str(out / "0"), mode="r")[...], before)
