"""The sync facade's hand-off: ``append`` queues checked frames for the loop, no round trip.

Each test writes real data through the default backend (tensorstore) and reads it back
with zarr-python and tensorstore.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import tensorstore as ts
import zarr

from _settings import series
from conftest import make_frames
from ome_stream import create_stream
from ome_stream._handoff import HANDOFF_BYTES


def read_both(path: Path) -> np.ndarray:
    by_zarr = np.asarray(zarr.open_array(str(path), mode="r")[...])
    spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)}}
    by_ts = ts.open(spec, open=True).result().read().result()
    np.testing.assert_array_equal(by_zarr, by_ts)
    return by_zarr


def test_appends_return_while_the_loop_is_busy(tmp_path: Path) -> None:
    """Frames are queued without the loop: appends finish while it runs something else,
    and once it is free every frame is accepted, readable, and stored in order."""
    settings = series(tmp_path / "busy.ome.zarr", 12, (16, 16))
    frames = make_frames(12, (16, 16), seed=4)
    gate, blocked = threading.Event(), threading.Event()

    async def hold_the_loop() -> None:
        blocked.set()
        gate.wait(30)  # blocks the loop's thread itself, not just a task

    with create_stream(settings) as stream:
        stream.append(frames[0])
        busy = stream._portal.start_task_soon(hold_the_loop)
        assert blocked.wait(10)
        appender = threading.Thread(target=lambda: [stream.append(f) for f in frames[1:10]])
        appender.start()
        appender.join(10)
        returned = not appender.is_alive()
        gate.set()  # let the loop go in any case, so that a failure cannot hang
        appender.join(10)
        busy.result(10)
        assert returned, "append waited for the loop: a round trip per frame"
        # the view, the counts and callbacks see every frame appended
        assert stream.stats.frames_accepted == 10
        np.testing.assert_array_equal(stream.view()[9], frames[9])
        for frame in frames[10:]:
            stream.append(frame)
    np.testing.assert_array_equal(read_both(tmp_path / "busy.ome.zarr" / "0"), frames)


def test_appends_from_several_threads_are_each_stored_once(tmp_path: Path) -> None:
    """Four producer threads, 40 frames each: every frame lands exactly once, each
    thread's frames in its own order, and the frame after the last is refused."""
    threads, each = 4, 40
    settings = series(tmp_path / "many.ome.zarr", threads * each, (8, 8))
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def produce(who: int) -> None:
        start.wait()
        try:
            for i in range(each):
                stream.append(np.full((8, 8), who * 1000 + i, dtype="uint16"))
        except BaseException as err:  # reported below
            errors.append(err)

    with create_stream(settings) as stream:
        workers = [threading.Thread(target=produce, args=(w,)) for w in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        assert not errors
        assert stream.stats.frames_accepted == threads * each
        with pytest.raises(IndexError, match=f"would exceed total of {threads * each} frames"):
            stream.append(np.zeros((8, 8), dtype="uint16"))
    stored = read_both(tmp_path / "many.ome.zarr" / "0")
    values = stored[:, 0, 0].astype(int)
    assert (stored == values[:, None, None]).all()  # whole frames, never mixed
    assert sorted(values) == sorted(w * 1000 + i for w in range(threads) for i in range(each))
    for who in range(threads):
        mine = [v % 1000 for v in values if v // 1000 == who]
        assert mine == list(range(each))


def test_the_hand_off_is_bounded_by_bytes_and_by_the_buffer(tmp_path: Path) -> None:
    """At most HANDOFF_BYTES of frames wait between the caller and the buffer, and never
    more than the buffer's free room: appended minus written stays within the budget."""
    frame_bytes = 64 * 64 * 2
    settings = series(tmp_path / "bounded.ome.zarr", 200, (64, 64))
    frames = make_frames(200, (64, 64), seed=8)
    with create_stream(settings, max_buffer_bytes=16 * frame_bytes) as stream:
        core = stream._async
        assert stream._handoff._capacity == HANDOFF_BYTES // frame_bytes
        worst = 0
        for appended, frame in enumerate(frames, start=1):
            stream.append(frame)
            worst = max(worst, appended - core.stats.frames_written)
    assert worst <= core.capacity == 16
    np.testing.assert_array_equal(read_both(tmp_path / "bounded.ome.zarr" / "0"), frames)
