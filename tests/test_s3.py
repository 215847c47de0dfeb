"""OME-Zarr straight to S3-compatible object storage, against a real server on loopback.

Everything written is read back from the bucket with tensorstore (its s3 kvstore) and
zarr-python (its object store on obstore), and compared exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anyio
import numpy as np
import pytest
import tensorstore as ts
import zarr
from pydantic import ValidationError

from _proxy import SwallowingProxy
from _settings import series
from conftest import make_frames
from ome_stream import (
    AcquisitionSettings,
    Dimension,
    Plate,
    Position,
    WriterError,
    create_stream,
    dims_from_standard_axes,
    open_stream,
)
from s3_server import ACCESS_KEY, SECRET_KEY, S3Server

BUCKET = "microscope"


@pytest.fixture(params=["tensorstore", "zarr-python"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def s3(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    if S3Server.command() is None:
        pytest.skip(
            "no S3 server: install s3rver with "
            "'npm install --prefix tests/.s3rver s3rver@3.7.1' (needs Node.js)"
        )
    server = S3Server(tmp_path / "s3data", BUCKET)
    server.root.mkdir()
    server.start()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
    try:
        yield server
    finally:
        server.kill()


def kv(server: S3Server, prefix: str) -> ts.KvStore:
    return ts.KvStore.open(
        {
            "driver": "s3",
            "bucket": BUCKET,
            "path": prefix,
            "endpoint": server.endpoint,
            "aws_region": "us-east-1",
        }
    ).result()


def ts_read(server: S3Server, key: str) -> np.ndarray:
    spec = {
        "driver": "zarr3",
        "kvstore": {
            "driver": "s3",
            "bucket": BUCKET,
            "path": key + "/",
            "endpoint": server.endpoint,
            "aws_region": "us-east-1",
        },
    }
    return ts.open(spec, read=True).result().read().result()


def zarr_store(server: S3Server, prefix: str) -> zarr.storage.ObjectStore:
    from obstore.store import S3Store

    return zarr.storage.ObjectStore(
        S3Store(
            BUCKET,
            prefix=prefix,
            endpoint=server.endpoint,
            region="us-east-1",
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            client_options={"allow_http": True},
        ),
        read_only=True,
    )


def read_both(server: S3Server, prefix: str, array: str) -> np.ndarray:
    by_ts = ts_read(server, f"{prefix}/{array}")
    by_zarr = np.asarray(zarr.open_array(zarr_store(server, prefix), path=array, mode="r")[...])
    np.testing.assert_array_equal(by_ts, by_zarr)
    return by_ts


def group_attrs(server: S3Server, prefix: str, group: str = "") -> dict:
    return dict(zarr.open_group(zarr_store(server, prefix), path=group, mode="r").attrs)


@pytest.mark.anyio
async def test_single_image_to_s3(s3: S3Server, backend: str) -> None:
    settings = AcquisitionSettings(
        root_path=f"s3://{BUCKET}/lab/run1.ome.zarr",
        format=backend,
        dtype="uint16",
        dimensions=dims_from_standard_axes(
            {"t": 3, "c": 2, "y": 32, "x": 32}, chunk_shapes={"y": 16, "x": 16}
        ),
        storage_options={"endpoint": s3.endpoint, "region": "us-east-1"},
    )
    assert settings.output_path == f"s3://{BUCKET}/lab/run1.ome.zarr"
    frames = make_frames(6, (32, 32))
    async with open_stream(settings) as stream:
        for frame in frames:
            await stream.append(frame, metadata={"delta_t": 1.0})
    np.testing.assert_array_equal(
        read_both(s3, "lab/run1.ome.zarr", "0"), frames.reshape(3, 2, 32, 32)
    )
    attrs = group_attrs(s3, "lab/run1.ome.zarr")
    assert attrs["ome"]["version"] == "0.5"
    assert len(attrs["ome_writers"]["frame_metadata"]) == 6
    # the bucket holds whole objects: one per chunk, none partial
    keys = kv(s3, "lab/run1.ome.zarr/0/c/").list().result()
    assert len(keys) == 6 * 4


def test_multi_position_and_plate_to_s3_with_the_sync_api(s3: S3Server, backend: str) -> None:
    multi = AcquisitionSettings(
        root_path=f"s3://{BUCKET}/multi.ome.zarr",
        format=backend,
        dtype="uint8",
        dimensions=[
            Dimension(name="t", count=2),
            Dimension(name="p", type="position", coords=["a", "b"]),
            *dims_from_standard_axes({"y": 8, "x": 8}),
        ],
    )
    frames = make_frames(4, (8, 8), dtype="uint8")
    with create_stream(multi) as stream:
        for frame in frames:
            stream.append(frame)
    for p, name in enumerate(["a", "b"]):
        np.testing.assert_array_equal(
            read_both(s3, "multi.ome.zarr", f"{name}/0"), frames.reshape(2, 2, 8, 8)[:, p]
        )
    assert group_attrs(s3, "multi.ome.zarr", "OME")["ome"]["series"] == ["a", "b"]

    plate = AcquisitionSettings(
        root_path=f"s3://{BUCKET}/plate.ome.zarr",
        format=backend,
        dtype="uint8",
        dimensions=[
            Dimension(
                name="p",
                type="position",
                coords=[
                    Position(name="f0", plate_row="A", plate_column="1"),
                    Position(name="f1", plate_row="A", plate_column="1"),
                    Position(name="f0", plate_row="B", plate_column="2"),
                ],
            ),
            *dims_from_standard_axes({"y": 8, "x": 8}),
        ],
        plate=Plate(row_names=["A", "B"], column_names=["1", "2"]),
    )
    frames = make_frames(3, (8, 8), dtype="uint8", seed=4)
    with create_stream(plate) as stream:
        for frame in frames:
            stream.append(frame)
    for i, path in enumerate(["A/1/f0", "A/1/f1", "B/2/f0"]):
        np.testing.assert_array_equal(read_both(s3, "plate.ome.zarr", f"{path}/0"), frames[i])
    wells = group_attrs(s3, "plate.ome.zarr")["ome"]["plate"]["wells"]
    assert [w["path"] for w in wells] == ["A/1", "B/2"]


@pytest.mark.anyio
async def test_unbounded_and_overwrite_rules_on_s3(s3: S3Server, backend: str) -> None:
    settings = series(f"s3://{BUCKET}/u.ome.zarr", None, (16, 16), format=backend)
    frames = make_frames(5, (16, 16))
    async with open_stream(settings) as stream:
        for frame in frames:
            await stream.append(frame)
    np.testing.assert_array_equal(read_both(s3, "u.ome.zarr", "0"), frames)  # trimmed to 5
    with pytest.raises(FileExistsError, match="already holds"):
        async with open_stream(settings):
            pass
    async with open_stream(settings.model_copy(update={"overwrite": True})) as stream:
        await stream.append(frames[4])
    np.testing.assert_array_equal(read_both(s3, "u.ome.zarr", "0"), frames[4:])
    # objects that are not a zarr dataset are never deleted
    notes = kv(s3, "notes.ome.zarr/")
    notes.write("thesis.txt", b"irreplaceable").result()
    other = settings.model_copy(
        update={"root_path": f"s3://{BUCKET}/notes.ome.zarr", "overwrite": True}
    )
    with pytest.raises(FileExistsError, match="no zarr dataset; refusing"):
        async with open_stream(other):
            pass
    assert notes.read("thesis.txt").result().value == b"irreplaceable"


@pytest.mark.anyio
async def test_server_killed_mid_acquisition(s3: S3Server, backend: str) -> None:
    settings = series(
        f"s3://{BUCKET}/killed.ome.zarr",
        40,
        (16, 16),
        format=backend,
        max_buffer_bytes=4 * 16 * 16 * 2,
    )
    frames = make_frames(40, (16, 16))
    with anyio.fail_after(120):  # bounded retries: a dead endpoint fails, it does not hang
        with pytest.raises(WriterError) as info:  # noqa: PT012
            async with open_stream(settings) as stream:
                for frame in frames[:10]:
                    await stream.append(frame)
                await stream.flush()
                # flushed means stored: another reader sees it (this also lets the emulator,
                # which answers before its own file write ends, finish writing)
                flushed = await anyio.to_thread.run_sync(ts_read, s3, "killed.ome.zarr/0")
                np.testing.assert_array_equal(flushed[:10], frames[:10])
                s3.kill()
                for frame in frames[10:]:
                    await stream.append(frame)
    assert info.value.__cause__ is not None
    s3.start()  # the data directory survived; what was flushed is intact
    data = ts_read(s3, "killed.ome.zarr/0")
    np.testing.assert_array_equal(data[:10], frames[:10])


@pytest.mark.parametrize(
    ("root", "options", "message"),
    [
        ("s3://b/run.ome.tiff", {}, "cannot write to object storage; use OME-Zarr"),
        (
            "s3://b/run.ome.zarr",
            {"format": "acquire-zarr", "storage_order": "acquisition"},
            "cannot write to object storage",
        ),
        (
            "run.ome.zarr",
            {"storage_options": {"endpoint": "http://x"}},
            "storage_options apply only to s3://",
        ),
        ("s3://b/r.ome.zarr", {"storage_options": {"secret": "x"}}, r"unknown keys \['secret'\]"),
        ("gs://b/r.ome.zarr", {}, "only local paths and s3:// URLs"),
    ],
)
def test_what_object_storage_cannot_do(root: str, options: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        series(root, 2, dtype="uint8", **options)


def test_bucket_layout_is_plain_objects(s3: S3Server) -> None:
    """Objects land under the prefix as a zarr hierarchy any S3 reader can walk."""
    settings = series(f"s3://{BUCKET}/walk.ome.zarr", 1, (4, 4), dtype="uint8")
    with create_stream(settings) as stream:
        stream.append(np.ones((4, 4), "uint8"))
    store = kv(s3, "walk.ome.zarr/")
    assert sorted(store.list().result()) == [b"0/c/0/0/0", b"0/zarr.json", b"zarr.json"]
    assert json.loads(store.read("zarr.json").result().value)["node_type"] == "group"
    assert json.loads(store.read("0/zarr.json").result().value)["node_type"] == "array"


# ------------------------------------------------------------------ a stalled endpoint
@pytest.fixture
def stalling(s3: S3Server) -> Iterator[SwallowingProxy]:
    """The S3 server behind a loopback proxy that can stop answering."""
    with SwallowingProxy(s3.port) as proxy:
        yield proxy


def stalled_settings(proxy: SwallowingProxy, backend: str, name: str) -> AcquisitionSettings:
    return series(
        f"s3://{BUCKET}/{name}.ome.zarr",
        40,
        (16, 16),
        format=backend,
        max_buffer_bytes=4 * 16 * 16 * 2,
        # a short bound for the test; the default is 30 s
        storage_options={"endpoint": proxy.endpoint, "region": "us-east-1", "timeout": "2"},
    )


def causes(error: BaseException | None) -> str:
    texts = []
    while error is not None:
        texts.append(str(error))
        error = error.__cause__ or error.__context__
    return " | ".join(texts)


@pytest.mark.anyio
async def test_an_endpoint_that_stops_answering_raises_writer_error(
    s3: S3Server, stalling: SwallowingProxy, backend: str
) -> None:
    """Connections are accepted, requests read, nothing answered: the blocked append wakes
    up to WriterError within the configured timeout instead of waiting for ever."""
    settings = stalled_settings(stalling, backend, "stalled")
    frames = make_frames(40, (16, 16))
    appended = 0
    with anyio.fail_after(90):  # the guard against a hang, far above the 2 s bound
        with pytest.raises(WriterError) as info:  # noqa: PT012
            async with open_stream(settings) as stream:
                for frame in frames[:5]:
                    await stream.append(frame)
                await stream.flush()
                stalling.swallow()
                for frame in frames[5:]:
                    await stream.append(frame)
                    appended += 1
    assert appended < 35, "the stalled endpoint never surfaced as an error"
    # our bound ("did not answer within 2 s") or obstore's own request timeout, at 2 s too
    text = causes(info.value)
    assert "did not answer" in text or "TimedOut" in text, text
    # what was flushed before the stall is in the bucket, exactly
    np.testing.assert_array_equal(ts_read(s3, "stalled.ome.zarr/0")[:5], frames[:5])


@pytest.mark.anyio
async def test_an_endpoint_that_never_answers_fails_the_open(
    stalling: SwallowingProxy, backend: str
) -> None:
    stalling.swallow()
    with anyio.fail_after(90), pytest.raises(WriterError, match="cannot create"):
        async with open_stream(stalled_settings(stalling, backend, "never")):
            pass


def test_the_storage_timeout_is_checked() -> None:
    for bad in ("0", "-1", "soon", "inf"):
        with pytest.raises(ValidationError, match="timeout must be a positive number"):
            series("s3://b/r.ome.zarr", 2, dtype="uint8", storage_options={"timeout": bad})


@pytest.mark.anyio
@pytest.mark.parametrize(
    "document", ['{"my": "settings"}', "not json", '{"zarr_format": 3, "node_type": "x"}']
)
async def test_overwrite_on_s3_parses_zarr_json(s3: S3Server, backend: str, document: str) -> None:
    """Objects under the prefix with a ``zarr.json`` that is not a zarr node stay."""
    notes = kv(s3, "mine.ome.zarr/")
    notes.write("zarr.json", document.encode()).result()
    notes.write("thesis.txt", b"irreplaceable").result()
    settings = series(f"s3://{BUCKET}/mine.ome.zarr", 1, format=backend, overwrite=True)
    with pytest.raises(FileExistsError, match="no zarr dataset; refusing"):
        async with open_stream(settings):
            pass
    assert sorted(notes.list().result()) == [b"thesis.txt", b"zarr.json"]
    assert notes.read("zarr.json").result().value == document.encode()
