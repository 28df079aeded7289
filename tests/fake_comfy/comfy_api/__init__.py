"""Test stand-in for ComfyUI's comfy_api (see ../README.md)."""
