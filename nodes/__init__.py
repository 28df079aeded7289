"""The ComfyUI nodes of effres, one feature per module. Imported only inside ComfyUI (the root
``__init__`` checks for ``comfy_api`` first); the logic they call lives in ``effres_core``.

A node module that fails to import (say, an optional dependency is missing) is logged and left
out, so the other nodes still load.
"""

from __future__ import annotations

import importlib
import logging

logger = logging.getLogger("effres")

#: (module, class) of every node, in menu order.
NODES = (
    ("loader", "EffResLoader"),
    ("score", "EffResScore"),
    ("filter", "EffResFilter"),
    ("facemask", "EffResFaceMask"),
    ("enhance", "EffResEnhance"),
    ("guidance", "EffResGuidance"),
    ("segs", "EffResFaceSEGS"),
    ("segs", "EffResSEGSFilter"),
    ("bestof", "EffResBestOf"),
)


def node_classes() -> list[type]:
    """The node classes that import cleanly."""
    classes = []
    for module_name, class_name in NODES:
        try:
            module = importlib.import_module(f".{module_name}", __name__)
            classes.append(getattr(module, class_name))
        except Exception as err:  # one broken node must not take the others down
            logger.warning("effres: node %s is unavailable: %s: %s", class_name, type(err).__name__, err)
    return classes
