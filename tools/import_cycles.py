"""Print the import graph of a package and its cycles; exit 1 if a runtime import cycle exists.

    python tools/import_cycles.py                # asyncflow, runtime imports
    python tools/import_cycles.py --with-types   # TYPE_CHECKING imports counted too
    python tools/import_cycles.py asyncflow_dask

A cycle is a strongly connected component of more than one module (grimp builds the graph,
the same one import-linter checks in ``nox -s lint``).
"""

from __future__ import annotations

import argparse
import sys

import grimp


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The graph's strongly connected components of two modules or more (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            module, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[module])
                if low[module] == index[module]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == module:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
            elif child in on_stack:
                low[module] = min(low[module], index[child])
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package", nargs="?", default="asyncflow")
    parser.add_argument("--with-types", action="store_true",
                        help="count imports under `if TYPE_CHECKING:` too")
    args = parser.parse_args()
    graph = grimp.build_graph(args.package, cache_dir=None,
                              exclude_type_checking_imports=not args.with_types)
    modules = sorted(graph.modules)
    edges = sum(len(graph.find_modules_directly_imported_by(m)) for m in modules)
    found = cycles(graph)
    kind = "all" if args.with_types else "runtime"
    print(f"{args.package}: {len(modules)} modules, {edges} {kind} imports, "
          f"{len(found)} cycle(s)")
    for component in found:
        print(f"  {len(component)} modules: {' '.join(component)}")
    return 1 if found and not args.with_types else 0


if __name__ == "__main__":
    sys.exit(main())
