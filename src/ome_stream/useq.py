"""useq-schema integration (extra ``useq``): an MDA sequence becomes settings in one call.

``for event in sequence`` yields the frames of a ``useq.MDASequence`` in its ``axis_order``.
The dimensions built here follow that same order, so the ``n``-th image event of the
sequence is frame ``n`` of the stream: append one frame per event, as the events come.
Stage positions and grid points become one ``Dimension(type="position")`` (the ``p`` and
``g`` axes flattened, in visiting order); a well-plate plan also gives the
:class:`~ome_stream.Plate`. Names, scales and units are those of ome-writers 0.3.2; a
sequence whose frames cannot fill one rectangular array raises NotImplementedError.

useq-schema is imported only when one of these functions runs, so ``import ome_stream``
works without it.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypedDict

from ome_stream.settings import Channel, Dimension, Plate, Position, StandardAxis

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from types import ModuleType

__all__ = ["AcquisitionSettingsDict", "dims_from_useq", "useq_to_acquisition_settings"]


class AcquisitionSettingsDict(TypedDict):
    """What :func:`useq_to_acquisition_settings` returns: ``AcquisitionSettings`` fields."""

    dimensions: list[Dimension]
    plate: Plate | None


# The axes useq-schema iterates, in its default order.
_USEQ_AXES = ("t", "p", "g", "c", "z")
# Axes whose chunk/shard/unit options apply: the position axis is one image per position.
_ARRAY_AXES = ("t", "c", "z", "y", "x")


def _import_useq() -> ModuleType:
    try:
        import useq
    except ImportError:
        raise ImportError(
            "useq-schema is needed to read MDA sequences: pip install 'ome-stream[useq]'"
        ) from None
    return useq


def _axis(key: Any) -> str:
    # Event indices are keyed by useq's ``Axis`` (a str enum) or by plain strings.
    return str(getattr(key, "value", key))


@dataclass
class _Frames:
    """How the image events of a sequence fill one rectangular array per position."""

    order: list[str]
    """Acquisition axes, outermost first; ``p`` stands for the flattened (p, g) positions."""
    sizes: dict[str, int | None]
    """Size of each of t, c, z in ``order`` (None: unbounded time)."""
    positions: list[Position]
    channel_names: list[str]


@dataclass
class _Visit:
    """One position of the flattened (p, g) axis: stage point, grid point, coordinates."""

    point: Any
    p_index: int | None
    g_index: int | None
    cell: Any
    """The grid point (a useq position with grid_row/grid_col), or None."""
    x: float | None
    y: float | None
    z: float | None


def _as_sequence(sequence: Any, useq: ModuleType) -> Any:
    if isinstance(sequence, useq.MDASequence):
        return sequence
    if isinstance(sequence, dict):
        return useq.MDASequence.model_validate(sequence)
    raise TypeError(
        f"sequence must be a useq.MDASequence or a dict describing one, got "
        f"{type(sequence).__name__}"
    )


def _merge_positions(axes: list[str]) -> list[str]:
    """Replace the p and g axes by one position axis ``p`` where the first of them is."""
    if "p" in axes and "g" in axes and abs(axes.index("p") - axes.index("g")) != 1:
        raise NotImplementedError(
            f"Cannot handle axis_order={''.join(axes)!r} with non-adjacent position and grid "
            "axes: positions (p) and grid points (g) become one position dimension (one "
            "image per position and grid point), so they must be adjacent, e.g. 'tpgcz'"
        )
    merged: list[str] = []
    for axis in axes:
        if axis in ("p", "g"):
            if "p" not in merged:
                merged.append("p")
        else:
            merged.append(axis)
    return merged


def _has_axes(sequence: Any) -> bool:
    """Whether a position's sub-sequence iterates anything (and so changes the layout)."""
    return sequence is not None and bool(
        sequence.time_plan is not None
        or sequence.stage_positions
        or sequence.z_plan is not None
        or sequence.channels
        or sequence.grid_plan is not None
    )


def _stage_points(sequence: Any) -> list[Any]:
    # A WellPlatePlan iterates its image positions (wells x fields), like a list does.
    return list(sequence.stage_positions)


def _check_channels(sequence: Any, sizes: Mapping[str, int]) -> None:
    """Reject channels that skip frames: they make the array ragged."""
    for channel in sequence.channels:
        if channel.acquire_every > 1 and sizes.get("t", 0) > 1:
            raise NotImplementedError(
                "Sequences with Channel.acquire_every > 1 are not supported: channel "
                f"{channel.config!r} has acquire_every={channel.acquire_every}: it "
                "skips time points, so the channels have different numbers of time points "
                "and cannot share one rectangular array; acquire every channel at every "
                "time point, or write that channel as its own stream"
            )
        if not channel.do_stack and sizes.get("z", 0) > 1:
            raise NotImplementedError(
                "Sequences with Channel.do_stack=False values are not supported: channel "
                f"{channel.config!r} has do_stack=False: it takes one plane where "
                f"the other channels take {sizes['z']}, so they cannot share one "
                "rectangular array; use do_stack=True, or write that channel as its own "
                "stream"
            )


def _frames_from_plans(sequence: Any, useq: ModuleType) -> _Frames:
    """The layout of a sequence without sub-sequences: the plain product of its plans."""
    sizes = {_axis(k): v for k, v in sequence.sizes.items()}
    used = [_axis(a) for a in sequence.axis_order if sizes.get(_axis(a), 0) > 0]
    order = _merge_positions(used)
    points: list[Any] = _stage_points(sequence) if "p" in used else [None]
    if "p" not in used and "g" in used and len(_stage_points(sequence)) == 1:
        # one stage position, not iterated: the grid is laid around it (and named after it)
        points = _stage_points(sequence)
    cells: list[Any] = list(sequence.iter_axis("g")) if "g" in used else [None]
    pairs = [(p, g) for p in range(len(points)) for g in range(len(cells))]
    if "g" in used and "p" in used and used.index("g") < used.index("p"):
        # grid points outside positions: every position is visited at grid point 0 first
        pairs.sort(key=lambda pair: (pair[1], pair[0]))
    visits = []
    for p, g in pairs:
        point, cell = points[p], cells[g]
        # useq moves to a stage position only when it iterates p (events say where)
        x, y = _grid_xy(point if "p" in used else None, cell)
        visits.append(
            _Visit(
                point=point,
                p_index=p if "p" in used else None,
                g_index=g if "g" in used else None,
                cell=cell,
                x=x,
                y=y,
                z=getattr(point, "z", None),
            )
        )
    plan = sequence.stage_positions
    plate = plan if isinstance(plan, useq.WellPlatePlan) else None
    grid_first = "g" in used and "p" in used and used.index("g") < used.index("p")
    return _Frames(
        order=order,
        sizes={a: sizes[a] for a in order if a != "p"},
        positions=_positions(visits, plate, grid_first=grid_first) if "p" in order else [],
        channel_names=[c.config for c in sequence.channels] if "c" in used else [],
    )


def _grid_xy(point: Any, cell: Any) -> tuple[float | None, float | None]:
    """Stage x/y of a grid point at a stage point, as useq-schema computes it for events."""
    if cell is None:
        return getattr(point, "x", None), getattr(point, "y", None)
    if not cell.is_relative:
        return cell.x, cell.y
    return cell.x + (getattr(point, "x", None) or 0.0), cell.y + (getattr(point, "y", None) or 0.0)


def _frames_from_events(sequence: Any, useq: ModuleType) -> _Frames:
    """The layout of a sequence with sub-sequences, read from (and checked against) its events.

    Sub-sequences can change the shape per position and the visiting order, so the events
    themselves are the only reliable description; each is checked against the layout.
    """
    events = [e for e in sequence if isinstance(e.action, useq.AcquireImage)]
    indices = [{_axis(k): int(v) for k, v in e.index.items()} for e in events]
    if not events:
        raise ValueError("the sequence has no image events: there is nothing to store")
    present = set().union(*indices)
    axis_order = [_axis(a) for a in sequence.axis_order]
    axis_order += [a for a in _USEQ_AXES if a not in axis_order]
    used = [a for a in axis_order if a in present]
    order = _merge_positions(used)
    position_axes = [a for a in used if a in ("p", "g")]
    keys = [tuple(index.get(a, 0) for a in position_axes) for index in indices]
    # A rectangular layout visits positions in (outer, inner) order, so sorting the keys
    # gives the position axis; the order check below rejects sequences that do otherwise.
    position_of = {key: number for number, key in enumerate(sorted(set(keys)))}
    _check_same_shape(sequence, indices, keys, position_axes, [a for a in order if a != "p"])
    sizes = {a: 1 + max(index.get(a, 0) for index in indices) for a in order if a != "p"}
    counts = [len(position_of) if a == "p" else sizes[a] for a in order]
    total = math.prod(counts)
    if total != len(events):
        raise NotImplementedError(
            f"the sequence has {len(events)} image events, but its axes "
            f"{dict(zip(order, counts, strict=True))} make {total}: its frames do not fill "
            "one rectangular array"
        )
    for number, (index, key) in enumerate(zip(indices, keys, strict=True)):
        got = tuple(position_of[key] if a == "p" else index.get(a, 0) for a in order)
        expected = _unravel(number, counts)
        if got != expected:
            raise NotImplementedError(
                f"image event {number} (index {index}) comes out of order: a rectangular "
                f"{''.join(order)} layout of sizes {counts} expects "
                f"{dict(zip(order, expected, strict=True))} there. This happens when a "
                "position's sub-sequence iterates inside axes of the outer sequence (e.g. a "
                "sub-sequence grid_plan under outer channels or z); put those axes in the "
                "sub-sequence too, or write the positions as separate streams"
            )
    channel_names = _event_channel_names(events, indices) if "c" in order else []
    positions: list[Position] = []
    if "p" in order:
        points = _stage_points(sequence)
        first_event: dict[tuple[int, ...], tuple[Any, dict[str, int]]] = {}
        for event, key, index in zip(events, keys, indices, strict=True):
            first_event.setdefault(key, (event, index))
        visits = []
        for key in sorted(first_event):
            event, index = first_event[key]
            p_index = index.get("p") if "p" in used else None
            point = points[p_index] if p_index is not None else None
            g_index = index.get("g") if "g" in used else None
            visits.append(
                _Visit(
                    point=point,
                    p_index=p_index,
                    g_index=g_index,
                    cell=_grid_cell(sequence, point, g_index),
                    x=event.x_pos,
                    y=event.y_pos,
                    z=getattr(point, "z", None),
                )
            )
        grid_first = "g" in position_axes and position_axes[0] == "g"
        positions = _positions(visits, None, grid_first=grid_first)
    return _Frames(order=order, sizes=dict(sizes), positions=positions, channel_names=channel_names)


def _unravel(number: int, counts: list[int]) -> tuple[int, ...]:
    index = []
    for count in reversed(counts):
        number, rest = divmod(number, count)
        index.append(rest)
    return tuple(reversed(index))


def _check_same_shape(
    sequence: Any,
    indices: list[dict[str, int]],
    keys: list[tuple[int, ...]],
    position_axes: list[str],
    axes: list[str],
) -> None:
    """Raise if positions (e.g. through their sub-sequences) differ in t/c/z sizes."""
    shapes: dict[tuple[int, ...], dict[str, int]] = {}
    for index, key in zip(indices, keys, strict=True):
        shape = shapes.setdefault(key, dict.fromkeys(axes, 0))
        for axis in axes:
            shape[axis] = max(shape[axis], index.get(axis, -1) + 1)
    distinct = {tuple(shape.items()): key for key, shape in shapes.items()}
    if len(distinct) > 1:
        (shape_a, key_a), (shape_b, key_b) = list(distinct.items())[:2]
        raise NotImplementedError(
            "Ragged dimensions detected: positions differ in shape, so they cannot share one "
            f"rectangular layout: "
            f"{_describe(sequence, position_axes, key_a)} has {_sizes_text(shape_a)} but "
            f"{_describe(sequence, position_axes, key_b)} has {_sizes_text(shape_b)} "
            "(per-position sub-sequences must give every position the same t, c and z "
            "sizes); write such positions as separate streams"
        )


def _describe(sequence: Any, position_axes: list[str], key: tuple[int, ...]) -> str:
    where = ", ".join(f"{axis}={value}" for axis, value in zip(position_axes, key, strict=True))
    name = None
    if "p" in position_axes:
        name = list(sequence.stage_positions)[key[position_axes.index("p")]].name
    return f"position {where}" + (f" ({name!r})" if name else "")


def _sizes_text(shape: tuple[tuple[str, int], ...]) -> str:
    parts = [f"{axis}={size}" for axis, size in shape if size]
    return ", ".join(parts) if parts else "one frame"


def _event_channel_names(events: list[Any], indices: list[dict[str, int]]) -> list[str]:
    names: dict[int, str] = {}
    for event, index in zip(events, indices, strict=True):
        c = index.get("c", 0)
        name = event.channel.config if event.channel is not None else f"c{c}"
        if names.setdefault(c, name) != name:
            raise NotImplementedError(
                f"channel {c} is {names[c]!r} at some positions and {name!r} at others: "
                "one channel axis needs the same channel at every position"
            )
    return [names[c] for c in sorted(names)]


def _grid_cell(sequence: Any, point: Any, g_index: int | None) -> Any:
    """The grid point ``g_index`` of ``point`` (its sub-sequence grid, else the global one)."""
    if g_index is None:
        return None
    sub = getattr(point, "sequence", None)
    grid = sub.grid_plan if sub is not None and sub.grid_plan is not None else sequence.grid_plan
    return list(grid)[g_index] if grid is not None else None


def _plate_names(point: Any) -> tuple[str | None, str | None]:
    """A useq position's well (0-based plate_row/plate_col) as row and column names."""
    row, column = getattr(point, "plate_row", None), getattr(point, "plate_col", None)
    if row is not None and column is not None:
        return _row_name(row), str(column + 1)
    if (row is None) != (column is None):
        warnings.warn(
            f"Position {point.name!r} has plate_row={row} but plate_col={column}. Both must "
            "be set. Ignoring plate info.",
            UserWarning,
            stacklevel=4,
        )
    return None, None


def _positions(visits: list[_Visit], plate: Any, *, grid_first: bool) -> list[Position]:
    """The positions of the flattened (p, g) axis, named as ome-writers names them.

    A stage position keeps its name (or its index); a grid point without stage positions
    is named by its index (``0000``); a grid point without row/column (random points) adds
    ``_g0000`` (``_p0000_g0000`` with several stage positions); a well-plate field is
    ``fov<n>``. Names ome-writers would repeat within one (well, grid cell) group, which it
    rejects, get ``_1``, ``_2``, ... here.
    """
    n_points = len({v.p_index for v in visits if v.p_index is not None})
    fields = [None]
    if plate is not None:
        wpp = plate.well_points_plan
        fields = [wpp] if not hasattr(wpp, "__iter__") else list(wpp)
    positions = []
    seen: set[tuple[Any, ...]] = set()
    for number, visit in enumerate(visits):
        point, cell = visit.point, visit.cell
        if plate is not None:
            cell = fields[number % len(fields)]
            name = f"fov{number % len(fields)}"
        elif point is None:
            name = f"{visit.g_index or 0:04d}"
        else:
            name = point.name or str(visit.p_index or 0)
            if cell is not None and cell.grid_row is None and cell.grid_col is None:
                if grid_first or n_points <= 1:
                    name = f"{name}_g{visit.g_index:04d}"
                else:
                    name = f"{name}_p{visit.p_index:04d}_g{visit.g_index:04d}"
        row, column = _plate_names(point)
        source = cell if cell is not None else point
        grid_row = getattr(source, "grid_row", None)
        grid_column = getattr(source, "grid_col", None)
        unique, repeat = name, 1
        while (row, column, grid_row, grid_column, unique) in seen:
            unique, repeat = f"{name}_{repeat}", repeat + 1
        seen.add((row, column, grid_row, grid_column, unique))
        positions.append(
            Position(
                name=unique,
                plate_row=row,
                plate_column=column,
                grid_row=grid_row,
                grid_column=grid_column,
                x_coord=visit.x,
                y_coord=visit.y,
                z_coord=None if plate is not None else visit.z,
            )
        )
    return positions


def _row_name(index: int) -> str:
    """Plate row name as useq-schema spells it: A..Z, then AA, AB, ..."""
    name = ""
    while index >= 0:
        name = chr(ord("A") + index % 26) + name
        index = index // 26 - 1
    return name


def _only(values: Iterable[float | None]) -> float | None:
    """The single positive value, or None when there is none or they disagree."""
    distinct = {v for v in values if v is not None}
    if len(distinct) != 1:
        return None
    value = distinct.pop()
    return value if value > 0 else None


def _interval_seconds(plan: Any) -> float | None:
    """Time between time points; None when the plan has no single interval."""
    values = []
    for phase in getattr(plan, "phases", None) or [plan]:
        try:
            values.append(phase.interval.total_seconds())
        except ZeroDivisionError:
            # A duration plan of one loop has no interval (useq divides by loops - 1).
            continue
    return _only(values)


def _z_step(plan: Any) -> float | None:
    """Distance between z planes in micrometers; None when they are not evenly spaced."""
    step = getattr(plan, "step", None)
    if step:
        return abs(float(step))
    planes = [float(z) for z in plan]
    if len(planes) < 2:
        return None
    steps = [b - a for a, b in itertools.pairwise(planes)]
    if all(math.isclose(s, steps[0], rel_tol=1e-9, abs_tol=1e-12) for s in steps):
        return abs(steps[0]) or None
    return None


def _layout(sequence: Any, useq: ModuleType) -> tuple[_Frames, list[Any]]:
    """The frames layout, and the sequences whose plans describe the axes."""
    plan = sequence.stage_positions
    if isinstance(plan, useq.WellPlatePlan) and sequence.grid_plan is not None:
        raise NotImplementedError(
            "WellPlatePlan with grid_plan is not supported. Use well_points_plan on the "
            "WellPlatePlan instead."
        )
    try:
        sizes = {_axis(k): v for k, v in sequence.sizes.items()}
    except ZeroDivisionError:
        # an unbounded time plan (a duration with interval 0): time becomes count=None
        return _unbounded_layout(sequence, useq), [sequence]
    _check_channels(sequence, sizes)
    subs = []
    if not isinstance(plan, useq.WellPlatePlan):
        subs = [p.sequence for p in plan if _has_axes(p.sequence)]
    for sub in subs:
        _check_channels(sub, {_axis(k): v for k, v in sub.sizes.items()})
    if subs:
        frames = _frames_from_events(sequence, useq)
    else:
        frames = _frames_from_plans(sequence, useq)
        if not frames.order:
            raise ValueError("the sequence has no image events: there is nothing to store")
    return frames, [sequence, *subs]


def _unbounded_layout(sequence: Any, useq: ModuleType) -> _Frames:
    """The layout of a sequence whose time plan never ends: time is the unbounded axis."""
    if any(_has_axes(p.sequence) for p in _stage_points(sequence)):
        raise NotImplementedError(
            "An unbounded time plan with position sub-sequences is not supported: the "
            "layout of such a sequence can only be read from its (endless) events"
        )
    frames = _frames_from_plans(sequence.model_copy(update={"time_plan": None}), useq)
    present = {*frames.order, "t"}
    if "p" in present:
        present.add("g")
    axes = [_axis(a) for a in sequence.axis_order if _axis(a) in present]
    frames.order = [a for a in _merge_positions(axes) if a == "t" or a in frames.order]
    frames.sizes["t"] = None
    return frames


def _scale_unit(
    axis: str,
    plans: list[Any],
    pixel_size_um: float | None,
    units: Mapping[str, tuple[float, str] | None],
) -> tuple[float | None, str | None]:
    """Scale and unit of ``axis`` as ome-writers gives them, with better-known values.

    ome-writers gives t, c and z a scale of 1 (t in seconds, z in micrometers) unless the
    time plan's interval or the z plan's step says otherwise, and x/y the pixel size in
    micrometers. Here a multi-phase time plan with one common interval and evenly spaced
    z positions give their interval and step too.
    """
    override = units.get(axis)
    if override:
        return override
    if axis in ("y", "x"):
        if pixel_size_um is not None and pixel_size_um <= 0:
            warnings.warn(
                f"Invalid pixel_size_um={pixel_size_um}. Must be positive. Ignoring pixel size.",
                UserWarning,
                stacklevel=4,
            )
            pixel_size_um = None
        return pixel_size_um or None, "micrometer"
    if axis == "t":
        time_plans = [s.time_plan for s in plans if s.time_plan is not None]
        return _only(_interval_seconds(p) for p in time_plans) or 1.0, "second"
    if axis == "z":
        z_plans = [s.z_plan for s in plans if s.z_plan is not None]
        return _only(_z_step(p) for p in z_plans) or 1.0, "micrometer"
    return 1.0, None


def _dims(
    sequence: Any,
    image_width: int,
    image_height: int,
    *,
    units: Mapping[str, tuple[float, str] | None] | None,
    pixel_size_um: float | None,
    chunk_shapes: Mapping[str, int] | None,
    shard_shapes: Mapping[str, int] | None,
) -> list[Dimension]:
    useq = _import_useq()
    sequence = _as_sequence(sequence, useq)
    options = {"chunk_shapes": chunk_shapes, "shard_shapes": shard_shapes, "units": units}
    for option, mapping in options.items():
        unknown = sorted(set(mapping or {}) - set(_ARRAY_AXES))
        if unknown:
            raise ValueError(
                f"{option}: unknown axis names {unknown}; use {list(_ARRAY_AXES)} (positions "
                "are separate images, so they have no chunk, shard or unit)"
            )
    frames, plans = _layout(sequence, useq)
    chunks = dict(chunk_shapes or {})
    shards = dict(shard_shapes or {})
    counts: dict[str, int | None] = {**frames.sizes, "y": image_height, "x": image_width}
    dims = []
    for axis in [*frames.order, "y", "x"]:
        if axis == "p":
            dims.append(StandardAxis.POSITION.to_dimension(coords=frames.positions))
            continue
        scale, unit = _scale_unit(axis, plans, pixel_size_um, units or {})
        dim = StandardAxis(axis).to_dimension(
            count=counts[axis],
            chunk_size=chunks.get(axis),
            shard_size_chunks=shards.get(axis),
            scale=scale,
        )
        if unit != dim.unit:
            dim.unit = unit
        if axis == "c":
            dim.coords = [Channel(name=n) for n in frames.channel_names]
        dims.append(dim)
    return dims


def dims_from_useq(
    seq: Any,
    image_width: int,
    image_height: int,
    *,
    units: Mapping[str, tuple[float, str] | None] | None = None,
    pixel_size_um: float | None = None,
    chunk_shapes: Mapping[str, int] | None = None,
    shard_shapes: Mapping[str, int] | None = None,
) -> list[Dimension]:
    """Deprecated: ``useq_to_acquisition_settings(...)["dimensions"]``.

    Emits a DeprecationWarning; the parameters are those of
    :func:`useq_to_acquisition_settings`.
    """
    warnings.warn(
        "`dims_from_useq` is deprecated and will be removed in a future version. Use "
        "`useq_to_acquisition_settings` instead: dimensions can be obtained from the "
        "returned dictionary.",
        DeprecationWarning,
        stacklevel=2,
    )
    return _dims(
        seq,
        image_width,
        image_height,
        units=units,
        pixel_size_um=pixel_size_um,
        chunk_shapes=chunk_shapes,
        shard_shapes=shard_shapes,
    )


def useq_to_acquisition_settings(
    seq: Any,
    image_width: int,
    image_height: int,
    *,
    units: Mapping[str, tuple[float, str] | None] | None = None,
    pixel_size_um: float | None = None,
    chunk_shapes: Mapping[str, int] | None = None,
    shard_shapes: Mapping[str, int] | None = None,
) -> AcquisitionSettingsDict:
    """The ``dimensions`` and ``plate`` of an MDA sequence, for ``AcquisitionSettings``.

    Frame ``n`` of a stream with these settings is the ``n``-th event of
    ``for event in seq`` whose action is ``useq.AcquireImage`` (autofocus events carry
    no frame): append one frame per image event, in order.

    Parameters
    ----------
    seq
        A ``useq.MDASequence``, or a dict that validates as one.
    image_width, image_height
        Frame size in pixels.
    units
        ``(scale, unit)`` by axis name (``t``, ``c``, ``z``, ``y``, ``x``), replacing what
        the sequence says, e.g. ``{"t": (0.5, "second")}``.
    pixel_size_um
        Pixel size in micrometers: the x/y scale.
    chunk_shapes
        Elements per chunk by axis name; default whole frames and 1 along the others.
    shard_shapes
        Chunks per shard by axis name (zarr v3 sharding).

    Returns
    -------
    dict
        ``dimensions``: t (time plan; scale = interval in seconds; ``count=None`` for a
        plan that never ends), c (``Channel(name=config)``), z (scale = step in
        micrometers) and the positions (stage positions x grid points, or the fields of
        a well-plate plan, as one ``type="position"`` dimension) in the sequence's
        ``axis_order``, then y and x; unused axes are left out. ``plate``: the
        :class:`~ome_stream.Plate` of a well-plate plan (or of the wells the positions
        name), else None.

    Raises
    ------
    ImportError
        useq-schema is not installed.
    NotImplementedError
        The frames cannot fill one rectangular array per position: ``p`` and ``g`` not
        adjacent in ``axis_order``, channels with ``acquire_every > 1`` or
        ``do_stack=False`` that skip frames, a well-plate plan with a ``grid_plan``,
        positions whose sub-sequences differ in shape or visit frames in another order.
    ValueError
        An unknown axis name in ``chunk_shapes``/``shard_shapes``/``units``, or a
        sequence without image events.

    Examples
    --------
    >>> import useq  # doctest: +SKIP
    >>> seq = useq.MDASequence(channels=["DAPI", "FITC"], z_plan={"range": 4, "step": 1})
    >>> settings = AcquisitionSettings(  # doctest: +SKIP
    ...     root_path="mda.ome.zarr", dtype="uint16",
    ...     **useq_to_acquisition_settings(seq, image_width=512, image_height=512),
    ... )
    >>> settings.num_frames  # doctest: +SKIP
    10

    """
    dims = _dims(
        seq,
        image_width,
        image_height,
        units=units,
        pixel_size_um=pixel_size_um,
        chunk_shapes=chunk_shapes,
        shard_shapes=shard_shapes,
    )
    return {"dimensions": dims, "plate": _plate(_as_sequence(seq, _import_useq()))}


def _plate(sequence: Any) -> Plate | None:
    """The plate of a well-plate plan, or the smallest plate holding the wells named."""
    plan = sequence.stage_positions
    if hasattr(plan, "plate") and hasattr(plan, "well_points_plan"):
        return Plate(
            name=plan.plate.name or None,
            row_names=[_row_name(i) for i in range(plan.plate.rows)],
            column_names=[str(i + 1) for i in range(plan.plate.columns)],
        )
    wells = [
        (p.plate_row, p.plate_col)
        for p in plan
        if getattr(p, "plate_row", None) is not None and getattr(p, "plate_col", None) is not None
    ]
    if not wells:
        return None
    return Plate(
        row_names=[_row_name(i) for i in range(max(r for r, _ in wells) + 1)],
        column_names=[str(i + 1) for i in range(max(c for _, c in wells) + 1)],
    )
