#!/usr/bin/env bash
# Installs what building and testing kubia needs on Debian bookworm (as root), only
# what is missing. Safe to run again.
set -euo pipefail

packages=(
    # build
    gcc meson ninja-build pkg-config
    libmicrohttpd-dev libc-ares-dev libcurl4-openssl-dev libjansson-dev
    # tests: unit, integration (real dnsmasq, pytest), analysis, fuzzing, benchmarks
    libcmocka-dev python3 python3-pytest dnsmasq-base iproute2 util-linux
    curl strace clang clang-tidy clang-format cppcheck valgrind wrk nginx-light
    python3-pyflakes python3-yaml python3-jsonschema
    # the power-cut tests: a FUSE file system in Python (test/faults/powercut.py)
    python3-fusepy fuse3
    # the simulated cluster (test/e2e/kubia-sim) and its e2e suite; prometheus for
    # `kubia-sim up --prometheus` (its server and promtool) and for promtool's check of
    # the /metrics exposition (test/integration/test_metrics.py)
    bind9-dnsutils prometheus
    # the browser suite: the page GET /ui in Debian's headless Chromium, driven by
    # Selenium through chromedriver (test/e2e/test_ui.py); nothing downloads a browser
    chromium chromium-driver python3-selenium
    # the container image and its tests (test/image): podman with runc, CNI networking
    # for the build's apt-get, debootstrap for the base image made without a registry
    podman buildah runc containernetworking-plugins iptables debootstrap
)

missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
# npm for the manifest tests (test/image), by command: a Node.js from elsewhere may
# bring it, and Debian's npm package would conflict with that one.
if ! command -v npm >/dev/null 2>&1; then
    missing+=(npm)
fi
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "setup: missing packages: ${missing[*]} (run as root to install them)" >&2
    exit 1
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
