"""The package reads as the data flow: each stage imports only itself and the stages before it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "age_estimation"

# video -> aligned clip -> batch -> model -> (predictor) -> scoring -> training -> experiments / search
# -> export -> the main job -> benchmarks -> command line. The foundation modules import no stage (the
# config imports only its tables of keys and its value coercion).
STAGES = (
    ("config_keys",),
    ("config_values",),
    ("config", "atomic_files", "logs", "runs"),
    ("video",),
    ("data",),
    ("models",),
    ("inference",),
    ("evaluation",),
    ("training",),
    ("experiments", "tuning"),
    ("export",),
    ("workflow",),
    ("bench",),
    ("cli",),
)
RANK = {name: rank for rank, names in enumerate(STAGES) for name in names}


def module_imports() -> dict[str, set[str]]:
    """Module name -> the ``age_estimation`` modules it imports anywhere (function bodies included)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets.add(base)
        graph[name] = {t for t in targets if t.startswith("age_estimation.")}
    return graph


def stage(module: str) -> str:
    return module.split(".")[1]


def test_every_top_level_module_has_a_stage():
    names = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"} | {
        p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()
    }
    assert names == set(RANK), f"stages to place: {sorted(names - set(RANK))}; gone: {sorted(set(RANK) - names)}"


def test_imports_run_one_way():
    backwards = [
        f"{module} imports {target}"
        for module, targets in module_imports().items()
        if module != "age_estimation"
        for target in targets
        if RANK[stage(target)] > RANK[stage(module)]
        or (RANK[stage(target)] == RANK[stage(module)] and stage(target) != stage(module))
    ]
    assert not backwards, "\n".join(sorted(backwards))


def test_no_import_cycles_between_modules():
    graph = module_imports()
    cycles: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycles.append(path[path.index(module) :] + [module])
            return
        for target in sorted(graph.get(module, ())):
            if target in graph and not module.startswith(target + "."):
                visit(target, path + [module])

    for module in sorted(graph):
        visit(module, [])
        if cycles:
            break
    assert not cycles, " -> ".join(cycles[0])
