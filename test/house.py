#!/usr/bin/env python3
"""The house rules a reader relies on: no product source file over 600 lines and no
function over 80 lines (from the first line of its signature to its closing brace).

Usage: house.py FILE...   Prints each breach and exits 1 when there is one.
"""
import sys

MAX_FILE = 600
MAX_FUNCTION = 80


def functions(lines):
    """Yields (name line, first line number, length) of each function definition: in the
    project's style a definition's body opens with "{" alone in column 0 and closes with
    "}" alone in column 0, and its signature starts in column 0."""
    start = None
    for i, line in enumerate(lines):
        if line == "{" and i > 0:
            j = i - 1
            while j > 0 and lines[j][:1] in ("\t", " ") and lines[j - 1].strip() \
                    and not lines[j - 1].rstrip().endswith((";", "}", "*/")):
                j -= 1
            start = j
        elif line == "}" and start is not None:
            yield lines[start], start + 1, i - start + 1
            start = None


def main(paths):
    breaches = 0
    for path in paths:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if len(lines) > MAX_FILE:
            print("%s: %d lines (at most %d)" % (path, len(lines), MAX_FILE))
            breaches += 1
        for sig, first, n in functions(lines):
            if n > MAX_FUNCTION:
                print("%s:%d: function of %d lines (at most %d): %s"
                      % (path, first, n, MAX_FUNCTION, sig.strip()))
                breaches += 1
    return 1 if breaches else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
