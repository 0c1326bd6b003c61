#!/usr/bin/env bash
# Makes the base image that docker/Dockerfile starts from, debian:bookworm-slim, without
# a registry: debootstrap a minimal bookworm from the Debian mirror apt already uses and
# import it as docker.io/library/debian:bookworm-slim. The Dockerfile pins the registry's
# image by its digest, which a local image cannot have, so build from this one by name:
#     podman build --build-arg BASE_IMAGE=docker.io/library/debian:bookworm-slim ...
# Does nothing when the image is already there.
# Usage (root): base-image.sh [IMAGE]   (default docker.io/library/debian:bookworm-slim)
set -euo pipefail

image=${1:-docker.io/library/debian:bookworm-slim}
if podman image exists "$image"; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "base-image: debootstrap needs root" >&2
    exit 1
fi

# The mirror apt is configured with (one-line or deb822 sources), so the base gets the
# same packages as the machine; deb.debian.org when none is found.
mirror_from_sources() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        # "deb [options] URI SUITE COMPONENTS..."
        sed -E 's/\[[^]]*\]//' "$f" | awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }'
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -r "$f" ] || continue
        # deb822 stanzas are separated by blank lines; take the URI of the stanza whose
        # suites include plain "bookworm" (not -security or -updates).
        awk 'BEGIN { RS = ""; FS = "\n" }
            {
                uri = ""; suite = 0
                for (i = 1; i <= NF; i++) {
                    if ($i ~ /^URIs:/) { split($i, a, /[ \t]+/); uri = a[2] }
                    if ($i ~ /^Suites:/ && $i ~ /[ \t]bookworm([ \t]|$)/) suite = 1
                }
                if (uri != "" && suite) { print uri; exit }
            }' "$f"
    done
}
mirror=$(mirror_from_sources | head -n 1 || true)
mirror=${mirror:-http://deb.debian.org/debian}

work=$(mktemp -d "${TMPDIR:-/tmp}/kubia-base.XXXXXX")
root=$work/root
cleanup() {
    # debootstrap mounts /proc and more inside the new root while it installs, and may
    # leave them mounted when it fails: unmount those (deepest first) before removing.
    awk -v r="$root/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r |
        while read -r m; do umount -l "$m" || true; done
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT

echo "base-image: debootstrap bookworm from $mirror"
if ! debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/log" 2>&1; then
    tail -20 "$work/log" >&2
    exit 1
fi
# What the real slim image leaves out too: package lists and caches, which the build
# fetches afresh, and logs.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
    "$root"/var/cache/apt/archives/*.deb "$root"/var/log/*.log
tar --numeric-owner -C "$root" -c . |
    podman import --quiet --change 'CMD ["bash"]' - "$image" >/dev/null
echo "base-image: imported $image (build with --build-arg BASE_IMAGE=$image)"
