#!/usr/bin/env python3
"""No file of a module calls a function of a file that calls back into it, directly or
around a circle: the files of a directory form a tree (a DAG), so each can be read and
tested with what lies below it alone.

The call graph is read from the objects' symbol tables (nm): file A depends on file B
when A's object uses a symbol that B's object defines. Only files of the same directory
are compared; what a module uses of another is the module's business, not this check's.

Usage: callcycles.py BUILD_DIR DIR...   Prints every cycle and exits 1 when there is one.
"""
import os
import subprocess
import sys


def objects(build, directory):
    """{source file name: object path} for directory's C files, as meson names the
    objects of a library ("<dir>_<file>.c.o"), outside the test programs."""
    found = {}
    prefix = directory.replace("/", "_") + "_"
    for root, dirs, files in os.walk(build):
        dirs[:] = [d for d in dirs if not d.startswith(("test", "meson-"))]
        for f in files:
            if f.startswith(prefix) and f.endswith(".c.o"):
                found[f[len(prefix):-2]] = os.path.join(root, f)
    return found


def symbols(path):
    """(defined, used) global symbols of one object."""
    out = subprocess.run(["nm", "-P", path], check=True, capture_output=True,
                         text=True).stdout
    defined, used = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        name, kind = parts[0], parts[1]
        if kind == "U":
            used.add(name)
        elif kind in "TDBRCVW":
            defined.add(name)
    return defined, used


def graph(objs):
    """{file: {file it calls, with the symbols}}"""
    syms = {f: symbols(p) for f, p in objs.items()}
    owner = {}
    for f, (defined, _) in syms.items():
        for s in defined:
            owner[s] = f
    edges = {f: {} for f in objs}
    for f, (_, used) in syms.items():
        for s in sorted(used):
            g = owner.get(s)
            if g is not None and g != f:
                edges[f].setdefault(g, []).append(s)
    return edges


def cycles(edges):
    """The strongly connected components of more than one file (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main(build, directories):
    bad = 0
    for d in directories:
        objs = objects(build, d)
        if not objs:
            print(f"{d}: no objects under {build}", file=sys.stderr)
            return 2
        edges = graph(objs)
        for comp in cycles(edges):
            bad += 1
            print(f"{d}: these files call each other in a circle: {', '.join(comp)}")
            for f in comp:
                for g in sorted(edges[f]):
                    if g in comp:
                        print(f"  {f} -> {g}: {', '.join(edges[f][g][:4])}"
                              + (" ..." if len(edges[f][g]) > 4 else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2:]))
