"""The ``ome-stream`` command: the demo (the README's main job) and ``info``."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

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
    assert "OME-Zarr 0.5 image: valid" in capsys.readouterr().out


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
