"""The benchmark harness runs (tiny sizes), so it cannot rot. No timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).parent.parent


def run_module(
    module: str, *args: object, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m module args`` from the project root, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def test_quick_benchmark_produces_a_table_and_json(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    stale = {"case": "A", "writer": "ome-stream/tensorstore", "gb_per_s": 99.0}
    out.with_suffix(".jsonl").write_text(json.dumps(stale) + "\n")  # an earlier run's
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.run",
            "--quick",
            "--cases",
            "A,F1",
            "--runs",
            "2",
            "--writers",
            "ome-stream/tensorstore,sync/tensorstore,raw/tensorstore,ome-stream/tifffile",
            "--json",
            str(out),
            "--dir",
            str(tmp_path / "scratch"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "| A | ome-stream/tensorstore |" in result.stdout
    assert "| F1 | ome-stream/tifffile |" in result.stdout
    summary = json.loads(out.read_text())["summary"]
    writers = {(row["case"], row["writer"]) for row in summary}
    assert {("A", "disk"), ("A", "raw/tensorstore"), ("A", "sync/tensorstore")} <= writers
    row = next(r for r in summary if r["writer"] == "ome-stream/tensorstore")
    assert row["gb_per_s"]["median"] > 0 and row["loop_lag_ms"] is not None
    assert row["runs"] == 2
    assert 0 < row["cores_busy"] <= (os.cpu_count() or 1) + 0.5
    lines = [json.loads(line) for line in out.with_suffix(".jsonl").read_text().splitlines()]
    assert stale not in lines  # this run's results only
    assert len([r for r in lines if r["writer"] == "ome-stream/tensorstore"]) == 2
    ratios = {e["case"]: e for e in json.loads(out.read_text())["ratios"]}
    median = ratios["A"]["sync_vs_async"]["tensorstore"]
    low, high = ratios["A"]["spread"]["sync/tensorstore"]  # the same ratio, run by run
    assert 0 < low <= median <= high
    by_run = [
        [r["gb_per_s"] for r in lines if r["case"] == "A" and r["writer"] == w]
        for w in ("sync/tensorstore", "ome-stream/tensorstore")
    ]
    assert [low, high] == sorted(s / a for s, a in zip(*by_run, strict=True))
    assert "| A | - | tensorstore" in result.stdout  # the same-run ratio table
    assert not list((tmp_path / "scratch").iterdir())  # outputs are cleaned up


def test_batches_delete_only_after_every_writer(tmp_path: Path) -> None:
    """A batch's outputs stay until its last writer has run, then go all at once."""
    from benchmarks.cases import QUICK
    from benchmarks.run import run_batch

    results = run_batch(
        QUICK["A"], ["raw/tensorstore", "raw/tifffile"], tmp_path, quick=True, peer=None
    )
    assert [r["writer"] for r in results] == ["raw/tensorstore", "raw/tifffile"]
    assert all("error" not in r for r in results), results
    assert not list(tmp_path.iterdir())


def test_soak_smoke(tmp_path: Path) -> None:
    result = run_module(
        "benchmarks.soak", "--seconds", 3, "--fps", 100, "--shape", 128, "--dir", tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "flat" in result.stdout.splitlines()[-1]


def test_startup_measures_both_writers_on_both_formats(tmp_path: Path) -> None:
    out = tmp_path / "startup.json"
    result = run_module(
        "benchmarks.startup", "--rounds", 1, "--frames", 2, "--dir", tmp_path, "--json", out,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads(out.read_text())
    assert sorted((r["format"], r["writer"]) for r in rows) == [
        ("ome-tiff", "ome-stream"),
        ("ome-tiff", "ome-writers"),
        ("ome-zarr", "ome-stream"),
        ("ome-zarr", "ome-writers"),
    ]
    for row in rows:  # the phases add up to the whole
        parts = row["import"] + row["open"] + row["first_append"]
        assert abs(parts - row["to_first_frame"]) < 1e-6
        assert row["close"] > 0
    assert result.stdout.count("time to first frame, ome-writers / ome-stream") == 2
    assert list(tmp_path.iterdir()) == [out]  # every output deleted


def test_evict_drops_only_the_page_cache_of_a_writers_output(tmp_path: Path) -> None:
    """Between writers the harness drops the last output's cached pages, nothing else."""
    from benchmarks.run import evict

    def resident(path: Path) -> int:  # pages of ``path`` in the page cache (util-linux)
        out = subprocess.run(
            ["fincore", "--raw", "--noheadings", "--output", "PAGES", str(path)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return int(out.stdout.split()[0])

    data = np.random.default_rng(3).integers(0, 255, 4 << 20, dtype=np.uint8).tobytes()
    written, kept = tmp_path / "writer" / "c" / "0", tmp_path / "other.bin"
    written.parent.mkdir(parents=True)
    for path in (written, kept):
        path.write_bytes(data)
    os.sync()
    assert resident(written) > 0 and resident(kept) > 0
    assert evict({tmp_path / "writer"}) == 1
    assert resident(written) == 0
    assert resident(kept) > 0  # another writer's file is left alone
    assert written.read_bytes() == data  # the output itself is untouched


def test_no_writer_follows_the_same_writer_in_every_batch() -> None:
    """Over three batches every writer comes at other places, after other writers."""
    from benchmarks.run import batch_order

    for n in (2, 4, 9, 10):
        writers = [f"w{i}" for i in range(n)]
        orders = [batch_order(writers, run) for run in range(3)]
        assert all(sorted(order) == sorted(writers) for order in orders)
        for w in writers:
            places = [order.index(w) for order in orders]
            before = [
                order[place - 1] if place else None
                for order, place in zip(orders, places, strict=True)
            ]
            assert len(set(places)) > 1
            if n >= 9:  # enough strides: a different predecessor in each of the three
                assert len(set(before)) == 3, (w, orders)


def test_one_writer_per_batch_follows_the_acquire_zarr_rows_and_never_the_same() -> None:
    from benchmarks.cases import FULL, writers_for
    from benchmarks.run import batch_order

    writers = list(writers_for(FULL["E64"]))
    heavy = [w for w in writers if w.endswith("/acquire-zarr")]
    assert len(heavy) == 3 and len(writers) == 9
    orders = [batch_order(writers, run) for run in range(3)]
    followers, leaders = [], []
    for order in orders:
        assert sorted(order) == sorted(writers)
        places = [order.index(w) for w in heavy]
        first = min(places)
        assert sorted(places) == list(range(first, first + 3))  # one block
        leaders.append(order[first])
        if first + 3 < len(order):
            followers.append(order[first + 3])
    assert sorted(leaders) == sorted(heavy)  # each leads the block once
    assert len(set(followers)) == len(followers) >= 2  # never the same writer after it
    for w in set(writers) - set(heavy):  # the other writers still change places
        assert len({order.index(w) for order in orders}) > 1, (w, orders)


def test_the_files_row_writes_the_chunk_files_a_zarr_writer_writes(tmp_path: Path) -> None:
    """The floor row ("files") makes the same chunk objects, byte for byte, as our
    tensorstore writer on the same case: bounded (A) and unbounded (D)."""
    from benchmarks.cases import FULL, writers_for

    for case in ("A", "D"):
        for writer in ("ome-stream/tensorstore", "files"):
            done = run_module("benchmarks.worker", case, writer, tmp_path, "--quick")
            assert done.returncode == 0, done.stderr
        ours = tmp_path / f"{case}-ome-stream-tensorstore.ome.zarr"
        floor = tmp_path / f"{case}-files.ome.zarr"
        chunks = {p.relative_to(ours) for p in ours.rglob("*") if p.is_file()}
        chunks = {p for p in chunks if p.name != "zarr.json"}
        assert chunks and chunks == {p.relative_to(floor) for p in floor.rglob("*") if p.is_file()}
        for key in chunks:
            assert (ours / key).read_bytes() == (floor / key).read_bytes(), key
    with_floor = [name for name, case in FULL.items() if "files" in writers_for(case)]
    assert with_floor == ["A", "B", "D", "E"]  # uncompressed, one object per chunk
