"""examples/live_view.py: a web page follows the acquisition; what it serves matches disk."""

from __future__ import annotations

import importlib.util
import io
import json
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


@pytest.mark.anyio
async def test_live_view_example_serves_what_ends_up_on_disk(tmp_path: Path) -> None:
    example = load_example()
    settings = example.settings_for(tmp_path, n_t=12)
    fetched: dict[tuple[int, int], np.ndarray] = {}
    statuses = []
    async with anyio.create_task_group() as tg:
        port = await tg.start(
            lambda task_status: example.acquire_and_serve(
                settings, fps=100.0, linger=5.0, task_status=task_status
            )
        )
        status, page = await http_get(port, "/")
        assert status == 200 and b"Live acquisition" in page
        for _ in range(20):
            status, body = await http_get(port, "/status")
            doc = json.loads(body)
            statuses.append(doc)
            if doc["kind"] != "waiting" and doc["high_water"].get("t"):
                t = doc["high_water"]["t"] - 1
                status, body = await http_get(port, f"/frame.npy?index={t},1")
                assert status == 200
                fetched[(t, 1)] = np.load(io.BytesIO(body))
            status, png = await http_get(port, "/frame.png")
            if status == 200:
                image = decode_png(png)
                assert image.shape == (128, 128) and image.max() == 255
            await anyio.sleep(0.01)
        status, body = await http_get(port, "/frame.npy?index=99,0")
        assert status == 400 and b"out of bounds" in body
        tg.cancel_scope.cancel()
    final = zarr.open_array(str(tmp_path / "live.ome.zarr" / "0"), mode="r")[...]
    assert fetched, f"nothing fetched during the acquisition: {statuses[-3:]}"
    for (t, c), frame in fetched.items():
        # a slot read before its frame arrived is all zeros; otherwise exact
        assert (frame == final[t, c]).all() or not frame.any()
    assert any((frame == final[t, c]).all() and frame.any() for (t, c), frame in fetched.items())
