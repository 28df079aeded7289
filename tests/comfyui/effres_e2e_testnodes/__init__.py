"""Test-only ComfyUI node for the Impact Pack e2e graph: a CLIP socket with nothing behind it.

Impact Pack's ``DetailerForEach`` requires a CLIP input but only uses it for wildcard prompts; the
tiny test model (``TinySDTestModel``) has no text encoder, so this node fills the socket. Never
part of the effres pack.
"""
from comfy_api.latest import ComfyExtension, io


class EffResTestNoCLIP(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(node_id="EffResTestNoCLIP", display_name="No CLIP (test only)", category="testing",
                         inputs=[], outputs=[io.Clip.Output()])

    @classmethod
    def execute(cls):
        return io.NodeOutput(None)


class _Extension(ComfyExtension):
    async def get_node_list(self):
        return [EffResTestNoCLIP]


async def comfy_entrypoint():
    return _Extension()
