# SPDX-License-Identifier: MIT
"""The built kubia carries the toolchain's exploit mitigations (meson.build turns them
on): a position-independent executable, full RELRO, a stack protector, FORTIFY_SOURCE
and a non-executable stack. Each is read from the ELF file with readelf (binutils), the
way the loader and libc will see it.

Each check is first shown to fail on a small program built by the same compiler with
everything on except the one flag it is about (and to pass with everything on), so a
check that could not fail would fail here instead.
"""

import os
import re
import shlex
import shutil
import subprocess

import pytest

from harness import KUBIA, SANITIZE

READELF = shutil.which("readelf")
# The build's compiler (test/meson.build) and optimisation level ("0", "g", "1", "2",
# "3", "s" or "plain")
CC = shlex.split(os.environ.get("KUBIA_CC") or "cc")
OPTIMIZATION = os.environ.get("KUBIA_OPTIMIZATION") or "2"

pytestmark = pytest.mark.skipif(READELF is None, reason="readelf (binutils) not installed")


def readelf(path, *flags):
    return subprocess.run([READELF, "-W", *flags, path], check=True, capture_output=True,
                          text=True, timeout=30).stdout


def imported(path):
    """The names of the functions path takes from shared libraries: undefined dynamic
    symbols, without their version."""
    names = set()
    for line in readelf(path, "--dyn-syms").splitlines():
        f = line.split()
        if len(f) >= 8 and f[6] == "UND":
            names.add(f[7].split("@")[0])
    return names


def check_pie(path):
    """PIE: an ELF of type DYN (shared object) that also names a program interpreter
    (ld.so): the kernel loads it at a random address (ASLR covers the program's own
    code, not only the libraries'). A shared library is DYN without an interpreter, a
    fixed-address executable is EXEC."""
    header = readelf(path, "-h")
    segments = readelf(path, "-l")
    assert re.search(r"^\s*Type:\s+DYN\b", header, re.M), "ELF type is not DYN: not PIE"
    assert re.search(r"^\s*INTERP\b", segments, re.M), "no INTERP segment: not an executable"


def check_relro(path):
    """RELRO: a GNU_RELRO segment tells ld.so which pages (the GOT, .dynamic,
    constructors) to make read-only once relocation is done."""
    assert re.search(r"^\s*GNU_RELRO\b", readelf(path, "-l"), re.M), "no GNU_RELRO segment"


def check_bind_now(path):
    """Full RELRO needs BIND_NOW as well: every symbol resolved at start-up (DT_FLAGS
    BIND_NOW or DT_FLAGS_1 NOW), so the whole GOT falls under RELRO instead of
    staying writable for lazy binding."""
    dynamic = readelf(path, "-d")
    flags = re.search(r"\(FLAGS\)\s+(.*)$", dynamic, re.M)
    flags_1 = re.search(r"\(FLAGS_1\)\s+Flags:\s+(.*)$", dynamic, re.M)
    assert (flags is not None and "BIND_NOW" in flags.group(1).split()) or (
        flags_1 is not None and "NOW" in flags_1.group(1).split()), \
        "neither FLAGS BIND_NOW nor FLAGS_1 NOW: lazy binding, partial RELRO only"


def check_stack_protector(path):
    """Stack protector: functions with arrays on the stack check a canary before they
    return and call __stack_chk_fail (from libc) when it was overwritten; a program
    compiled without the protector never imports it."""
    assert "__stack_chk_fail" in imported(path), "__stack_chk_fail not imported"


# At _FORTIFY_SOURCE=2, glibc's headers turn every call of these into its checked form
# (the format may not write with %n unless it is read-only), whatever the buffer: a
# plain import of one means code compiled without FORTIFY_SOURCE.
ALWAYS_CHECKED = ("fprintf", "asprintf", "vasprintf", "printf", "vfprintf")


def check_fortify(path):
    """FORTIFY_SOURCE: calls whose buffer size the compiler knows (snprintf into an
    array) become __*_chk, which abort on overflow; the printf family is always
    checked. kubia uses snprintf on arrays and fprintf, so both forms must be there,
    and no unchecked printf-family function."""
    names = imported(path)
    checked = sorted(n for n in names if re.fullmatch(r"__\w+_chk", n) and
                     n != "__stack_chk_fail")
    assert "__snprintf_chk" in names, "__snprintf_chk not imported (have %s)" % checked
    assert "__fprintf_chk" in names, "__fprintf_chk not imported (have %s)" % checked
    plain = sorted(n for n in ALWAYS_CHECKED if n in names)
    assert not plain, "unchecked %s imported: not built with FORTIFY_SOURCE" % plain


def check_noexec_stack(path):
    """Non-executable stack: the GNU_STACK segment's flags say what the stack pages
    may do; without E (execute) code injected on the stack cannot run. Without the
    segment at all, the kernel makes the stack executable."""
    m = re.search(r"^\s*GNU_STACK\s+(?:\S+\s+){5}(.+?)\s+0x[0-9a-f]+\s*$",
                  readelf(path, "-l"), re.M)
    assert m is not None, "no GNU_STACK segment: the stack is executable"
    assert "E" not in m.group(1), "GNU_STACK is %s: the stack is executable" % m.group(1)


CHECKS = {
    "pie": check_pie,
    "relro": check_relro,
    "bind_now": check_bind_now,
    "stack_protector": check_stack_protector,
    "fortify": check_fortify,
    "noexec_stack": check_noexec_stack,
}


def skipped_here():
    """Checks that do not apply to this build, with the reason."""
    skip = {}
    if SANITIZE != "none":
        # meson.build leaves FORTIFY_SOURCE out under ASan (both replace the string
        # functions), and a sanitizer's runtime, linked in, defines the checked forms
        # itself rather than importing them.
        skip["fortify"] = "FORTIFY_SOURCE is not checked in a sanitizer build"
    elif OPTIMIZATION in ("0", "plain"):
        skip["fortify"] = "FORTIFY_SOURCE needs optimisation (-O%s)" % OPTIMIZATION
    return skip


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_kubia_is_hardened(name):
    reason = skipped_here().get(name)
    if reason is not None:
        pytest.skip(reason)
    CHECKS[name](KUBIA)


SOURCE = r"""
#include <stdio.h>
int main(int argc, char **argv)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%s %d", argv[0], argc);
	fprintf(stderr, "%s\n", buf);
	return buf[0] == 'x';
}
"""

HARDENED = ["-O2", "-fPIE", "-pie", "-U_FORTIFY_SOURCE", "-D_FORTIFY_SOURCE=2",
            "-fstack-protector-strong", "-Wl,-z,relro", "-Wl,-z,now", "-Wl,-z,noexecstack"]
# What takes each property away, added after HARDENED (the last flag wins)
WITHOUT = {
    "pie": ["-fno-PIE", "-no-pie"],
    "relro": ["-Wl,-z,norelro"],
    "bind_now": ["-Wl,-z,lazy"],
    "stack_protector": ["-fno-stack-protector"],
    "fortify": ["-U_FORTIFY_SOURCE"],
    "noexec_stack": ["-Wl,-z,execstack"],
}


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    d = tmp_path_factory.mktemp("hardening")
    src = d / "probe.c"
    src.write_text(SOURCE)

    def compile_(name, flags):
        out = d / name
        r = subprocess.run(CC + flags + ["-o", str(out), str(src)], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, "%s %s: %s" % (CC, flags, r.stderr)
        return str(out)
    return compile_


def test_checks_pass_on_a_hardened_program(build):
    exe = build("hardened", HARDENED)
    for check in CHECKS.values():
        check(exe)


@pytest.mark.parametrize("name", sorted(WITHOUT))
def test_check_fails_without_its_flag(build, name):
    exe = build("without_" + name, HARDENED + WITHOUT[name])
    with pytest.raises(AssertionError):
        CHECKS[name](exe)
    # ... and only that check: the others still pass, so each check is about its flag.
    for other, check in CHECKS.items():
        if other != name:
            check(exe)
