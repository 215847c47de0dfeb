"""The library's logger, ``logging.getLogger("ome_stream")``; silent unless configured.

It tells the opening (resolved format and backend) and closing of each stream, the
drain progress at close, warnings and storage errors. Enable it with e.g.
``logging.basicConfig(level=logging.INFO)`` or a handler on the ``ome_stream`` logger.
"""

from __future__ import annotations

import logging

__all__ = ["logger"]

logger = logging.getLogger("ome_stream")
logger.addHandler(logging.NullHandler())
