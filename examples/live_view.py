"""Serve a live view of an acquisition in progress to a web browser.

Run ``python examples/live_view.py OUTPUT_DIR`` and open the printed address: the page
shows the newest frame and the progress while a simulated camera streams into OME-Zarr.

Endpoints: ``/`` (the page), ``/frame.png`` (newest frame, contrast-stretched 8-bit PNG),
``/frame.npy?index=T,C`` (one frame, exact pixels, in NumPy's .npy format), ``/status``
(JSON: ``state`` waiting/acquiring/finished/error, frames written of ``frames_total``, the
``newest`` frame's index by axis, e.g. ``{"t": 3, "c": 1}``, and the error if any). The
page labels the frame it shows with its channel and time index and says when the
acquisition finished or failed. Only the standard library, numpy and anyio are used.
"""

from __future__ import annotations

import io
import json
import struct
import sys
import zlib
from functools import partial
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio
import numpy as np
from anyio.abc import SocketStream, TaskStatus

from ome_stream import AcquisitionSettings, AsyncOMEStream, dims_from_standard_axes, open_stream
from ome_stream.errors import WriterError
from ome_stream.events import StreamEvent

PAGE = b"""<!doctype html>
<html><head><title>ome-stream live view</title></head>
<body style="font-family: sans-serif">
<h1>Live acquisition</h1>
<p><strong id="state">waiting for the first frame...</strong></p>
<p id="progress"></p>
<p id="shown"></p>
<img id="frame" width="512" style="image-rendering: pixelated">
<script>
function at(index) {
  return Object.entries(index).map(([axis, i]) => `${axis} ${i}`).join(", ");
}
async function tick() {
  const status = await (await fetch("/status")).json();
  const total = status.frames_total === null ? "?" : status.frames_total;
  document.getElementById("progress").textContent =
    `${status.frames_written} of ${total} frames written`;
  const state = document.getElementById("state");
  if (status.state === "finished") {
    state.textContent = "Finished: the acquisition is complete and closed.";
  } else if (status.state === "error") {
    state.textContent = `Error: ${status.error}`;
    state.style.color = "red";
  } else if (status.state === "acquiring") {
    state.textContent = "Acquiring...";
  }
  if (status.newest && status.state !== "error") {
    // the label names exactly the frame requested: channel and time index of the newest
    const query = Object.values(status.newest).join(",");
    document.getElementById("frame").src = `/frame.png?index=${query}&t=${Date.now()}`;
    document.getElementById("shown").textContent = `showing ${at(status.newest)}`;
  }
  if (status.state === "finished" || status.state === "error") return;
  setTimeout(tick, 250);
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
    """A tiny HTTP/1.0 server over anyio sockets that reads the stream's view.

    It outlives the stream: once the stream is closed it reports ``finished`` (or
    ``error``) and serves the last frame it kept (:meth:`keep_newest`), since the view
    reads through the stream's open backend.
    """

    def __init__(self, stream: AsyncOMEStream) -> None:
        self.stream = stream
        self.view = stream.view()
        self.latest: StreamEvent | None = None
        self.error: str | None = None
        self.kept: tuple[tuple[int, ...], np.ndarray] | None = None
        dims = stream.settings.dimensions[:-2]
        self.axes = [d.name for d in dims]

    async def follow(self) -> None:
        """Keep the latest progress event for /status, and a storage error."""
        async with self.stream.events() as events:
            async for event in events:
                self.latest = event
                if event.kind == "error" and self.error is None:
                    self.error = event.error

    def failed(self, error: BaseException) -> None:
        """The acquisition stopped with ``error``: the page shows it."""
        self.error = self.error or f"{type(error).__name__}: {error}"

    async def keep_newest(self) -> None:
        """Read the newest frame while the stream is open, to serve it after close."""
        index = self.newest_index()
        if index is not None:
            self.kept = (index, await self.view.read(index))

    def newest_index(self) -> tuple[int, ...] | None:
        newest = self.stream.stats.frames_accepted - 1
        return None if newest < 0 else tuple(self.stream.router.acquisition_index(newest))

    def status(self) -> dict[str, object]:
        stats = self.stream.stats
        if self.error is not None:
            state = "error"
        elif self.stream.closed:
            state = "finished"
        else:
            state = "acquiring" if stats.frames_accepted else "waiting"
        index = self.newest_index()
        return {
            "state": state,
            "kind": self.latest.kind if self.latest else "waiting",
            "frames_accepted": stats.frames_accepted,
            "frames_written": stats.frames_written,
            "frames_total": self.stream.settings.num_frames,
            "high_water": self.latest.high_water if self.latest else {},
            "newest": None if index is None else dict(zip(self.axes, index, strict=True)),
            "error": self.error,
        }

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
            return "200 OK", "application/json", json.dumps(self.status()).encode()
        if url.path in ("/frame.png", "/frame.npy"):
            query = parse_qs(url.query)
            if "index" in query:
                index = tuple(int(i) for i in query["index"][0].split(","))
            else:  # newest frame: the last acquired index along every axis
                newest = self.newest_index()
                if newest is None:
                    return "404 Not Found", "text/plain", b"no frame yet"
                index = newest
            if self.stream.closed:
                if self.kept is None or self.kept[0] != index:
                    message = f"the acquisition is closed; read {self.stream.settings.output_path}"
                    return "410 Gone", "text/plain", message.encode()
                frame = self.kept[1]
            else:
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
    """Stream frames at ``fps`` while serving the live view; after the stream closed (or
    failed), keep serving its final state for ``linger`` s. A storage error is re-raised
    then."""
    failure: WriterError | None = None
    server: LiveServer | None = None
    async with anyio.create_task_group() as tg:
        try:
            async with open_stream(settings) as stream:
                server = LiveServer(stream)
                tg.start_soon(server.follow)
                bound = await tg.start(server.serve, port)
                task_status.started(bound)
                for number in range(settings.num_frames or 0):
                    frame = camera_frame(number)
                    await stream.append(frame, metadata={"delta_t": number / fps})
                    await anyio.sleep(1 / fps)
                await stream.flush()
                await server.keep_newest()
        except WriterError as err:
            if server is None:
                raise
            server.failed(err)
            failure = err
        await anyio.sleep(linger)
        tg.cancel_scope.cancel()
    if failure is not None:
        raise failure


async def main(output_dir: Path) -> None:
    settings = settings_for(output_dir, n_t=200)
    async with anyio.create_task_group() as tg:
        port = await tg.start(partial(acquire_and_serve, settings, linger=30.0))
        print(f"live view at http://127.0.0.1:{port}/ (writing {settings.output_path})")


if __name__ == "__main__":
    anyio.run(main, Path(sys.argv[1] if len(sys.argv) > 1 else "."))
