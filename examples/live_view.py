"""Serve a live view of an acquisition in progress to a web browser.

Run ``python examples/live_view.py OUTPUT_DIR`` and open the printed address: the page
shows the newest frame and the progress while a simulated camera streams into OME-Zarr.

Endpoints: ``/`` (the page), ``/frame.png`` (newest frame, contrast-stretched 8-bit PNG),
``/frame.npy?index=T,C`` (one frame, exact pixels, in NumPy's .npy format), ``/status``
(the latest progress event as JSON). Only the standard library, numpy and anyio are used.
"""

from __future__ import annotations

import io
import json
import struct
import sys
import zlib
from dataclasses import asdict
from functools import partial
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio
import numpy as np
from anyio.abc import SocketStream, TaskStatus

from ome_stream import AcquisitionSettings, AsyncOMEStream, dims_from_standard_axes, open_stream
from ome_stream.events import StreamEvent

PAGE = b"""<!doctype html>
<html><head><title>ome-stream live view</title></head>
<body style="font-family: sans-serif">
<h1>Live acquisition</h1>
<p id="status">waiting...</p>
<img id="frame" width="512" style="image-rendering: pixelated">
<script>
async function tick() {
  const status = await (await fetch('/status')).json();
  document.getElementById('status').textContent =
    `frames written: ${status.frames_written}, ` +
    `acquired so far: ${JSON.stringify(status.high_water)}`;
  document.getElementById('frame').src = '/frame.png?' + Date.now();
  if (status.kind !== 'closed') setTimeout(tick, 250);
}
tick();
</script></body></html>
"""


def png_bytes(frame: np.ndarray) -> bytes:
    """Encode a 2-D frame as an 8-bit grayscale PNG, stretched to its own range."""
    low, high = float(frame.min()), float(frame.max())
    scaled = np.rint((frame - low) * (255.0 / (high - low or 1.0))).astype(np.uint8)
    rows = b"".join(b"\x00" + row.tobytes() for row in scaled)

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", frame.shape[1], frame.shape[0], 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


class LiveServer:
    """A tiny HTTP/1.0 server over anyio sockets that reads the stream's view."""

    def __init__(self, stream: AsyncOMEStream) -> None:
        self.stream = stream
        self.view = stream.view()
        self.latest: StreamEvent | None = None

    async def follow(self) -> None:
        """Keep the latest progress event for /status."""
        async with self.stream.events() as events:
            async for event in events:
                self.latest = event

    async def serve(self, port: int = 0, *, task_status: TaskStatus[int]) -> None:
        """Listen on 127.0.0.1:port; report the bound port through task_status."""
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
        async with listener:
            task_status.started(listener.extra(anyio.abc.SocketAttribute.local_port))
            await listener.serve(self.handle)

    async def handle(self, client: SocketStream) -> None:
        async with client:
            request = b""
            while b"\r\n\r\n" not in request:
                request += await client.receive()
            target = request.split(b" ", 2)[1].decode()
            status, kind, body = await self.respond(target)
            head = (
                f"HTTP/1.0 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n\r\n"
            )
            await client.send(head.encode() + body)

    async def respond(self, target: str) -> tuple[str, str, bytes]:
        url = urlsplit(target)
        if url.path == "/":
            return "200 OK", "text/html", PAGE
        if url.path == "/status":
            event = self.latest
            doc = (
                asdict(event)
                if event
                else {"kind": "waiting", "frames_written": 0, "high_water": {}}
            )
            return "200 OK", "application/json", json.dumps(doc).encode()
        if url.path in ("/frame.png", "/frame.npy"):
            query = parse_qs(url.query)
            if "index" in query:
                index = tuple(int(i) for i in query["index"][0].split(","))
            else:  # newest frame: the last acquired index along every axis
                newest = self.stream.stats.frames_accepted - 1
                if newest < 0:
                    return "404 Not Found", "text/plain", b"no frame yet"
                index = self.stream.router.acquisition_index(newest)
            try:
                frame = await self.view.read(index)
            except (IndexError, TypeError) as err:
                return "400 Bad Request", "text/plain", str(err).encode()
            if url.path == "/frame.png":
                return "200 OK", "image/png", png_bytes(frame)
            buffer = io.BytesIO()
            np.save(buffer, frame)
            return "200 OK", "application/octet-stream", buffer.getvalue()
        return "404 Not Found", "text/plain", b"not found"


def camera_frame(number: int, shape: tuple[int, int] = (128, 128)) -> np.ndarray:
    """A moving bright spot on a noisy background: easy to recognise in the page."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    cy, cx = (number * 7) % shape[0], (number * 11) % shape[1]
    spot = 3000 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 50.0)
    noise = np.random.default_rng(number).poisson(100, shape)
    return (spot + noise).astype(np.uint16)


def settings_for(output_dir: Path, n_t: int = 20) -> AcquisitionSettings:
    """The example acquisition: 2 channels over ``n_t`` time points."""
    return AcquisitionSettings(
        root_path=output_dir / "live.ome.zarr",
        dimensions=dims_from_standard_axes({"t": n_t, "c": 2, "y": 128, "x": 128}),
        dtype="uint16",
        overwrite=True,
    )


async def acquire_and_serve(
    settings: AcquisitionSettings,
    *,
    port: int = 0,
    fps: float = 20.0,
    linger: float = 0.0,
    task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Stream frames at ``fps`` while serving the live view; keep serving ``linger`` s."""
    async with open_stream(settings) as stream, anyio.create_task_group() as tg:
        server = LiveServer(stream)
        tg.start_soon(server.follow)
        bound = await tg.start(server.serve, port)
        task_status.started(bound)
        for number in range(settings.num_frames or 0):
            await stream.append(camera_frame(number), metadata={"delta_t": number / fps})
            await anyio.sleep(1 / fps)
        await stream.flush()
        await anyio.sleep(linger)
        tg.cancel_scope.cancel()


async def main(output_dir: Path) -> None:
    settings = settings_for(output_dir, n_t=200)
    async with anyio.create_task_group() as tg:
        port = await tg.start(partial(acquire_and_serve, settings, linger=30.0))
        print(f"live view at http://127.0.0.1:{port}/ (writing {settings.output_path})")


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1] if len(sys.argv) > 1 else "."))
