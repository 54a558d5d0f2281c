"""The layout holds (docs/ARCHITECTURE.md): nothing in transforms/ or scoring/ imports pipeline/, pure modules
never load Beam, and the modules the read-only commands load stay Beam-free."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("pipeline", "transforms", "scoring")
# The Beam stages: every other module under transforms/ is pure (plain data in, plain data out).
BEAM_MODULES = {
    "transforms.generate", "transforms.gather", "transforms.input.read", "transforms.input.join",
    "transforms.splits.assign", "transforms.splits.shared_ground", "transforms.output.counts",
    "transforms.output.files", "transforms.output.spool", "transforms.output.split_files", "transforms.mix.stages",
    "transforms.rebuild.place", "transforms.rebuild.take",
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def _imports(path: Path, top_level_only: bool) -> set[str]:
    """Modules a file imports: at module level only (what loading it loads), or anywhere."""
    tree = ast.parse(path.read_text(), str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def _loads(name: str, modules: dict[str, Path], seen: set[str] | None = None) -> set[str]:
    """Every module loading ``name`` loads, ours and others' (the parents of a package module included)."""
    seen = set() if seen is None else seen
    if name in seen or name not in modules:
        return seen
    seen.add(name)
    parts = name.split(".")
    for i in range(1, len(parts)):
        _loads(".".join(parts[:i]), modules, seen)
    for imported in _imports(modules[name], top_level_only=True):
        if imported in modules:
            _loads(imported, modules, seen)
        else:
            seen.add(imported)
    return seen


def test_nothing_below_the_commands_imports_pipeline():
    modules = _modules()
    upward = {name: sorted(i for i in _imports(path, top_level_only=False) if i.split(".")[0] == "pipeline")
              for name, path in modules.items() if name.split(".")[0] in ("transforms", "scoring")}
    assert not {k: v for k, v in upward.items() if v}


def test_pure_modules_never_load_beam():
    modules = _modules()
    loading_beam = {name for name in modules if name.startswith("transforms")
                    and any(m.split(".")[0] == "apache_beam" for m in _loads(name, modules))}
    assert loading_beam == BEAM_MODULES
    assert not any(m.split(".")[0] == "apache_beam" for name in modules if name.startswith("scoring")
                   for m in _loads(name, modules))


def test_read_only_commands_and_the_cli_stay_beam_free():
    modules = _modules()
    for name in ("pipeline.cli", "pipeline.runner", "pipeline.mix.config", "pipeline.mix.recipe",
                 *(m for m in modules if m.split(".")[1:2] in (["publish"], ["review"], ["sample"]))):
        beam = sorted(m for m in _loads(name, modules) if m.split(".")[0] == "apache_beam")
        assert not beam, (name, beam[:3])
