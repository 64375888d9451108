#!/usr/bin/env python3
"""The layout rules ARCHITECTURE.md states, checked (CI runs this):

1. No import cycles: a file's `crate::` paths name the files it uses, and a module uses
   the children it declares. No file may reach itself through them; a child using its own
   parent (or an ancestor) is the one exception, since that is what modules are for.
2. The code map in ARCHITECTURE.md names every file under src/ (as `path/to/file.rs`).
3. No file under src/ passes 500 lines unless its first lines say why ("Longer than").

Usage: python3 scripts/check-layout.py   (exit status 1 with a list of what is wrong)
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SRC = os.path.join(ROOT, "src")
MAX_LINES = 500


def module_files():
    """Module path (tuple) -> file, for every .rs file under src/ (main.rs apart)."""
    modules = {}
    for directory, _, names in os.walk(SRC):
        for name in names:
            if not name.endswith(".rs"):
                continue
            path = os.path.relpath(os.path.join(directory, name), SRC)
            parts = path[:-3].split(os.sep)
            if parts[-1] == "mod":
                parts = parts[:-1]
            if parts == ["lib"]:
                parts = []
            if parts == ["main"]:
                continue
            modules[tuple(parts)] = path
    return modules


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//")[0] for line in text.splitlines())


def uses(text, module):
    """Every `crate::a::b::{c, d::e}` or `super::...` path in the text, expanded, as tuples
    from the crate's root."""
    paths = []
    for match in re.finditer(r"\b(crate|super)((?:::\w+)+)(::\{)?", text):
        base = tuple(match.group(2).strip(":").split("::"))
        while base and base[0] == "super":
            base, module = base[1:], module[:-1]
        if match.group(1) == "super":
            base = module[:-1] + base
        if match.group(3):
            # A braced group: the names right inside it (nested braces flattened).
            depth, start, end = 1, match.end(), match.end()
            while depth and end < len(text):
                depth += {"{": 1, "}": -1}.get(text[end], 0)
                end += 1
            inner = re.sub(r"\{[^{}]*\}", "", text[start : end - 1])
            for item in inner.split(","):
                item = item.strip().split(" as ")[0]
                if item and item != "self":
                    paths.append(base + tuple(item.split("::")))
                elif item == "self":
                    paths.append(base)
        else:
            paths.append(base)
    return paths


def target(modules, path):
    """The file a path lives in: its longest prefix that is a module."""
    for length in range(len(path), -1, -1):
        if path[:length] in modules:
            return path[:length]
    return ()


def related(a, b):
    """A module and its own parent or child (or any ancestor: lib.rs is everyone's)."""
    return a[: len(b)] == b or b[: len(a)] == a


def import_problems(modules):
    graph = {module: set() for module in modules}
    for module, path in modules.items():
        with open(os.path.join(SRC, path), encoding="utf-8") as file:
            text = strip_comments(file.read())
        for used in uses(text, module):
            other = target(modules, used)
            if other != module and not related(module, other):
                graph[module].add(other)
    problems = []
    # A parent uses its children (it declares them): a circle through a module's parent
    # is a circle. The way back (a child using its parent) is what modules are for.
    for module in modules:
        if module:
            graph[module[:-1]].add(module)
    problems += cycles(graph, lambda module: modules[module])
    return problems


def cycles(graph, name):
    """Every cycle of `graph` (node -> set of nodes), as one problem per group of nodes."""
    problems = []
    # Strongly connected components (Tarjan): any with two files or more is a cycle.
    index, low, stack, on_stack, components = {}, {}, [], set(), []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for next_node in sorted(graph[node]):
            if next_node not in index:
                visit(next_node)
                low[node] = min(low[node], low[next_node])
            elif next_node in on_stack:
                low[node] = min(low[node], index[next_node])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    sys.setrecursionlimit(10000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    for component in components:
        members = set(component)
        names = sorted(name(m) for m in component)
        edges = sorted(
            f"{name(a)} -> {name(b)}" for a in component for b in graph[a] if b in members
        )
        problems.append(
            "import cycle among " + ", ".join(names) + ":\n    " + "\n    ".join(edges)
        )
    return problems


def layout_problems(modules):
    problems = []

    architecture = os.path.join(ROOT, "ARCHITECTURE.md")
    if os.path.exists(architecture):
        with open(architecture, encoding="utf-8") as file:
            mapped = file.read()
        for directory, _, names in os.walk(SRC):
            for name in sorted(names):
                path = os.path.relpath(os.path.join(directory, name), ROOT)
                if name.endswith(".rs") and f"`{path}`" not in mapped:
                    problems.append(f"ARCHITECTURE.md's code map does not name `{path}`")
    else:
        problems.append("ARCHITECTURE.md is missing")

    for path in sorted(modules.values()) + ["main.rs"]:
        with open(os.path.join(SRC, path), encoding="utf-8") as file:
            lines = file.read().splitlines()
        head = "\n".join(lines[:30])
        if len(lines) > MAX_LINES and "Longer than" not in head:
            problems.append(
                f"src/{path} has {len(lines)} lines: split it, or say at its top why it is longer than {MAX_LINES} (\"Longer than ...\")"
            )

    return problems


def main():
    modules = module_files()
    problems = import_problems(modules) + layout_problems(modules)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"layout ok: {len(modules) + 1} files, no import cycles, all in the code map")


if __name__ == "__main__":
    main()
