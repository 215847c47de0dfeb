"""FrameRouter properties: every acquisition index lands in exactly one storage slot."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ome_stream import AcquisitionSettings, Dimension
from ome_stream.router import FrameRouter

NAMES = ["t", "c", "z", "q"]


@st.composite
def acquisitions(draw: st.DrawFn) -> tuple[AcquisitionSettings, list[int | None]]:
    n_index = draw(st.integers(0, 3))
    names = draw(st.permutations(NAMES))[:n_index]
    counts: list[int | None] = [draw(st.integers(1, 4)) for _ in names]
    unbounded = n_index > 0 and draw(st.booleans())
    if unbounded:
        counts[0] = None
    dims: list[Dimension] = [Dimension(name=n, count=c) for n, c in zip(names, counts, strict=True)]
    if draw(st.booleans()):
        n_pos = draw(st.integers(1, 3))
        at = draw(st.integers(1 if unbounded else 0, len(dims)))
        dims.insert(
            at, Dimension(name="p", type="position", coords=[f"p{i}" for i in range(n_pos)])
        )
    dims += [Dimension(name="y", count=2), Dimension(name="x", count=2)]
    index_names = [n for n in names]
    order_kind = draw(st.sampled_from(["ome", "acquisition", "list"]))
    order: str | list[str] = order_kind
    if order_kind == "list":
        perm = list(draw(st.permutations(index_names)))
        if unbounded and perm:  # the unbounded axis must stay first in storage
            perm.remove(index_names[0])
            perm.insert(0, index_names[0])
        order = perm
    fmt = draw(st.sampled_from(["a.ome.zarr", "a.ome.tiff"]))
    try:
        s = AcquisitionSettings(root_path=fmt, dimensions=dims, dtype="uint8", storage_order=order)  # type: ignore[arg-type]
    except ValueError:
        # 'ome' may move an unbounded axis away from the front; such settings are rejected
        return draw(acquisitions())
    return s, counts


@settings(max_examples=150, deadline=None)
@given(acquisitions())
def test_every_frame_has_exactly_one_slot(case: tuple[AcquisitionSettings, list[int | None]]):
    s, _ = case
    router = FrameRouter(s)
    storage_dims = s.storage_index_dimensions
    n_rows = 3  # frames of an unbounded acquisition: take 3 rows of the first axis
    total = s.num_frames if s.num_frames is not None else n_rows * router.frames_per_first_index
    seen = set()
    for frame in range(total):
        array, index = router.route(frame)
        assert 0 <= array < len(s.positions)
        assert len(index) == len(storage_dims)
        for i, dim in zip(index, storage_dims, strict=True):
            bound = dim.count if dim.count is not None else n_rows
            assert 0 <= i < bound
        seen.add((array, index))
    # injective, and onto the full grid of slots
    expected = len(s.positions) * math.prod(
        d.count if d.count is not None else n_rows for d in storage_dims
    )
    assert len(seen) == total == expected


def test_route_follows_acquisition_then_permutes() -> None:
    s = AcquisitionSettings(
        root_path="a.ome.zarr",
        dtype="uint8",
        dimensions=[
            Dimension(name="t", count=2),
            Dimension(name="p", type="position", coords=["a", "b"]),
            Dimension(name="z", count=4),
            Dimension(name="c", count=2),
            Dimension(name="y", count=2),
            Dimension(name="x", count=2),
        ],
    )
    router = FrameRouter(s)
    expected = [
        (p, (t, c, z)) for t, p, z, c in itertools.product(range(2), range(2), range(4), range(2))
    ]
    assert [router.route(i) for i in range(32)] == expected
    with pytest.raises(IndexError, match="frame 32 is outside the acquisition of 32 frames"):
        router.route(32)


def test_unbounded_keeps_counting() -> None:
    s = AcquisitionSettings(
        root_path="a.ome.zarr",
        dtype="uint8",
        dimensions=[
            Dimension(name="t", count=None, unit="s"),
            Dimension(name="c", count=4),
            Dimension(name="y", count=2),
            Dimension(name="x", count=2),
        ],
    )
    router = FrameRouter(s)
    assert router.route(10_001) == (0, (2500, 1))
    assert router.num_frames is None
