"""The example workflows: every API-format graph (``workflows/api``) has a UI-format twin
(``workflows``) with the same nodes, links and widget values, and our nodes' inputs in both
match the node schemas."""

import json
from pathlib import Path

import pytest

from nodes_support import ROOT, pack

UI_DIR = ROOT / "workflows"
API_DIR = UI_DIR / "api"
API_FILES = sorted(API_DIR.glob("*.json"))
#: Widgets that store one more value after their own in UI format (the frontend's
#: "control after generate" and upload extras).
EXTRA_VALUE = {("KSampler", "seed"), ("KSamplerAdvanced", "noise_seed"), ("LoadImage", "image")}


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def ui_widget_values(node: dict) -> dict:
    """``{widget name: value}`` of a UI-format node, from ``widgets_values`` and its widget inputs."""
    names = [i["name"] for i in node.get("inputs", []) if "widget" in i]
    values = list(node.get("widgets_values") or [])
    out, k = {}, 0
    for name in names:
        out[name] = values[k]
        k += 1
        if (node["type"], name) in EXTRA_VALUE:
            k += 1
    assert k == len(values), f"node {node['id']} ({node['type']}): {len(values)} widget values for {names}"
    return out


def ui_graph(ui: dict):
    nodes = {str(n["id"]): n for n in ui["nodes"]}
    links = set()
    for link_id, src, src_slot, dst, dst_slot, _type in ui["links"]:
        links.add((str(src), src_slot, str(dst), nodes[str(dst)]["inputs"][dst_slot]["name"]))
    widgets = {}
    for nid, node in nodes.items():
        linked = {i["name"] for i in node.get("inputs", []) if i.get("link") is not None}
        widgets[nid] = {k: v for k, v in ui_widget_values(node).items() if k not in linked}
    return {nid: n["type"] for nid, n in nodes.items()}, links, widgets


def api_graph(api: dict):
    links, widgets = set(), {}
    for nid, node in api.items():
        widgets[nid] = {}
        for name, value in node["inputs"].items():
            if isinstance(value, list):
                links.add((str(value[0]), value[1], nid, name))
            else:
                widgets[nid][name] = value
    return {nid: n["class_type"] for nid, n in api.items()}, links, widgets


def test_every_api_workflow_has_a_ui_twin():
    assert {p.name for p in API_FILES} == {p.name for p in UI_DIR.glob("*.json")}
    assert {"score_and_filter.json", "guidance.json", "enhance.json"} <= {p.name for p in API_FILES}


@pytest.mark.parametrize("api_path", API_FILES, ids=lambda p: p.stem)
def test_ui_and_api_formats_agree(api_path):
    api_types, api_links, api_widgets = api_graph(load(api_path))
    ui = load(UI_DIR / api_path.name)
    ui_types, ui_links, ui_widgets = ui_graph(ui)
    assert ui_types == api_types
    assert ui_links == api_links
    assert ui_widgets == api_widgets
    for node in ui["nodes"]:  # the UI's own bookkeeping is consistent too
        for slot, out in enumerate(node.get("outputs", [])):
            for link_id in out.get("links") or []:
                link = next(lk for lk in ui["links"] if lk[0] == link_id)
                assert (link[1], link[2]) == (node["id"], slot)
    assert ui["last_link_id"] == max((lk[0] for lk in ui["links"]), default=0)


@pytest.fixture(scope="module")
def schemas():
    with pack("effres_pack_workflows", fake_comfy=True) as module:
        yield {cls.define_schema().node_id: cls.define_schema() for cls in module.nodes.node_classes()}


@pytest.mark.parametrize("api_path", API_FILES, ids=lambda p: p.stem)
def test_our_nodes_match_their_schemas(api_path, schemas):
    ui_nodes = {str(n["id"]): n for n in load(UI_DIR / api_path.name)["nodes"]}
    for nid, node in load(api_path).items():
        if not node["class_type"].startswith("EffRes"):
            continue
        schema = schemas[node["class_type"]]
        ids = [i.id for i in schema.inputs]
        required = {i.id for i in schema.inputs if not i.optional}
        assert set(node["inputs"]) <= set(ids), f"{nid}: unknown inputs {set(node['inputs']) - set(ids)}"
        assert required <= set(node["inputs"]), f"{nid}: missing inputs {required - set(node['inputs'])}"
        ui_names = [i["name"] for i in ui_nodes[nid]["inputs"]]
        # the frontend lists required inputs first, then optional ones, each in schema order
        order = [i.id for i in schema.inputs if not i.optional] + [i.id for i in schema.inputs if i.optional]
        assert ui_names == [i for i in order if i in ui_names], f"{nid}: UI inputs out of schema order"
        for item in schema.inputs:  # widget values are among the allowed options
            value = node["inputs"].get(item.id)
            if getattr(item, "options", None) and isinstance(value, str) and item.id != "weights":
                assert value in item.options, f"{nid}.{item.id} = {value!r}"


def test_every_node_is_in_a_shipped_workflow(schemas):
    """So the e2e run of the shipped graphs registers and executes every node in a real ComfyUI."""
    used = {node["class_type"] for path in API_FILES for node in load(path).values()}
    assert set(schemas) <= used, f"nodes in no shipped workflow: {set(schemas) - used}"
