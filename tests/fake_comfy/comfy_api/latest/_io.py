"""The V3 schema classes our nodes touch, with the real keyword names; no validation, no UI."""

from __future__ import annotations


class Input:
    def __init__(self, id, display_name=None, optional=False, tooltip=None, lazy=None, default=None,
                 options=None, **extra):
        self.id, self.display_name, self.optional, self.tooltip = id, display_name, optional, tooltip
        self.default, self.options, self.extra = default, options, extra


class Output:
    def __init__(self, id=None, display_name=None, tooltip=None, is_output_list=False, **extra):
        self.id, self.display_name, self.tooltip, self.is_output_list = id, display_name, tooltip, is_output_list


def _comfytype(io_type: str, widget: bool = False):
    class ComboInput(Input):
        def __init__(self, id, options=None, **kwargs):
            super().__init__(id, options=options, **kwargs)

    cls = type(io_type.title(), (), {"io_type": io_type, "Output": Output,
                                     "Input": ComboInput if io_type == "COMBO" else Input})
    return cls


Boolean, Int, Float, String, Combo = (_comfytype(t) for t in ("BOOLEAN", "INT", "FLOAT", "STRING", "COMBO"))
Image, Mask, Latent, Model, Vae = (_comfytype(t) for t in ("IMAGE", "MASK", "LATENT", "MODEL", "VAE"))


def Custom(io_type: str):
    return _comfytype(io_type)


class Schema:
    def __init__(self, node_id, display_name=None, category="sd", inputs=None, outputs=None, hidden=None,
                 description="", is_output_node=False, is_experimental=False, **extra):
        self.node_id, self.display_name, self.category = node_id, display_name, category
        self.inputs, self.outputs, self.description = inputs or [], outputs or [], description
        self.is_output_node = is_output_node


class ComfyNode:
    @classmethod
    def define_schema(cls) -> Schema:
        raise NotImplementedError

    @classmethod
    def execute(cls, **kwargs):
        raise NotImplementedError


class NodeOutput:
    def __init__(self, *args, ui=None, expand=None, block_execution=None):
        self.args, self.ui, self.block_execution = args, ui, block_execution

    @property
    def result(self):
        return self.args if self.args else None

    def __getitem__(self, index):
        return self.args[index]
