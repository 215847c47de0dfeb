"""Side-by-side benchmark: ome-stream, the ome-writers peer, raw engines and the disk.

Usage::

    python -m benchmarks.run                 # all cases, 3 runs each, table + JSON
    python -m benchmarks.run --cases A,C --runs 5 --json results.json
    python -m benchmarks.run --quick         # tiny sizes: checks the harness works

Every (case, writer) measurement runs in its own process (clean memory baseline); runs
are interleaved across writers so that machine noise hits them alike. The table shows
medians with min-max over the runs. Writers that are not installed are skipped with a
note.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from benchmarks.cases import FULL, QUICK, Case, writers_for


def available(writer: str) -> bool:
    family, _, backend = writer.partition("/")
    module = {
        "ome-writers": "ome_writers",
        "ome-stream": "ome_stream",
        "raw": backend,
        "disk": "os",
    }[family]
    if importlib.util.find_spec(module) is None:
        return False
    if backend == "zarr-python":
        return importlib.util.find_spec("zarr") is not None
    return True


def run_one(case: Case, writer: str, out: Path, quick: bool) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.worker", case.name, writer, str(out)]
    if quick:
        command.append("--quick")
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=Path(__file__).parent.parent,
        check=False,
    )
    if result.returncode != 0:
        return {"case": case.name, "writer": writer, "error": result.stderr.strip()[-600:]}
    return json.loads(result.stdout.strip().splitlines()[-1])


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
        lags = [r["loop_lag_ms"] for r in ok if r["loop_lag_ms"] is not None]
        row["loop_lag_ms"] = max(lags) if lags else None
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]], disk: dict[str, Any] | None) -> str:
    lines = [
        "| case | writer | GB/s median (min-max) | fps | vs disk | peak extra RSS MB | "
        "CPU s | append p50/p99/max ms | loop lag ms |",
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
        lines.append(
            f"| {row['case']} | {row['writer']} | {g['median']:.3f} ({g['min']:.3f}-"
            f"{g['max']:.3f}) | {row['fps']['median']:.0f} | {ratio} | "
            f"{row['peak_rss_mb']['median']:.0f} | {row['cpu_seconds']['median']:.1f} | "
            f"{row['append_p50_ms']:.2f}/{row['append_p99_ms']:.2f}/{row['append_max_ms']:.1f} | "
            f"{lag} |"
        )
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
    args = parser.parse_args(argv)
    cases = QUICK if args.quick else FULL
    runs = args.runs or (1 if args.quick else 3)
    selected = [cases[name] for name in (args.cases.split(",") if args.cases else cases)]
    wanted = set(args.writers.split(",")) if args.writers else None
    out = args.dir or Path(tempfile.mkdtemp(prefix="ome-stream-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    plan = []
    for case in selected:
        for writer in writers_for(case):
            if wanted and writer not in wanted:
                continue
            if not available(writer):
                print(f"skipping {writer}: not installed", file=sys.stderr)
                continue
            plan.append((case, writer))
    disk_case = cases["A"]
    results: list[dict[str, Any]] = []
    for run in range(runs):
        results.append(run_one(disk_case, "disk", out, args.quick))
        for case, writer in plan:
            print(f"run {run + 1}/{runs}: {case.name} {writer}", file=sys.stderr)
            results.append(run_one(case, writer, out, args.quick))
    rows = summarize(results)
    disk = next((r for r in rows if r["writer"] == "disk" and "error" not in r), None)
    print(
        f"machine: {os.cpu_count()} cores; runs per measurement: {runs}; "
        f"disk write+fsync: {disk['gb_per_s']['median']:.3f} GB/s"
        if disk
        else ""
    )
    print(table([r for r in rows if r["writer"] != "disk"], disk))
    if args.json:
        args.json.write_text(json.dumps({"results": results, "summary": rows}, indent=2))
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
