"""The code's layout: edges as packages, no import cycle, dependencies pointing one way (README "Layout")."""

from __future__ import annotations

import grimp
import pytest

PACKAGES = ("tasks", "flows", "blocks")
# Each edge of the pipeline is a package; a package may import only those below it. Sources implement the
# lake's page contract; the warehouse loads what the lake curated; analytics reads the warehouse.
LAYERS = ("tasks.analytics", "tasks.runs", "tasks.warehouse", "tasks.sources", "tasks.lake")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(*PACKAGES, include_external_packages=False)


def test_every_edge_is_a_package(graph: grimp.ImportGraph) -> None:
    modules = graph.modules
    assert {m for m in modules if m.count(".") == 1 and m.startswith("tasks.")} >= set(LAYERS)
    flat = sorted(m for m in modules if m.count(".") == 1 and m.startswith("tasks.") and not graph.find_children(m))
    assert flat == ["tasks.schema"], f"modules outside an edge package: {flat}"


def test_no_import_cycle_among_project_modules(graph: grimp.ImportGraph) -> None:
    """Imports inside functions and under TYPE_CHECKING count too: a cycle hidden that way is still one."""
    cycles = sorted(
        " -> ".join((module, *chain))
        for module in graph.modules
        for imported in graph.find_modules_directly_imported_by(module)
        if (chain := graph.find_shortest_chain(importer=imported, imported=module))
    )
    assert cycles == []


def test_edges_depend_one_way(graph: grimp.ImportGraph) -> None:
    illegal = graph.find_illegal_dependencies_for_layers(layers=LAYERS, containers=set())
    assert not illegal, [f"{d.importer} -> {d.imported}: {d.routes}" for d in illegal]


def test_tasks_never_import_flows(graph: grimp.ImportGraph) -> None:
    assert [m for m in graph.modules if m.startswith("tasks") and graph.chain_exists(m, "flows.settings")] == []
