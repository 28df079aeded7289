"""effres as a ComfyUI custom node pack (drop this repository into ``ComfyUI/custom_nodes/``).

ComfyUI is imported only here and in ``nodes/``, and only when it is present: without it this file
exports nothing, so ``effres_core`` and ``train/`` work on their own.
"""

try:
    from comfy_api.latest import ComfyExtension
except ImportError:  # not running inside ComfyUI
    ComfyExtension = None

__all__ = []

if ComfyExtension is not None:
    from .nodes import node_classes

    class EffResExtension(ComfyExtension):
        async def get_node_list(self) -> list:
            return node_classes()

    async def comfy_entrypoint() -> EffResExtension:
        """ComfyUI's V3 entry point (called once, when ComfyUI loads the pack)."""
        from .nodes.examples import install_example_inputs

        install_example_inputs()  # the images the shipped workflows load, into ComfyUI's input folder
        return EffResExtension()

    __all__ = ["comfy_entrypoint"]
