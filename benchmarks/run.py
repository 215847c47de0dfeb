"""Side-by-side benchmark: ome-stream, the ome-writers peer, raw engines and the disk.

Usage::

    python -m benchmarks.run                 # all cases, 3 runs each, table + JSON
    python -m benchmarks.run --cases A,C --runs 5 --json results.json
    python -m benchmarks.run --quick         # tiny sizes: checks the harness works

Every (case, writer) measurement runs in its own process (clean memory baseline).

Fairness:

- **Batches, deleted whole.** One run of one case by every writer is a batch; its outputs
  go to a fresh directory tree and are deleted together once the batch is over, never
  between two measured writers. (This disk's ext4 has no journal: after mass deletes its
  inode allocator makes file creation up to 2x slower for whoever writes next, so
  per-measurement deletes bias the ratios.)
- **No writer always comes first after a delete, or after the same writer.** The order
  changes from run to run (:func:`batch_order`). A writer after acquire-zarr (any row on
  that engine) spends up to 1.5 CPU-s more in the kernel copying its data into the page
  cache on E64, on this VM (measured, 2026-12-01); acquire-zarr rows after each other do
  not (2026-12-02). So the acquire-zarr rows run as one block, and the one writer after
  it is another writer in each run: with three runs, no row pays that cost twice (before,
  one row could follow an acquire-zarr row in two of three batches, and its median moved).
- **No writer inherits the page cache of those before it.** After each writer, the cached
  pages of its (synced) output are dropped (``posix_fadvise``, our files only), so the next
  one does not pay the kernel's reclaim of them: before this, a writer's place in the
  batch moved its speed by 2x.
- **The peer in its own environment.** ome-writers 0.3.2 runs with the interpreter of a
  separate virtualenv (``--peer-python``, built on first use as ``/tmp/bench-ow-venv``
  with ``pip install ome-writers[all]==0.3.2``), never installed next to ome-stream.
- The table shows medians with min-max over the runs; the ratios below it are computed
  from the medians of this run only, and in brackets is the range of the same ratio
  taken batch by batch (two writers a few seconds apart): where that range straddles a
  target, this run does not decide it. Writers that are not installed are skipped with
  a note.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.cases import FULL, QUICK, Case, writers_for

ROOT = Path(__file__).parent.parent
PEER_VENV = Path("/tmp/bench-ow-venv")
PEER_REQUIREMENTS = ("ome-writers[all]==0.3.2", "psutil", "anyio")
_MODULES = {
    "tensorstore": "tensorstore",
    "zarr-python": "zarr",
    "zarrs-python": "zarrs",
    "acquire-zarr": "acquire_zarr",
    "tifffile": "tifffile",
}


def peer_python(requested: Path | None) -> Path | None:
    """The interpreter that runs ome-writers: ``requested``, or the harness's own venv.

    The venv is built on first use (a few minutes); None if that fails.
    """
    if requested is not None:
        return requested
    python = PEER_VENV / "bin" / "python"
    if not python.exists():
        print(f"building {PEER_VENV} for the ome-writers peer ...", file=sys.stderr)
        try:
            base = getattr(sys, "_base_executable", sys.executable)
            subprocess.run([base, "-m", "venv", str(PEER_VENV)], check=True)
            subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_REQUIREMENTS],
                           check=True)  # fmt: skip
        except (OSError, subprocess.CalledProcessError) as err:
            print(f"cannot build the peer venv: {err}", file=sys.stderr)
            return None
    return python


def peer_modules(python: Path | None) -> set[str]:
    """Which of ome-writers and its engines import under ``python``."""
    if python is None:
        return set()
    probe = (
        "import importlib.util as u, json; "
        f"print(json.dumps([m for m in {['ome_writers', *_MODULES.values()]!r} "
        "if u.find_spec(m)]))"
    )
    result = subprocess.run(
        [str(python), "-c", probe], capture_output=True, text=True, check=False, timeout=120
    )
    if result.returncode != 0:
        return set()
    return set(json.loads(result.stdout))


def available(writer: str, peer: set[str]) -> bool:
    """Whether ``writer`` can run here (the ome-writers rows: in the peer's venv)."""
    family, _, backend = writer.partition("/")
    if family in ("disk", "files"):
        return True
    module = _MODULES[backend]
    if family == "ome-writers":
        return {"ome_writers", module} <= peer
    if family in ("ome-stream", "sync") and importlib.util.find_spec("ome_stream") is None:
        return False
    return importlib.util.find_spec(module) is not None


def run_one(case: Case, writer: str, out: Path, quick: bool, peer: Path | None) -> dict[str, Any]:
    python = str(peer) if writer.startswith("ome-writers/") and peer else sys.executable
    command = [python, "-m", "benchmarks.worker", case.name, writer, str(out)]
    if quick:
        command.append("--quick")
    env = dict(os.environ)
    if python != sys.executable:
        env.pop("PYTHONPATH", None)  # the peer must not see ome_stream
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=ROOT,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        return {"case": case.name, "writer": writer, "error": result.stderr.strip()[-600:]}
    measured: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return measured


def evict(paths: set[Path]) -> int:
    """Drop the (synced, clean) page-cache pages of every file under ``paths``.

    A writer that starts with gigabytes of earlier writers' output in the page cache pays
    the kernel's reclaim of it: measured on A, 0.47-0.48 GB/s with 2.1-2.3 kernel CPU-s
    after 5 GB of earlier output against 1.04-1.12 GB/s and 0.4 s once those pages were
    dropped. Without this, a writer's place in the batch decided its speed. Only our own
    files' pages are dropped (``posix_fadvise``), never the machine's whole cache.
    """
    count = 0
    for top in paths:
        files = [top] if top.is_file() else (p for p in top.rglob("*") if p.is_file())
        for path in files:
            with contextlib.suppress(OSError):
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                    count += 1
                finally:
                    os.close(fd)
    return count


def _walk(writers: list[str], run: int) -> list[str]:
    """``writers`` walked with another stride (coprime to their count) from another start."""
    n = len(writers)
    strides = [s for s in range(1, n) if math.gcd(s, n) == 1] or [1]
    stride = strides[run % len(strides)]
    return [writers[(run + j * stride) % n] for j in range(n)]


def batch_order(writers: list[str], run: int) -> list[str]:
    """The order of ``writers`` in batch number ``run`` (from 0).

    The writers on the acquire-zarr engine run one after the other, as a block, in an
    order that rotates from run to run; the others are walked with another stride from
    another start each run (:func:`_walk`), so a writer's place and the writer before it
    change. The block goes in before a writer that has not yet followed it in an earlier
    run (while one is left): the one writer per batch that pays for coming after
    acquire-zarr is another writer each run.
    """
    heavy = [w for w in writers if w.endswith("/acquire-zarr")]
    light = [w for w in writers if w not in heavy]
    if not heavy or not light:
        return _walk(writers, run)
    followers: list[str] = []
    for r in range(run + 1):
        order = _walk(light, r)
        place = (2 * r + 1) % len(order)
        for _ in range(len(order)):  # the first writer (from ``place``) not yet a follower
            if order[place] not in followers:
                break
            place = (place + 1) % len(order)
        followers.append(order[place])
    shift = run % len(heavy)
    return order[:place] + heavy[shift:] + heavy[:shift] + order[place:]


def run_batch(
    case: Case, writers: list[str], out: Path, quick: bool, peer: Path | None
) -> list[dict[str, Any]]:
    """Every writer of ``writers`` on ``case`` into a fresh tree, deleted once at the end."""
    batch = Path(tempfile.mkdtemp(prefix=f"{case.name}-", dir=out))
    try:
        results = []
        for writer in writers:
            before = set(batch.iterdir())
            results.append(run_one(case, writer, batch, quick, peer))
            evict(set(batch.iterdir()) - before)
        return results
    finally:
        shutil.rmtree(batch, ignore_errors=True)
        os.sync()


def summarize(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for result in results:
        groups[(result["case"], result["writer"])].append(result)
    rows = []
    for (case, writer), runs in groups.items():
        ok = [r for r in runs if "error" not in r]
        if not ok:
            rows.append({"case": case, "writer": writer, "error": runs[0]["error"]})
            continue

        def stat(key: str, runs: list[dict[str, Any]] = ok) -> dict[str, float]:
            values = [r[key] for r in runs]
            return {"median": statistics.median(values), "min": min(values), "max": max(values)}

        row: dict[str, Any] = {"case": case, "writer": writer, "runs": len(ok)}
        for key in ("seconds", "fps", "gb_per_s", "peak_rss_mb", "cpu_seconds"):
            row[key] = stat(key)
        row["append_p50_ms"] = statistics.median(r["append_ms"]["p50"] for r in ok)
        row["append_p99_ms"] = statistics.median(r["append_ms"]["p99"] for r in ok)
        row["append_max_ms"] = max(r["append_ms"]["max"] for r in ok)
        kernel = [r["kernel_cpu_seconds"] / r["cpu_seconds"] for r in ok if r.get("cpu_seconds")
                  and r.get("kernel_cpu_seconds") is not None]  # fmt: skip
        row["kernel_share"] = statistics.median(kernel) if kernel else None
        # cores kept busy: CPU seconds over wall seconds (2.0 saturates this machine)
        row["cores_busy"] = statistics.median(r["cpu_seconds"] / r["seconds"] for r in ok)
        lags = [r["loop_lag_ms"] for r in ok if r["loop_lag_ms"] is not None]
        row["loop_lag_ms"] = max(lags) if lags else None
        p99 = [r["loop_lag_p99_ms"] for r in ok if r.get("loop_lag_p99_ms") is not None]
        row["loop_lag_p99_ms"] = statistics.median(p99) if p99 else None
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]], disk: dict[str, Any] | None) -> str:
    lines = [
        "| case | writer | GB/s median (min-max) | fps | vs disk | peak extra RSS MB | "
        "CPU s (kernel, cores busy) | append p50/p99/max ms | loop lag p99/max ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    disk_gbs = disk["gb_per_s"]["median"] if disk else None
    for row in rows:
        if "error" in row:
            lines.append(
                f"| {row['case']} | {row['writer']} | failed: "
                f"{row['error'].splitlines()[-1][:80]} | | | | | | |"
            )
            continue
        g = row["gb_per_s"]
        ratio = f"{g['median'] / disk_gbs:.0%}" if disk_gbs else "-"
        lag = "-" if row["loop_lag_ms"] is None else f"{row['loop_lag_ms']:.1f}"
        if row.get("loop_lag_p99_ms") is not None:
            lag = f"{row['loop_lag_p99_ms']:.1f}/{lag}"
        shares = [f"{row['kernel_share']:.0%}"] if row.get("kernel_share") is not None else []
        if row.get("cores_busy") is not None:
            shares.append(f"{row['cores_busy']:.1f}")
        kernel = f" ({', '.join(shares)})" if shares else ""
        lines.append(
            f"| {row['case']} | {row['writer']} | {g['median']:.3f} ({g['min']:.3f}-"
            f"{g['max']:.3f}) | {row['fps']['median']:.0f} | {ratio} | "
            f"{row['peak_rss_mb']['median']:.0f} | {row['cpu_seconds']['median']:.1f}{kernel} | "
            f"{row['append_p50_ms']:.2f}/{row['append_p99_ms']:.2f}/{row['append_max_ms']:.1f} | "
            f"{lag} |"
        )
    return "\n".join(lines)


def run_ratios(results: list[dict[str, Any]], case: str, a: str, b: str) -> list[float]:
    """Speed of writer ``a`` over ``b`` in each run of ``case`` where both succeeded.

    The k-th result of a writer on a case comes from the k-th batch (every batch runs
    every writer once), so each ratio compares two writers a few seconds apart.
    """

    def speeds(writer: str) -> list[float | None]:
        return [
            r.get("gb_per_s") if "error" not in r else None
            for r in results
            if r["case"] == case and r["writer"] == writer
        ]

    return [x / y for x, y in zip(speeds(a), speeds(b), strict=False) if x and y]


def ratios(
    rows: list[dict[str, Any]], results: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    """Per case, from medians of this run: ours (best async) vs the best peer, the sync
    facade vs the async core on the same backend, our acquire-zarr vs acquire-zarr alone.

    With ``results`` (every run), each ratio also carries the range of the same ratio
    taken run by run (``spread``: min, max), which says how far the run-to-run swing of
    this machine leaves the median ratio undecided.
    """
    by_case: dict[str, dict[str, float]] = defaultdict(dict)
    for row in rows:
        if "error" not in row and row["writer"] != "disk":
            by_case[row["case"]][row["writer"]] = row["gb_per_s"]["median"]
    out = []
    for case, speeds in by_case.items():

        def best(family: str, speeds: dict[str, float] = speeds) -> tuple[str, float] | None:
            found = [(w, v) for w, v in speeds.items() if w.startswith(family + "/")]
            return max(found, key=lambda item: item[1]) if found else None

        def spread(a: str, b: str, case: str = case) -> list[float] | None:
            found = run_ratios(results, case, a, b) if results else []
            return [min(found), max(found)] if found else None

        ours, peer = best("ome-stream"), best("ome-writers")
        entry: dict[str, Any] = {"case": case, "spread": {}}
        if ours and peer:
            entry["ours_vs_peer"] = {"ours": ours[0], "peer": peer[0], "ratio": ours[1] / peer[1]}
            entry["spread"]["ours_vs_peer"] = spread(ours[0], peer[0])
        for writer, speed in speeds.items():
            if writer.startswith("sync/") and f"ome-stream/{writer[5:]}" in speeds:
                entry.setdefault("sync_vs_async", {})[writer[5:]] = (
                    speed / speeds[f"ome-stream/{writer[5:]}"]
                )
                entry["spread"][f"sync/{writer[5:]}"] = spread(writer, f"ome-stream/{writer[5:]}")
        if "ome-stream/acquire-zarr" in speeds and "raw/acquire-zarr" in speeds:
            entry["acquire_zarr_vs_direct"] = (
                speeds["ome-stream/acquire-zarr"] / speeds["raw/acquire-zarr"]
            )
            entry["spread"]["acquire_zarr_vs_direct"] = spread(
                "ome-stream/acquire-zarr", "raw/acquire-zarr"
            )
        out.append(entry)
    return out


def _range(entry: dict[str, Any], key: str) -> str:
    found = entry.get("spread", {}).get(key)
    return f" [{found[0]:.2f}-{found[1]:.2f}]" if found else ""


def ratio_table(entries: list[dict[str, Any]]) -> str:
    """The ratios of medians; in brackets, the range of the same ratio run by run."""
    lines = [
        "| case | ours best / best peer | sync / async (same backend) | "
        "our acquire-zarr / acquire-zarr alone |",
        "|---|---|---|---|",
    ]
    for e in entries:
        vs = e.get("ours_vs_peer")
        first = (
            f"{vs['ratio']:.2f}x{_range(e, 'ours_vs_peer')} "
            f"({vs['ours'].split('/')[1]} vs {vs['peer']})"
            if vs
            else "-"
        )
        sync = (
            ", ".join(
                f"{b} {r:.2f}x{_range(e, f'sync/{b}')}"
                for b, r in e.get("sync_vs_async", {}).items()
            )
            or "-"
        )
        az = e.get("acquire_zarr_vs_direct")
        third = f"{az:.2f}x{_range(e, 'acquire_zarr_vs_direct')}" if az else "-"
        lines.append(f"| {e['case']} | {first} | {sync} | {third} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run")
    parser.add_argument("--runs", type=int, default=None, help="runs per measurement (3)")
    parser.add_argument("--cases", help="comma-separated case names (default: all)")
    parser.add_argument("--writers", help="comma-separated writers (default: all installed)")
    parser.add_argument("--json", type=Path, help="write all results and the summary here")
    parser.add_argument("--dir", type=Path, help="where to write (default: a temp dir)")
    parser.add_argument("--all", action="store_true", help="also the writers in cases.SLOW")
    parser.add_argument(
        "--peer-python", type=Path, help=f"interpreter with ome-writers (default: {PEER_VENV})"
    )
    parser.add_argument("--summarize", type=Path, help="print the tables of a .jsonl and stop")
    args = parser.parse_args(argv)
    if args.summarize:
        done = [json.loads(line) for line in args.summarize.read_text().splitlines() if line]
        rows = summarize(done)
        disk = next((r for r in rows if r["writer"] == "disk" and "error" not in r), None)
        print(table([r for r in rows if r["writer"] != "disk"], disk))
        print()
        print(ratio_table(ratios(rows, done)))
        return 0
    cases = QUICK if args.quick else FULL
    runs = args.runs or (1 if args.quick else 3)
    selected = [cases[name] for name in (args.cases.split(",") if args.cases else cases)]
    wanted = set(args.writers.split(",")) if args.writers else None
    out = args.dir or Path(tempfile.mkdtemp(prefix="ome-stream-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    needs_peer = any(
        w.startswith("ome-writers/") and (wanted is None or w in wanted)
        for case in selected
        for w in writers_for(case, args.all)
    )
    peer = peer_python(args.peer_python) if needs_peer else None
    peer_found = peer_modules(peer) if needs_peer else set()
    plan: dict[str, list[str]] = {}
    for case in selected:
        for writer in writers_for(case, args.all or wanted is not None):
            if wanted and writer not in wanted:
                continue
            if not available(writer, peer_found):
                print(f"skipping {writer}: not installed", file=sys.stderr)
                continue
            plan.setdefault(case.name, []).append(writer)
    started = time.time()
    load_before = os.getloadavg()
    results: list[dict[str, Any]] = []
    if args.json:  # this run's results only: never append to an earlier run's lines
        args.json.with_suffix(".jsonl").write_text("")

    def record(new: list[dict[str, Any]]) -> None:
        results.extend(new)
        if args.json:  # one result per line as it comes: an interrupted run keeps its data
            with args.json.with_suffix(".jsonl").open("a") as fh:
                fh.writelines(json.dumps(r) + "\n" for r in new)

    # case by case (the runs of a case together), so an interrupted run has whole cases
    for case in selected:
        writers = plan.get(case.name, [])
        for run in range(runs if writers else 0):
            record(run_batch(cases["A"], ["disk"], out, args.quick, peer))
            order = batch_order(writers, run)
            print(f"run {run + 1}/{runs}: {case.name}: {', '.join(order)}", file=sys.stderr)
            record(run_batch(case, order, out, args.quick, peer))
    if args.dir is None:  # the temp root made above, empty once every batch is deleted
        with contextlib.suppress(OSError):
            out.rmdir()
    rows = summarize(results)
    disk = next((r for r in rows if r["writer"] == "disk" and "error" not in r), None)
    entries = ratios(rows, results)
    machine = {
        "cores": os.cpu_count(),
        "runs": runs,
        "started_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime(started)),
        "minutes": round((time.time() - started) / 60, 1),
        "load_before": load_before,
        "load_after": os.getloadavg(),
    }
    print(
        f"machine: {machine['cores']} cores, load {load_before[0]:.1f} -> "
        f"{machine['load_after'][0]:.1f}; runs per measurement: {runs}; "
        f"{machine['minutes']} min"
        + (f"; disk write+fsync: {disk['gb_per_s']['median']:.3f} GB/s" if disk else "")
    )
    print(table([r for r in rows if r["writer"] != "disk"], disk))
    print()
    print(ratio_table(entries))
    if args.json:
        args.json.write_text(
            json.dumps(
                {"machine": machine, "results": results, "summary": rows, "ratios": entries},
                indent=2,
            )
        )
    # a peer that refuses a case (ome-writers' TIFF has no zstd) is a finding, not a failure
    return 0 if all("error" not in r or r["writer"].startswith("ome-writers/") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
