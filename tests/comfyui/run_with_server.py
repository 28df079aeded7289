"""Run the e2e tool's ``run_workflow.py`` with a ComfyUI ``PromptServer`` object in place.

Impact Pack registers HTTP routes on ``PromptServer.instance`` when it is imported, which the
in-process tool (no server) does not create. This makes one (nothing listens) right before the
custom nodes load, then hands over to the tool unchanged.

    python run_with_server.py RUN_WORKFLOW_PY WORKFLOW_API.json [tool arguments...]
"""
import asyncio
import runpy
import sys

_run = asyncio.run


def _run_with_server(coro, *args, **kwargs):
    if getattr(coro, "__name__", "") == "init_extra_nodes":
        import server  # ComfyUI's, importable once the tool has set up its path and flags

        if getattr(server.PromptServer, "instance", None) is None:
            server.PromptServer(asyncio.new_event_loop())
    return _run(coro, *args, **kwargs)


if __name__ == "__main__":
    tool = sys.argv[1]
    sys.argv = [tool] + sys.argv[2:]
    asyncio.run = _run_with_server
    runpy.run_path(tool, run_name="__main__")
