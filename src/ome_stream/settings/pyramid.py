"""Multiscale (pyramid) levels written during the acquisition, for OME-Zarr."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from ome_stream.settings._base import SettingsModel

__all__ = ["Pyramid"]


class Pyramid(SettingsModel):
    """Multiscale levels written during the acquisition (OME-Zarr only).

    Each level halves y and x (and z, with ``downsample_z``) of the level before it.
    Give ``levels`` (the full resolution counts as one) or let ``min_size`` decide: levels
    are added until the larger of y and x is at most ``min_size``.

    Examples
    --------
    >>> Pyramid(levels=3, method="mean")
    Pyramid(levels=3, min_size=256, method='mean', downsample_z=False)

    """

    levels: PositiveInt | None = Field(
        default=None, description="Number of levels, full resolution included."
    )
    min_size: PositiveInt = Field(
        default=256, description="Without `levels`: add levels until y and x are this small."
    )
    method: Literal["mean", "max", "nearest"] = Field(
        default="mean", description="How 2x2 (x2) bins are reduced."
    )
    downsample_z: bool = Field(
        default=False, description="Also bin the 'z' dimension by 2 per level."
    )
