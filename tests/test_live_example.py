"""examples/live_view.py: a web page follows the acquisition; what it serves matches disk."""

from __future__ import annotations

import importlib.util
import io
import json
import shutil
import time
import zlib
from pathlib import Path

import anyio
import numpy as np
import pytest
import zarr

EXAMPLE = Path(__file__).parent.parent / "examples" / "live_view.py"


def load_example():
    spec = importlib.util.spec_from_file_location("live_view_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def http_get(port: int, target: str) -> tuple[int, bytes]:
    async with await anyio.connect_tcp("127.0.0.1", port) as client:
        await client.send(f"GET {target} HTTP/1.0\r\n\r\n".encode())
        response = b""
        try:
            while True:
                response += await client.receive()
        except anyio.EndOfStream:
            pass
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def decode_png(data: bytes) -> np.ndarray:
    """Decode the example's own 8-bit grayscale PNGs (filter 0, one IDAT)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    idat_at = data.index(b"IDAT")
    length = int.from_bytes(data[idat_at - 4 : idat_at], "big")
    raw = zlib.decompress(data[idat_at + 4 : idat_at + 4 + length])
    rows = np.frombuffer(raw, np.uint8).reshape(height, width + 1)
    assert not rows[:, 0].any()
    return rows[:, 1:]


async def wait_for_status(port: int, done) -> dict:
    """Poll /status (as the page does) until ``done(status)``; at most a minute."""
    with anyio.fail_after(60):
        while True:
            doc = json.loads((await http_get(port, "/status"))[1])
            if done(doc):
                return doc
            await anyio.sleep(0.02)


async def wait_for_state(port: int, states: set[str]) -> dict:
    return await wait_for_status(port, lambda doc: doc["state"] in states)


def stretched(frame: np.ndarray) -> np.ndarray:
    """What the page's PNG shows of ``frame``: its own range stretched to 0-255."""
    low, high = float(frame.min()), float(frame.max())
    return np.rint((frame - low) * (255.0 / (high - low or 1.0))).astype(np.uint8)


@pytest.mark.anyio
async def test_live_view_example_serves_what_ends_up_on_disk(tmp_path: Path) -> None:
    example = load_example()
    settings = example.settings_for(tmp_path, n_t=12)
    fetched: dict[tuple[int, int], np.ndarray] = {}
    statuses = []
    async with anyio.create_task_group() as tg:
        port = await tg.start(
            lambda task_status: example.acquire_and_serve(
                settings, fps=100.0, linger=30.0, task_status=task_status
            )
        )
        status, page = await http_get(port, "/")
        assert status == 200 and b"Live acquisition" in page
        for _ in range(20):
            status, body = await http_get(port, "/status")
            doc = json.loads(body)
            statuses.append(doc)
            if doc["newest"] is not None and doc["state"] == "acquiring":
                t, c = doc["newest"]["t"], doc["newest"]["c"]  # the frame the page labels
                status, body = await http_get(port, f"/frame.npy?index={t},{c}")
                if status == 200:  # (410 if the stream closed in between)
                    fetched[(t, c)] = np.load(io.BytesIO(body))
            status, png = await http_get(port, "/frame.png")
            if status == 200:
                image = decode_png(png)
                assert image.shape == (128, 128) and image.max() == 255
            await anyio.sleep(0.01)
        status, body = await http_get(port, "/frame.npy?index=99,0")
        assert status in (400, 410)
        final_status = await wait_for_state(port, {"finished", "error"})
        # closed: the page's status says so, every frame written, the last frame still shown
        assert final_status["state"] == "finished" and final_status["error"] is None
        assert final_status["frames_written"] == final_status["frames_total"] == 24
        assert final_status["newest"] == {"t": 11, "c": 1}
        status, last_png = await http_get(port, "/frame.png")
        assert status == 200
        status, body = await http_get(port, "/frame.npy?index=0,0")
        assert status == 410 and b"closed" in body
        tg.cancel_scope.cancel()
    assert statuses[0]["frames_total"] == 24
    assert {s["state"] for s in statuses} <= {"waiting", "acquiring", "finished"}
    assert all(set(s["newest"]) == {"t", "c"} for s in statuses if s["newest"])
    final = zarr.open_array(str(tmp_path / "live.ome.zarr" / "0"), mode="r")[...]
    np.testing.assert_array_equal(decode_png(last_png), stretched(final[11, 1]))
    assert fetched, f"nothing fetched during the acquisition: {statuses[-3:]}"
    for (t, c), frame in fetched.items():
        # the newest frame is accepted; read before it is written it is exact (from the
        # buffer) or, on a racing read, already on disk: either way equal to disk
        np.testing.assert_array_equal(frame, final[t, c])


def replace_under_writer(output: Path) -> None:
    """Delete a dataset that is being written and put a file in its place.

    The loop is blocked meanwhile, so no write starts, but up to a few dozen already
    started ones may still land (their engine threads create chunk files and folders):
    a delete that races one of them is tried again.
    """
    for _ in range(100):
        try:
            shutil.rmtree(output)
            output.write_text("not a dataset")
            return
        except OSError:  # a started write landed in the tree meanwhile
            time.sleep(0.01)
    raise AssertionError(f"could not replace {output}")


@pytest.mark.anyio
async def test_live_page_reports_a_storage_error(tmp_path: Path) -> None:
    example = load_example()
    settings = example.settings_for(tmp_path, n_t=300)
    output = Path(settings.output_path)
    seen = {}
    with pytest.RaisesGroup(pytest.RaisesExc(example.WriterError), flatten_subgroups=True):
        async with anyio.create_task_group() as tg:
            port = await tg.start(
                lambda task_status: example.acquire_and_serve(
                    settings, fps=100.0, linger=2.0, task_status=task_status
                )
            )
            await wait_for_status(port, lambda doc: doc["frames_written"] >= 2)
            replace_under_writer(output)  # storage goes away under the writer
            seen = await wait_for_state(port, {"error", "finished"})
            # after its linger the example re-raises the failure
    assert seen["state"] == "error", seen
    assert "live.ome.zarr" in seen["error"]  # the storage failure, naming what failed
    assert seen["frames_written"] < seen["frames_total"] == 600


@pytest.mark.anyio
async def test_live_page_in_headless_chromium(tmp_path: Path) -> None:
    """A real browser runs the page's script: labels, progress, and the finished state."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("the browser check needs Chromium: apt-get install chromium")
    example = load_example()
    settings = example.settings_for(tmp_path, n_t=6)
    async with anyio.create_task_group() as tg:
        port = await tg.start(
            lambda task_status: example.acquire_and_serve(
                settings, fps=100.0, linger=60.0, task_status=task_status
            )
        )
        await wait_for_state(port, {"finished", "error"})
        result = await anyio.run_process(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                f"--user-data-dir={tmp_path / 'chromium'}",
                "--virtual-time-budget=5000",
                "--dump-dom",
                f"http://127.0.0.1:{port}/",
            ],
            check=False,
        )
        tg.cancel_scope.cancel()
    dom = result.stdout.decode()
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert "Finished: the acquisition is complete and closed." in dom
    assert "12 of 12 frames written" in dom
    assert "showing t 5, c 1" in dom
    assert "/frame.png?index=5,1" in dom
