#!/usr/bin/env python3
"""The documents hold to the code: the settings table of docs/contract.md is the options
table of server/config.c and what `kubia --help` prints (every option with the same flag,
variable and default, its range where it has one, and no row for an option that does not
exist); every KUBIA_ variable the documents name is a setting or one the tests, the
image or the manifests read; every option of a `kubia` command in the README exists; and
every relative link in README.md, docs/ and the test suites' READMEs resolves, to the
file and, with a #fragment, to one of its headings.

Usage: docs_check.py KUBIA_BINARY   Prints each breach; exits 1 when there is one.
"""
import glob
import os
import re
import subprocess
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(path):
    with open(os.path.join(TOP, path), encoding="utf-8") as f:
        return f.read()


def c_number(expr):
    """A bound of the options table: a decimal or `(uint64_t)1 << n`."""
    expr = expr.strip()
    m = re.fullmatch(r"\(uint64_t\)\s*1\s*<<\s*(\d+)", expr)
    return 1 << int(m.group(1)) if m else int(expr)


def config_options():
    """{flag: (variable, kind, min, max, default or None)} from server/config.c."""
    src = read("server/config.c")
    table = src[src.index("static const struct opt opts[] = {"):]
    table = table[:table.index("\n};")]
    out = {}
    row = re.compile(r'\{"([a-z-]+)",\s*"(KUBIA_[A-Z_]+)",\s*(OPT_[A-Z0-9]+),\s*OFF\(\w+\),'
                     r'\s*([^,]+),\s*([^,]+),\s*(NULL|"[^"]*")')
    for m in row.finditer(table):
        flag, var, kind, lo, hi, default = m.groups()
        out["--" + flag] = (var, kind, c_number(lo), c_number(hi),
                            None if default == "NULL" else default.strip('"'))
    return out


def help_options(binary):
    """{flag: (variable, default or None)} from `kubia --help`."""
    text = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10,
                          check=True).stdout
    out = {}
    for m in re.finditer(r"^  (--[a-z-]+) +(KUBIA_[A-Z_]+) +(.*?)(?: \[([^\]]*)\])?$", text,
                         re.M):
        out[m.group(1)] = (m.group(2), m.group(4))
    return out


def contract_rows():
    """{flag: (variable, default cell, allowed cell)} of docs/contract.md's settings."""
    out = {}
    for line in read("docs/contract.md").splitlines():
        m = re.match(r"^\| `(--[a-z-]+)` \| `(KUBIA_[A-Z_]+)` \| ([^|]*) \| ([^|]*) \|", line)
        if m:
            if m.group(1) in out:
                yield "docs/contract.md: %s has two rows" % m.group(1), None
            out[m.group(1)] = (m.group(2), m.group(3).strip(), m.group(4).strip())
    yield None, out


def check_settings(binary):
    opts = config_options()
    helped = help_options(binary)
    rows = {}
    for err, got in contract_rows():
        if err:
            yield err
        else:
            rows = got
    if len(opts) < 10:
        yield "server/config.c: only %d options read from its table" % len(opts)
    for flag, (var, kind, lo, hi, default) in opts.items():
        if flag not in helped:
            yield "kubia --help does not list %s" % flag
        elif helped[flag] != (var, default):
            yield "kubia --help: %s is %s [%s], config.c says %s [%s]" % (
                flag, helped[flag][0], helped[flag][1], var, default)
        if flag not in rows:
            yield "docs/contract.md has no row for %s (%s)" % (flag, var)
            continue
        dvar, dcell, allowed = rows[flag]
        if dvar != var:
            yield "docs/contract.md: %s is %s, config.c says %s" % (flag, dvar, var)
        if default is None:
            if not dcell.startswith("("):
                yield "docs/contract.md: %s has no default in config.c, the doc says %s" % (
                    flag, dcell)
        elif dcell != "`%s`" % default:
            yield "docs/contract.md: %s defaults to %s, config.c says `%s`" % (
                flag, dcell, default)
        if kind in ("OPT_UINT", "OPT_U64"):
            want = "%d–%d" % (lo, hi)
            if not allowed.startswith(want):
                yield "docs/contract.md: %s allows %s, config.c says %s" % (
                    flag, allowed, want)
    for flag in set(rows) - set(opts):
        yield "docs/contract.md names %s, which kubia does not have" % flag
    for flag in set(helped) - set(opts):
        yield "kubia --help lists %s, which config.c's table does not have" % flag


def documents():
    docs = ["README.md"] + sorted(glob.glob("docs/*.md", root_dir=TOP))
    return docs + sorted(glob.glob("test/*/README.md", root_dir=TOP))


def variables_read_elsewhere():
    """KUBIA_ names the tests, the image and the manifests read or set."""
    names = set()
    for pattern in ("test/**/*.py", "test/**/*.sh", "test/**/meson.build", "test/e2e/kubia-sim",
                    "docker/*", "k8s/**/*.yaml", "k8s/**/*.env", "meson.build"):
        for path in glob.glob(pattern, root_dir=TOP, recursive=True):
            if os.path.isfile(os.path.join(TOP, path)):
                names |= set(re.findall(r"KUBIA_[A-Z0-9_]+", read(path)))
    return names


def check_names():
    settings = {v for v, *_ in config_options().values()}
    known = settings | variables_read_elsewhere()
    for doc in documents():
        for var, star in sorted(set(re.findall(r"(KUBIA_[A-Z0-9_]*[A-Z0-9_])(\*?)",
                                                read(doc)))):
            # KUBIA_REF_*: a family of names, one of which must exist
            ok = any(k.startswith(var) for k in known) if star else var in known
            if not ok:
                yield "%s names %s%s: not a setting, and nothing reads it" % (doc, var, star)
    flags = set(config_options()) | {"--help", "--version"}
    for line in read("README.md").splitlines():
        for cmd in re.findall(r"(?:^|[`\s])(?:\./build/)?kubia( [^`]*)", line):
            for flag in re.findall(r"\s(--[a-z][a-z-]*)", cmd):
                if flag not in flags:
                    yield "README.md runs kubia with %s, which kubia does not have" % flag


def anchors(text):
    """GitHub's fragment of each heading of a Markdown text."""
    out = set()
    for m in re.finditer(r"^#{1,6} +(.+?) *$", text, re.M):
        a = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        out.add(a)
    return out


def check_links():
    for doc in documents():
        text = read(doc)
        # fenced code is not Markdown
        text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^[a-z]+:", target):
                continue
            path, _, frag = target.partition("#")
            rel = os.path.normpath(os.path.join(os.path.dirname(doc), path)) if path else doc
            if not os.path.exists(os.path.join(TOP, rel)):
                yield "%s links to %s: no such file" % (doc, target)
                continue
            if frag and rel.endswith(".md") and frag not in anchors(read(rel)):
                yield "%s links to %s: %s has no heading #%s" % (doc, target, rel, frag)


def main(argv):
    if len(argv) != 2:
        sys.exit(__doc__)
    bad = list(check_settings(argv[1])) + list(check_names()) + list(check_links())
    for b in bad:
        print(b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
