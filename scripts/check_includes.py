#!/usr/bin/env python3
"""Include cycles between the library's folders (issue 39).

Each folder of src/fracture/ (data, models, train, ...) is a node, and so is
each file at the top (predictor.h/.cpp: the library's face); a file's
`#include "fracture/<folder>/..."` is an edge from its folder to that folder.
Prints every group of folders that include each other, directly or through
others, with one include line of each edge inside it, and exits 1 if there
is one; 0 and "no include cycles" otherwise.
Usage: python3 scripts/check_includes.py [SRC_DIR]
"""
import os
import re
import sys
from collections import defaultdict


def node_of(path, root):
    rel = os.path.relpath(path, root)
    parts = rel.split(os.sep)
    return parts[0] if len(parts) > 1 else os.path.splitext(parts[0])[0]


def edges(root):
    out = defaultdict(dict)  # node -> {node: "file: line"}
    for folder, _, files in os.walk(root):
        for name in files:
            if not name.endswith((".h", ".cpp")):
                continue
            path = os.path.join(folder, name)
            here = node_of(path, root)
            for line in open(path, encoding="utf-8", errors="replace"):
                m = re.match(r'\s*#\s*include\s+"fracture/([^"]+)"', line)
                if not m:
                    continue
                there = node_of(os.path.join(root, m.group(1)), root)
                if there != here and there not in out[here]:
                    out[here][there] = f"{os.path.relpath(path)}: {line.strip()}"
    return out


def cycles(graph):
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "src", "fracture")
    graph = edges(root)
    found = cycles(graph)
    if not found:
        print("no include cycles")
        return 0
    for group in found:
        print("these include each other: " + ", ".join(group))
        for a in group:
            for b in group:
                if b in graph.get(a, {}):
                    print(f"  {a} -> {b}  ({graph[a][b]})")
    return 1


if __name__ == "__main__":
    sys.exit(main())
