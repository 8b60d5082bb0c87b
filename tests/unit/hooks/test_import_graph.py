# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""No import cycle in the house: every import of one of our modules by
another, at module level or inside a function, read from the sources
(nothing is imported here), and no chain of them leads back to where it
started."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
PACKAGES = ("accel_inventory", "libvirt_hooks", "nova_accel_weigher",
            "nova_accel_compute", "accel_defrag")


def modules() -> dict[str, str]:
    found = {}
    for package in PACKAGES:
        for directory, _dirs, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(directory, name)
                    dotted = os.path.relpath(path, ROOT)[:-3].replace(
                        os.sep, ".")
                    found[dotted.removesuffix(".__init__")] = path
    return found


def imports_of(path: str, known: set[str]) -> set[str]:
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and \
                not node.level:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                targets.add(sub if sub in known else node.module)
    return {t for t in targets if t in known}


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports_of(path, known) - {name}
            for name, path in found.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, result = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return result


def test_the_finder_sees_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [
        ["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_holds_function_level_imports():
    edges = graph()
    # launch() imports subprocess inside the function; the worker is
    # named by its module path only: what the graph must see is ours.
    assert "libvirt_hooks.common" in edges["libvirt_hooks.trigger"]
    assert "accel_inventory.settings" in edges["libvirt_hooks.common"]


def test_no_import_cycle():
    assert cycles(graph()) == []


def test_the_inventory_imports_nothing_of_the_hook_or_the_scheduler():
    """The hook depends on the inventory, never the reverse: the settings
    reader both use lives in the inventory package."""
    edges = graph()
    reaching = {name: sorted(t for t in targets
                             if not t.startswith("accel_inventory"))
                for name, targets in edges.items()
                if name.startswith("accel_inventory")}
    assert {name: t for name, t in reaching.items() if t} == {}


def test_the_hooks_fast_path_imports_only_what_is_standard_library():
    """The trigger and what it imports of ours: nothing that loads lxml,
    oslo or the inventory's scanner and cache (its file opener,
    ``safe_io``, and its settings reader are standard library only)."""
    edges = graph()
    seen, todo = set(), ["libvirt_hooks.hook"]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            # The full path (decide) and --install (cache's atomic write)
            # are imported only past the fast path.
            todo.extend(edges[name] - {"libvirt_hooks.decide",
                                       "accel_inventory.cache"})
    assert seen == {"libvirt_hooks.hook", "libvirt_hooks.trigger",
                    "libvirt_hooks.common", "accel_inventory.settings",
                    "accel_inventory.safe_io"}
