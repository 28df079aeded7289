"""Test stand-in for ComfyUI's comfy_execution (see ../README.md)."""
