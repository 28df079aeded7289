"""The package layers of effres_core (docs/architecture.md): a package imports only from packages below it."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "effres_core"
#: Layer of each capability package; a module may import its own package and lower layers only.
LAYERS = {"model": 0, "synthesis": 0, "measure": 1, "gradient": 2, "evaluation": 2, "curate": 2, "integrations": 3,
          "cli": 4}


def imported_packages(path: Path, core: Path = CORE) -> set[str]:
    """The effres_core packages a module imports, from absolute and relative imports alike."""
    own = path.relative_to(core).parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(own[: len(own) - node.level + 1]) if node.level <= len(own) + 1 else []
                target = base + (node.module.split(".") if node.module else [])
                names = [".".join(["effres_core", *target, a.name]) if not node.module else ".".join(["effres_core", *target])
                         for a in node.names]
            else:
                names = [node.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "effres_core" and len(parts) > 1 and parts[1] in LAYERS:
                found.add(parts[1])
    return found


def core_modules():
    return sorted(p for p in CORE.rglob("*.py") if p.parent != CORE)


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: str(p.relative_to(CORE)))
def test_packages_import_only_lower_layers(path):
    package = path.relative_to(CORE).parts[0]
    for other in imported_packages(path) - {package}:
        assert LAYERS[other] < LAYERS[package], f"{path.relative_to(ROOT)} ({package}) imports {other}"


def test_the_rule_sees_relative_and_absolute_imports(tmp_path):
    fake = tmp_path / "effres_core" / "model" / "net.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("from ..measure.scorer import EffRes\nimport effres_core.gradient.losses\nfrom . import hub\n")
    assert imported_packages(fake, tmp_path / "effres_core") == {"measure", "gradient", "model"}


def test_nodes_never_import_train():
    for path in (ROOT / "nodes").rglob("*.py"):
        text = path.read_text()
        assert "import train" not in text and "from train" not in text and "..train" not in text, path
