#!/usr/bin/env bash
# Static analysis with the project's configuration: clang-tidy (.clang-tidy) and
# cppcheck, clang-format for layout, pyflakes for the Python tests and kubia-sim, and the
# house rules (test/house.py: file and function sizes), the test suites' helpers
# defined once, in test/lib (test/helpers_once.py), the documents held to the code
# (test/docs_check.py: the settings table against config.c and --help, the links), and
# callcycles: no file of the given modules calls into a file that calls back into it
# (test/lint/callcycles.py, on the built objects).
# Usage: test/lint.sh clang-tidy|cppcheck|format|pyflakes|house|helpers|docs BUILD_DIR
#        test/lint.sh callcycles BUILD_DIR MODULE_DIR...
set -euo pipefail
tool=$1
build=$(cd "$2" && pwd)
shift 2
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
mapfile -t sources < <(git ls-files 'common/*.c' 'server/*.c' 'storage/*.c' 'discovery/*.c' 2>/dev/null ||
    ls common/*.c server/*.c storage/*.c discovery/*.c)
if [ "${#sources[@]}" -eq 0 ]; then
    mapfile -t sources < <(ls common/*.c server/*.c storage/*.c discovery/*.c)
fi

case "$tool" in
clang-tidy)
    command -v clang-tidy >/dev/null || { echo "clang-tidy not installed"; exit 77; }
    # The compile database holds gcc's flags; drop the ones clang does not know.
    clang-tidy -p "$build" --quiet \
        --extra-arg=-Wno-unknown-warning-option \
        --extra-arg=-Wno-ignored-optimization-argument \
        "${sources[@]}"
    ;;
cppcheck)
    command -v cppcheck >/dev/null || { echo "cppcheck not installed"; exit 77; }
    cppcheck --quiet --error-exitcode=1 --inline-suppr \
        --enable=warning,performance,portability \
        --std=c11 -D_GNU_SOURCE -I. -I"$build" \
        --suppress=missingIncludeSystem \
        "${sources[@]}"
    ;;
format)
    command -v clang-format >/dev/null || { echo "clang-format not installed"; exit 77; }
    clang-format --dry-run --Werror "${sources[@]}" common/*.h server/*.h storage/*.h discovery/*.h \
        test/unit/*.c test/integration/*.c test/fuzz/*.c test/fuzz/*.h
    ;;
pyflakes)
    /usr/bin/python3 -c 'import pyflakes' 2>/dev/null || { echo "pyflakes not installed"; exit 77; }
    /usr/bin/python3 -m pyflakes test/e2e/kubia-sim test/e2e/kubiasim test/lib/kubiatest \
        test/*/*.py test/*.py
    ;;
callcycles)
    command -v nm >/dev/null || { echo "nm not installed"; exit 77; }
    /usr/bin/python3 test/lint/callcycles.py "$build" "$@"
    ;;
house)
    /usr/bin/python3 test/house.py "${sources[@]}" common/*.h server/*.h storage/*.h discovery/*.h
    ;;
helpers)
    /usr/bin/python3 test/helpers_once.py test
    ;;
docs)
    /usr/bin/python3 test/docs_check.py "$build/kubia"
    ;;
*)
    echo "usage: $0 clang-tidy|cppcheck|format|pyflakes|house|helpers|docs|callcycles BUILD_DIR" >&2
    exit 2
    ;;
esac
echo "$tool: clean"
