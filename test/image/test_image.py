"""The container image: docker/Dockerfile built with podman, then run the way a
StatefulSet's pod runs it (non-root, read-only root file system, a volume at /var/data),
and read the way a vulnerability scanner reads it (the Debian package records and the
SBOM in it).

The image is built once per run from the Dockerfile as it is (podman's layer cache
keeps a rebuild of unchanged sources short) and kept as localhost/kubia:test, so later
suites can use it. Its base, debian:bookworm-slim, is made locally by base-image.sh;
the Dockerfile pins the registry's image by digest, which a local image cannot have, so
the build names the local one (--build-arg BASE_IMAGE).

Root only: podman as root and network namespaces. Traffic goes to loopback only: the
containers either share the host's network, listen on a free port and are asked on
127.0.0.1, or live in a network namespace this test makes, which has nothing but its
own loopback.
Every container (with its anonymous volumes), namespace and process a test starts is
removed when it ends, pass or fail.
"""

import hashlib
import json
import os
import re
import select
import shutil
import signal
import socket
import stat
import subprocess
import time

import pytest
from kubiatest.http import http_request
from kubiatest.ports import free_port
from kubiatest.waits import wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
DOCKERFILE = os.path.join(TOP, "docker", "Dockerfile")
BASE_IMAGE_SH = os.path.join(HERE, "base-image.sh")
CONTAINERS_CONF = os.path.join(HERE, "containers.conf")
IMAGE = "localhost/kubia:test"
# The base base-image.sh imports, and the time the build is asked to date everything by.
LOCAL_BASE = "docker.io/library/debian:bookworm-slim"
SOURCE_DATE_EPOCH = 1700000000
BUILD_ARGS = ("--build-arg", "BASE_IMAGE=" + LOCAL_BASE,
              "--build-arg", "SOURCE_DATE_EPOCH=%d" % SOURCE_DATE_EPOCH)
SBOM = "/usr/share/doc/kubia/kubia.spdx.json"
STATUS_D = "/var/lib/dpkg/status.d"
MAX_IMAGE_BYTES = 25 * 1000 * 1000
KUBIA_UID = KUBIA_GID = 10001
# Every container and namespace of this run carries it, so cleanup can check that none
# is left behind, and parallel runs do not meet.
PREFIX = "kubia-image-test-%d" % os.getpid()
_PATH = os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
TOOL = {t: shutil.which(t, path=_PATH)
        for t in ("podman", "debootstrap", "ip", "dnsmasq", "curl", "dig", "dpkg-query",
                  "chroot")}


def _why_skip():
    if os.geteuid() != 0:
        return "the image tests need root (podman, network namespaces)"
    missing = [t for t, path in TOOL.items() if path is None]
    if missing:
        return "not installed: %s (bash test/setup.sh)" % ", ".join(missing)
    return None


WHY_SKIP = _why_skip()
pytestmark = pytest.mark.skipif(WHY_SKIP is not None, reason=WHY_SKIP or "")


def _interrupt(signo, frame):
    # meson ends a test that runs too long with SIGTERM; as an interrupt, pytest still
    # runs the fixtures' teardown, so the containers are removed.
    raise KeyboardInterrupt("SIGTERM")


signal.signal(signal.SIGTERM, _interrupt)


def podman(*args, timeout=60, check=True):
    env = dict(os.environ, CONTAINERS_CONF=CONTAINERS_CONF)
    r = subprocess.run([TOOL["podman"], *args], capture_output=True, text=True,
                       timeout=timeout, env=env)
    if check and r.returncode != 0:
        raise AssertionError("podman %s: exit %d: %s" % (" ".join(args), r.returncode,
                                                         r.stderr.strip()))
    return r


def inspect_image(ref):
    return json.loads(podman("image", "inspect", ref).stdout)[0]


def meson_version():
    with open(os.path.join(TOP, "meson.build")) as f:
        m = re.search(r"^\s*version:\s*'([^']+)'", f.read(), re.M)
    assert m, "no version in meson.build"
    return m.group(1)


def request(port, method, path, body=None):
    """One HTTP request to 127.0.0.1:port; (status, body text)."""
    r = http_request("127.0.0.1", port, method, path, body, timeout=5)
    return r.status, r.body.decode()


def brief(paths, most=20):
    paths = sorted(paths)
    more = len(paths) - most
    return ", ".join(paths[:most]) + (" and %d more" % more if more > 0 else "")


def proc_status(pid):
    with open("/proc/%d/status" % pid) as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


@pytest.fixture(scope="session")
def image(tmp_path_factory):
    """Builds docker/Dockerfile from the repository's root; returns the image's tag."""
    log = tmp_path_factory.mktemp("build")
    env = dict(os.environ, CONTAINERS_CONF=CONTAINERS_CONF, PATH=_PATH)
    r = subprocess.run(["bash", BASE_IMAGE_SH, LOCAL_BASE], capture_output=True, text=True,
                       timeout=900, env=env)
    assert r.returncode == 0, "base-image.sh failed:\n%s%s" % (r.stdout, r.stderr)

    old = podman("image", "inspect", "--format", "{{.Id}}", IMAGE, check=False)
    started = time.monotonic()
    r = podman("build", *BUILD_ARGS, "-f", DOCKERFILE, "-t", IMAGE, TOP, timeout=1500,
               check=False)
    took = time.monotonic() - started
    (log / "build.log").write_text(r.stdout + r.stderr)
    assert r.returncode == 0, "podman build failed (exit %d):\n%s" % (
        r.returncode, "\n".join((r.stdout + r.stderr).splitlines()[-40:]))
    print("image %s built in %.1f s" % (IMAGE, took))
    # The tag moved on: the image it named before is garbage now (unless tagged
    # elsewhere, then podman refuses, which is right).
    new = inspect_image(IMAGE)["Id"]
    if old.returncode == 0 and old.stdout.strip() != new:
        podman("rmi", old.stdout.strip(), check=False)
    return IMAGE


class Container:
    def __init__(self, name, port=None):
        self.name, self.port = name, port
        info = json.loads(podman("container", "inspect", name).stdout)[0]
        self.pid = info["State"]["Pid"]
        self.info = info

    def alive(self):
        return self.pid > 0 and os.path.exists("/proc/%d" % self.pid)

    def logs(self):
        r = podman("logs", self.name, check=False)
        return r.stdout + r.stderr

    def wait_ready(self, probe=None, timeout=15):
        """Waits until /readyz answers 200 (through probe(path) -> status, or HTTP to
        127.0.0.1:port); fails at once, with the logs, if kubia exits instead."""
        def ready():
            if not self.alive():
                raise AssertionError("%s exited:\n%s" % (self.name, self.logs()))
            try:
                if probe:
                    return probe("/readyz") == 200
                return request(self.port, "GET", "/readyz")[0] == 200
            except OSError:
                return False
        wait_until(ready, timeout, "%s to be ready" % self.name)


class Containers:
    """Starts containers of the image and removes each, with its anonymous volumes."""

    def __init__(self):
        self.names = []

    def _name(self):
        name = "%s-%d" % (PREFIX, len(self.names))
        self.names.append(name)
        return name

    def run(self, *args, port=None, image=IMAGE, cmd=()):
        """podman run -d; returns the running Container."""
        name = self._name()
        podman("run", "-d", "--name", name, *args, image, *cmd)
        return Container(name, port)

    def run_to_end(self, *args, image=IMAGE, cmd=(), timeout=60):
        """podman run in the foreground; returns the CompletedProcess."""
        name = self._name()
        return podman("run", "--name", name, *args, image, *cmd, timeout=timeout, check=False)

    def remove_all(self):
        left = []
        for name in reversed(self.names):
            r = podman("container", "inspect", name, check=False)
            if r.returncode != 0:
                continue
            mounts = json.loads(r.stdout)[0].get("Mounts") or []
            volumes = [m["Name"] for m in mounts if m.get("Type") == "volume"]
            podman("rm", "--force", "--volumes", "--time", "0", name, check=False, timeout=60)
            if podman("container", "exists", name, check=False).returncode == 0:
                left.append("container " + name)
            for v in volumes:
                if podman("volume", "exists", v, check=False).returncode == 0:
                    left.append("volume %s of %s" % (v, name))
        r = podman("ps", "--all", "--quiet", "--filter", "name=^" + PREFIX, check=False)
        if r.stdout.strip():
            left.append("containers " + " ".join(r.stdout.split()))
        assert not left, "left behind: " + ", ".join(left)


@pytest.fixture
def containers():
    c = Containers()
    try:
        yield c
    finally:
        c.remove_all()


def host_network(port, hostname="kubia-0"):
    """Run options for a container on the host's network, listening on a loopback port.
    Pet mode: the cluster view would ask the host's DNS servers for the Service."""
    return ["--read-only", "--network", "host", "-e", "KUBIA_PORT=%d" % port,
            "-e", "KUBIA_MODE=pet", "-e", "KUBIA_HOSTNAME=" + hostname]


def volume_dir(path):
    """A host directory for /var/data, owned by kubia's user as a volume would be."""
    path.mkdir()
    os.chown(path, KUBIA_UID, KUBIA_GID)
    return str(path)


def test_image_is_small(image):
    size = inspect_image(image)["Size"]
    print("image size: %d bytes (%.1f MB)" % (size, size / 1e6))
    assert 0 < size <= MAX_IMAGE_BYTES, "image is %d bytes, more than %d" % (
        size, MAX_IMAGE_BYTES)


def test_image_config_and_labels(image, containers):
    info = inspect_image(image)
    config = info["Config"]
    assert config.get("User") == "%d:%d" % (KUBIA_UID, KUBIA_GID)
    assert config.get("Entrypoint") == ["/usr/bin/kubia"]
    assert not config.get("Cmd"), "a CMD would be passed to kubia as arguments"
    assert "8080/tcp" in (config.get("ExposedPorts") or {})
    assert "/var/data" in (config.get("Volumes") or {})
    assert config.get("StopSignal") in (None, "SIGTERM", "15")
    labels = config.get("Labels") or {}
    for key in ("title", "description", "version", "licenses"):
        assert labels.get("org.opencontainers.image." + key), "label %s missing" % key
    assert "org.opencontainers.image.source" in labels
    assert labels["org.opencontainers.image.title"] == "kubia"
    assert labels["org.opencontainers.image.licenses"] == "MIT"
    version = labels["org.opencontainers.image.version"]
    assert version == meson_version(), "the Dockerfile's VERSION is not meson.build's"
    r = containers.run_to_end("--network", "none", cmd=["--version"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "kubia " + version


def test_runs_as_fixed_non_root_user_as_pid_1(image, containers):
    port = free_port()
    c = containers.run(*host_network(port), port=port)
    c.wait_ready()
    st = proc_status(c.pid)
    assert st["Uid"].split() == [str(KUBIA_UID)] * 4
    assert st["Gid"].split() == [str(KUBIA_GID)] * 4
    assert set(st["Groups"].split()) <= {str(KUBIA_GID)}
    assert int(st["CapEff"], 16) == 0, "a non-root kubia should have no capabilities"
    # kubia itself is PID 1 in the container: no shell or init in between.
    assert st["NSpid"].split()[-1] == "1"
    with open("/proc/%d/cmdline" % c.pid, "rb") as f:
        assert f.read().split(b"\0")[0] == b"/usr/bin/kubia"


def test_read_only_root_serves_and_keeps_data_on_the_volume(image, containers, tmp_path):
    data = volume_dir(tmp_path / "data-kubia-0")
    port = free_port()
    c = containers.run(*host_network(port), "-v", data + ":/var/data", port=port)
    c.wait_ready()

    with open("/proc/%d/mountinfo" % c.pid) as f:
        root = [line.split() for line in f if line.split()[4] == "/"]
    assert root and "ro" in root[-1][5].split(","), "root file system is not read-only"

    assert request(port, "GET", "/data") == (200, "No data posted yet")
    body = "Hey there! This greeting was submitted to kubia-0."
    assert request(port, "POST", "/", body) == (200, "Data stored on pod kubia-0\n")
    assert request(port, "GET", "/data") == (200, body)
    assert request(port, "GET", "/") == (
        200, "You've hit kubia-0\nData stored on this pod: %s\n" % body)
    assert request(port, "GET", "/healthz") == (200, "ok\n")
    assert request(port, "GET", "/readyz") == (200, "ready\n")

    stored = os.path.join(data, "kubia.txt")
    with open(stored) as f:
        assert f.read() == body
    assert os.stat(stored).st_uid == KUBIA_UID

    # The data outlives the container: a new one on the same volume serves it.
    podman("stop", "--time", "10", c.name, timeout=30)
    port2 = free_port()
    c2 = containers.run(*host_network(port2), "-v", data + ":/var/data", port=port2)
    c2.wait_ready()
    assert request(port2, "GET", "/data") == (200, body)


def test_image_volume_is_writable_by_kubia(image, containers):
    # No volume given: podman makes one for the image's VOLUME and copies the image's
    # /var/data into it, owner included; kubia must be able to write there.
    port = free_port()
    c = containers.run(*host_network(port), port=port)
    c.wait_ready()
    assert request(port, "POST", "/", "in the image's volume") == (
        200, "Data stored on pod kubia-0\n")
    volumes = [m for m in c.info["Mounts"] if m["Destination"] == "/var/data"]
    assert volumes and volumes[0]["Type"] == "volume"
    with open(os.path.join(volumes[0]["Source"], "kubia.txt")) as f:
        assert f.read() == "in the image's volume"


def test_no_shell_in_the_image(image, containers):
    for shell in ("/bin/sh", "/bin/bash", "/usr/bin/sh"):
        r = containers.run_to_end("--network", "none", "--entrypoint", shell,
                                  cmd=["-c", "echo reached"])
        assert r.returncode != 0 and "reached" not in r.stdout, (
            "%s ran in the image: %r" % (shell, r.stdout))


def test_image_holds_kubia_and_the_libraries_it_loads_only(image, containers):
    port = free_port()
    c = containers.run(*host_network(port), port=port)
    c.wait_ready()
    # One request of each kind first, so that anything loaded late would be mapped.
    request(port, "GET", "/")
    request(port, "POST", "/", "x")
    with open("/proc/%d/maps" % c.pid) as f:
        mapped = {line.split()[5] for line in f if len(line.split()) >= 6 and
                  line.split()[5].startswith("/") and ".so" in line.split()[5]}

    root = podman("image", "mount", image).stdout.strip()
    try:
        files, dirs, other = {}, {}, []
        for parent, dnames, fnames in os.walk(root):
            for n in dnames + fnames:
                full = os.path.join(parent, n)
                rel = "/" + os.path.relpath(full, root)
                st = os.lstat(full)
                if stat.S_ISDIR(st.st_mode):
                    dirs[rel] = st
                elif stat.S_ISREG(st.st_mode):
                    files[rel] = full
                else:
                    other.append(rel)
        etc = {}
        for n in ("passwd", "group"):
            with open(files["/etc/" + n]) as f:
                etc[n] = f.read().splitlines()
    finally:
        podman("image", "unmount", image, check=False)

    assert not other, "links or special files in the image: %s" % brief(other)
    libs = {p for p in files if ".so" in os.path.basename(p)}
    records = {p for p in files if p.startswith(STATUS_D + "/")}
    rest = set(files) - libs - records
    assert rest == {"/usr/bin/kubia", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf",
                    "/etc/os-release", "/etc/debian_version", SBOM}, (
        "unexpected files: %s" % brief(rest))
    assert libs == mapped, "in the image, not loaded: %s; loaded, not in the image: %s" % (
        sorted(libs - mapped), sorted(mapped - libs))
    for tool in ("sh", "bash", "dash", "busybox", "apt", "apt-get", "dpkg"):
        assert not [p for p in files if os.path.basename(p) == tool]

    assert "kubia:x:%d:%d:kubia:/var/data:/sbin/nologin" % (KUBIA_UID, KUBIA_GID) in etc["passwd"]
    assert "kubia:x:%d:" % KUBIA_GID in etc["group"]
    data = dirs["/var/data"]
    assert (data.st_uid, data.st_gid) == (KUBIA_UID, KUBIA_GID)


class MountedImage:
    """The image's files, read-only under root (podman image mount), for one test."""

    def __init__(self, image):
        self.image = image
        self.root = podman("image", "mount", image).stdout.strip()

    def path(self, p):
        return os.path.join(self.root, p.lstrip("/"))

    def read(self, p):
        with open(self.path(p), "rb") as f:
            return f.read()

    def unmount(self):
        podman("image", "unmount", self.image, check=False)


@pytest.fixture
def mounted(image):
    m = MountedImage(image)
    try:
        yield m
    finally:
        m.unmount()


def admindir_of(m, where):
    """A dpkg database made of the image's records: status.d/<package> stanzas become
    the status file, each <package>.md5sums the package's file list (info/*.list)."""
    os.makedirs(os.path.join(where, "info"))
    os.makedirs(os.path.join(where, "updates"))
    stanzas, sums = [], {}
    for name in sorted(os.listdir(m.path(STATUS_D))):
        text = m.read(os.path.join(STATUS_D, name)).decode()
        if name.endswith(".md5sums"):
            sums[name[:-len(".md5sums")]] = text
            with open(os.path.join(where, "info", name[:-len(".md5sums")] + ".list"), "w") as f:
                f.write("".join("/%s\n" % line.split(None, 1)[1].strip()
                                for line in text.splitlines()))
        else:
            stanzas.append(text.rstrip("\n") + "\n")
    with open(os.path.join(where, "status"), "w") as f:
        f.write("\n".join(stanzas))
    return sums


def dpkg_query(admindir, *args):
    r = subprocess.run([TOOL["dpkg-query"], "--admindir=" + admindir, *args],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, "dpkg-query %s: %s" % (" ".join(args), r.stderr)
    return r.stdout


def loader_closure(m):
    """The shared libraries the image's own dynamic loader resolves for kubia, inside the
    image (chroot; the loader needs no shell): the ldd closure, loader included."""
    [interp] = [p for p in ("/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1")
                if os.path.exists(m.path(p))]
    r = subprocess.run([TOOL["chroot"], m.root, interp, "--list", "/usr/bin/kubia"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    libs = {interp}
    for line in r.stdout.splitlines():
        if "=>" in line:
            target = line.split("=>", 1)[1].split()[0]
            assert target.startswith("/"), "not found in the image: %s" % line.strip()
            libs.add(target)
    return libs


def test_package_records_name_every_library_kubia_loads(mounted, tmp_path):
    """What a scanner reads: dpkg status records for exactly the Debian packages whose
    files the image holds, each file listed with the package's checksum."""
    admin = str(tmp_path / "dpkg")
    sums = admindir_of(mounted, admin)
    installed = {}
    for line in dpkg_query(admin, "-W", "-f", "${Package}\t${Version}\t${Status}\n") \
            .splitlines():
        name, version, status = line.split("\t")
        assert status == "install ok installed", line
        installed[name] = version
    assert set(installed) == set(sums), "records without file lists or the other way round"

    libs = loader_closure(mounted)
    assert len(libs) > 10 and any("libcurl.so" in p for p in libs), libs
    owners = {}
    for path in sorted(libs) + ["/etc/os-release", "/etc/debian_version"]:
        out = dpkg_query(admin, "-S", path).strip()
        pkg, _, found = out.partition(": ")
        assert found == path, out
        owners[path] = pkg.split(":")[0]
    # every library is some package's, and every package recorded holds a file here
    assert set(owners.values()) == set(installed), (
        "recorded but holding nothing: %s" % sorted(set(installed) - set(owners.values())))
    assert owners["/etc/os-release"] == "base-files"
    assert any(p.endswith("/libc.so.6") and o == "libc6" for p, o in owners.items())

    # the checksums are those of the files in the image, and list nothing else
    listed = {}
    for pkg, text in sums.items():
        for line in text.splitlines():
            md5, rel = line.split(None, 1)
            listed["/" + rel.strip()] = (pkg, md5)
    assert set(listed) == set(owners)
    for path, (pkg, md5) in listed.items():
        assert hashlib.md5(mounted.read(path)).hexdigest() == md5, path
        assert owners[path] == pkg, path


def test_the_sbom_lists_kubia_and_the_same_packages(mounted, tmp_path):
    doc = json.loads(mounted.read(SBOM))
    assert doc["spdxVersion"] == "SPDX-2.3" and doc["dataLicense"] == "CC0-1.0"
    assert doc["SPDXID"] == "SPDXRef-DOCUMENT"
    assert doc["documentNamespace"].startswith("https://")
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(SOURCE_DATE_EPOCH))
    assert doc["creationInfo"]["created"] == created
    packages = {p["SPDXID"]: p for p in doc["packages"]}
    assert len(packages) == len(doc["packages"]), "an SPDXID twice"
    kubia = packages.pop("SPDXRef-Package-kubia")
    assert kubia["name"] == "kubia" and kubia["versionInfo"] == meson_version()
    assert kubia["checksums"] == [{"algorithm": "SHA256", "checksumValue": hashlib.sha256(
        mounted.read("/usr/bin/kubia")).hexdigest()}]

    admin = str(tmp_path / "dpkg")
    admindir_of(mounted, admin)
    records = {}
    for line in dpkg_query(admin, "-W", "-f",
                           "${Package}\t${Version}\t${Architecture}\n").splitlines():
        name, version, arch = line.split("\t")
        records[name] = (version, arch)
    assert {p["name"]: p["versionInfo"] for p in packages.values()} == {
        n: v for n, (v, _) in records.items()}
    for p in packages.values():
        version, arch = records[p["name"]]
        [ref] = p["externalRefs"]
        assert ref["referenceType"] == "purl"
        plain = version.split(":", 1)[-1].replace("+", "%2B")
        assert ref["referenceLocator"].startswith("pkg:deb/debian/%s@%s?arch=%s&distro=debian-"
                                                  % (p["name"], plain, arch)), ref
        assert p["supplier"] == "Organization: Debian"
    relations = {(r["spdxElementId"], r["relationshipType"], r["relatedSpdxElement"])
                 for r in doc["relationships"]}
    assert relations == {("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Package-kubia")} | {
        ("SPDXRef-Package-kubia", "DEPENDS_ON", i) for i in packages}


def test_every_file_is_dated_by_source_date_epoch(mounted):
    dated = []
    for parent, dnames, fnames in os.walk(mounted.root):
        for n in dnames + fnames:
            full = os.path.join(parent, n)
            if int(os.lstat(full).st_mtime) != SOURCE_DATE_EPOCH:
                dated.append("/" + os.path.relpath(full, mounted.root))
    assert not dated, "not dated %d: %s" % (SOURCE_DATE_EPOCH, brief(dated))


def test_the_base_image_is_pinned_by_digest():
    with open(DOCKERFILE, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, re.M)
    assert m, "no ARG BASE_IMAGE with a default"
    assert re.fullmatch(r"docker\.io/library/debian:bookworm-slim@sha256:[0-9a-f]{64}",
                        m.group(1)), m.group(1)
    assert text.index("ARG BASE_IMAGE=") < text.index("\nFROM ")
    froms = re.findall(r"^FROM (\S+)", text, re.M)
    assert froms == ["${BASE_IMAGE}", "scratch"], froms


def build_copy(ctx, tmp_path, name):
    """podman build of the context ctx; (image ID, the steps it ran instead of taking
    them from the cache)."""
    iidfile = str(tmp_path / (name + ".iid"))
    r = podman("build", *BUILD_ARGS, "--iidfile", iidfile, "-f",
               str(ctx / "docker" / "Dockerfile"), str(ctx), timeout=900, check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    lines = r.stdout.splitlines()
    ran = [line[:80] for i, line in enumerate(lines)
           if re.match(r"\[\d+/\d+\] STEP \d+/\d+: (RUN|COPY) ", line)
           and not (i + 1 < len(lines) and lines[i + 1].startswith("--> Using cache"))]
    with open(iidfile) as f:
        return f.read().strip().split(":")[-1], ran


def test_test_files_and_documents_do_not_invalidate_the_build_cache(image, tmp_path):
    """A copy of the repository is built, then its tests, documents and manifests
    change and it is built again: every step of the second build comes from the cache,
    and the image is the same one. (The copy keeps the sources still while others may
    be editing the working tree.)"""
    ctx = tmp_path / "context"
    ctx.mkdir()
    for name in os.listdir(TOP):
        src = os.path.join(TOP, name)
        if name == ".git" or name.startswith("build"):
            continue
        if os.path.isdir(src):
            shutil.copytree(src, str(ctx / name), symlinks=True,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, str(ctx / name))
    made = []
    try:
        first, _ = build_copy(ctx, tmp_path, "first")
        made.append(first)
        (ctx / "test" / "a_new_test.py").write_text("def test_nothing():\n    pass\n")
        with open(str(ctx / "test" / "meson.build"), "a") as f:
            f.write("# changed\n")
        with open(str(ctx / "README.md"), "a") as f:
            f.write("changed\n")
        (ctx / "k8s" / "base" / "extra.yaml").write_text("kind: List\n")
        second, ran = build_copy(ctx, tmp_path, "second")
        made.append(second)
        assert not ran, "steps run again: %s" % ran
        assert second == first
    finally:
        # the copy's images, unless they are the suite's image (then they are the same)
        mine = inspect_image(image)["Id"]
        for iid in set(made) - {mine}:
            podman("rmi", iid, check=False)


def test_sigterm_stops_kubia_within_a_second(image, containers):
    port = free_port()
    c = containers.run(*host_network(port), port=port)
    c.wait_ready()
    # Measured from before the signal is asked for (podman's own start-up included)
    # to the moment the process is gone, seen through a pidfd.
    fd = os.pidfd_open(c.pid)
    try:
        started = time.monotonic()
        podman("kill", "--signal", "TERM", c.name, timeout=10)
        gone, _, _ = select.select([fd], [], [], 5)
        took = time.monotonic() - started
    finally:
        os.close(fd)
    assert gone, "kubia still runs 5 s after SIGTERM"
    print("SIGTERM to exit: %.3f s" % took)
    assert took < 1.0, "kubia took %.3f s to stop on SIGTERM" % took
    r = podman("wait", c.name, timeout=10)
    assert r.stdout.strip() == "0", "exit status %s" % r.stdout.strip()
    assert "SIGTERM received" in c.logs()


@pytest.fixture
def netns():
    """A network namespace with only its loopback, and the processes started in it."""
    name = PREFIX + "-ns"
    subprocess.run([TOOL["ip"], "netns", "add", name], check=True, timeout=10)
    procs = []
    try:
        subprocess.run([TOOL["ip"], "-n", name, "link", "set", "lo", "up"], check=True, timeout=10)
        yield name, procs
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        subprocess.run([TOOL["ip"], "netns", "delete", name], timeout=10)
        assert not os.path.exists("/run/netns/" + name), "namespace %s left" % name


def ns_curl(ns, url, body=None):
    """An HTTP request from inside the namespace; (status, body text)."""
    args = [TOOL["ip"], "netns", "exec", ns, TOOL["curl"], "-sS", "--max-time", "5",
            "-w", "\n%{http_code}"]
    if body is not None:
        args += ["--data-binary", "@-"]
    r = subprocess.run(args + [url], capture_output=True, text=True, timeout=15,
                       input=body if body is not None else "")
    if r.returncode != 0:
        raise OSError("curl %s: %s" % (url, r.stderr.strip()))
    text, _, code = r.stdout.rpartition("\n")
    return int(code), text


# The parameter order matters: pytest tears fixtures down in reverse, so the containers
# go before the namespace they live in.
def test_two_pods_with_cluster_dns_in_a_namespace(image, netns, containers, tmp_path):
    """kubia-0 with the image's defaults only (port 8080, peers mode, /var/data) and
    kubia-1 on 8081 share a namespace; dnsmasq answers as cluster DNS. Each lists the
    other by asking it over HTTP: c-ares and libcurl work in the scratch image."""
    ns, procs = netns
    svc = "kubia.default.svc.cluster.local"
    pods = {"kubia-0": 8080, "kubia-1": 8081}
    dns = [TOOL["dnsmasq"], "-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--no-poll",
           "--bind-interfaces", "--listen-address=127.0.0.1", "--port=53",
           "--local=/cluster.local/", "--pid-file=", "--log-facility=-", "--user=root"]
    for pod, port in pods.items():
        dns += ["--srv-host=%s,%s.%s,%d" % (svc, pod, svc, port),
                "--host-record=%s.%s,127.0.0.1" % (pod, svc)]
    procs.append(subprocess.Popen([TOOL["ip"], "netns", "exec", ns] + dns, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def dns_answers():
        assert procs[0].poll() is None, "dnsmasq exited"
        r = subprocess.run([TOOL["ip"], "netns", "exec", ns, TOOL["dig"], "+short", "+time=1",
                            "+tries=1", "@127.0.0.1", "SRV", svc],
                           capture_output=True, text=True, timeout=10)
        return len(r.stdout.strip().splitlines()) == len(pods)
    wait_until(dns_answers, 10, "dnsmasq to answer")

    pod_dns = ["--network", "ns:/run/netns/" + ns, "--read-only", "--dns", "127.0.0.1",
               "--dns-search", "default.svc.cluster.local", "--dns-search", "svc.cluster.local",
               "--dns-search", "cluster.local", "--dns-option", "ndots:5"]
    for pod, port in pods.items():
        extra = [] if port == 8080 else ["-e", "KUBIA_PORT=%d" % port]
        c = containers.run(*pod_dns, "--hostname", pod, *extra,
                           "-v", volume_dir(tmp_path / ("data-" + pod)) + ":/var/data")
        url = "http://127.0.0.1:%d" % port
        c.wait_ready(probe=lambda path, url=url: ns_curl(ns, url + path)[0])
        assert ns_curl(ns, url + "/", "data of " + pod) == (200, "Data stored on pod %s\n" % pod)

    for pod, port in pods.items():
        assert ns_curl(ns, "http://127.0.0.1:%d/" % port) == (200, (
            "You've hit %s\nData stored in the cluster:\n" % pod +
            "".join("- %s.%s: data of %s\n" % (p, svc, p) for p in sorted(pods))))

    links = subprocess.run([TOOL["ip"], "-n", ns, "-o", "link"], capture_output=True, text=True,
                           timeout=10).stdout.splitlines()
    assert len(links) == 1 and ": lo:" in links[0], "the namespace has a way out: %s" % links


# ---------------------------------------------------------------------------
# the memory limit of the manifests, under clients that would exceed it

MIB = 1 << 20


def _read_answer(sock, timeout=60):
    """(status, body length) of the one answer on sock (its body is drained, not
    kept)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise AssertionError("closed before an answer: %r" % data[:200])
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))
    got = len(rest)
    while got < length:
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise AssertionError("closed %d bytes into a %d-byte answer" % (got, length))
        got += len(chunk)
    return status, length


def _srv_dns(port, pods):
    """dnsmasq on 127.0.0.1:port with the SRV records of the Service for pods, a list of
    (name, port), every pod at 127.0.0.1."""
    svc = "kubia.default.svc.cluster.local"
    args = [TOOL["dnsmasq"], "-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--listen-address=127.0.0.1", "--bind-interfaces", "--port=%d" % port,
            "--local=/cluster.local/", "--pid-file="]
    for name, p in pods:
        fqdn = "%s.%s" % (name, svc)
        args += ["--srv-host=%s,%s,%d,0,100" % (svc, fqdn, p),
                 "--host-record=%s,127.0.0.1" % fqdn]
    return subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _slow_reader_cluster(containers, ports, dns_port):
    """Two peers holding 1 MiB each (host network) and kubia-0 under the manifests'
    memory limit (64 MiB, so a budget of half of it) asking them through dnsmasq on
    dns_port: kubia-0's view is 2 MiB. Returns kubia-0's container."""
    for name in ("kubia-1", "kubia-2"):
        peer = containers.run(*host_network(ports[name], name), port=ports[name])
        peer.wait_ready()
        assert request(ports[name], "POST", "/", b"p" * MIB)[0] == 200
    pod = containers.run(
        "--read-only", "--network", "host", "--memory", "64m", "--memory-swap", "64m",
        "-e", "KUBIA_PORT=%d" % ports["kubia-0"], "-e", "KUBIA_HOSTNAME=kubia-0",
        "-e", "KUBIA_DNS_SERVER=127.0.0.1:%d" % dns_port,
        "-e", "KUBIA_SERVICE=kubia.default.svc.cluster.local.",
        port=ports["kubia-0"])
    pod.wait_ready()
    assert "half the cgroup memory limit" in pod.logs(), pod.logs()
    return pod


def _pod_state(pod):
    """kubia-0 is running, not OOM-killed; returns its peak resident set in KiB."""
    assert pod.alive(), pod.logs()
    info = json.loads(podman("container", "inspect", pod.name).stdout)[0]["State"]
    assert info["Running"] and not info.get("OOMKilled"), info
    peak = int(proc_status(pod.pid)["VmHWM"].split()[0])
    print("kubia VmHWM %d KiB" % peak)
    return peak


def test_every_slow_reader_of_one_view_is_served(image, containers):
    """Under the manifests' memory limit (64 MiB), 200 clients ask for the same cluster
    view of 2 MiB (two peers hold 1 MiB each) and read it only once all have asked: one
    body per view would need 400 MiB. The views of the same bytes share one body, so
    every reader gets the whole view (no 503), and the pod stays under its limit."""
    assert TOOL["dnsmasq"], "dnsmasq is needed"
    ports = {n: free_port() for n in ("kubia-0", "kubia-1", "kubia-2")}
    dns_port = free_port()
    dns = _srv_dns(dns_port, sorted(ports.items()))
    socks = []
    try:
        pod = _slow_reader_cluster(containers, ports, dns_port)
        for _ in range(200):
            s = socket.create_connection(("127.0.0.1", ports["kubia-0"]), timeout=30)
            s.sendall(b"GET / HTTP/1.1\r\nHost: kubia-0\r\n\r\n")  # read later
            socks.append(s)
        answers = [_read_answer(s) for s in socks]
        peak = _pod_state(pod)
    finally:
        for s in socks:
            s.close()
        dns.terminate()
        dns.wait(10)
    statuses = [status for status, _ in answers]
    assert statuses == [200] * 200, "%d of 200 views refused" % (200 - statuses.count(200))
    assert all(length > 2 * MIB for _, length in answers), sorted({n for _, n in answers})
    assert peak < 64 * 1024, "VmHWM %d KiB under a 64 MiB limit" % peak


def test_the_manifests_memory_limit_holds_against_uploads_and_slow_readers(image, containers):
    """Under the manifests' memory limit (64 MiB), 200 clients uploading 1 MiB slowly
    and 200 clients that ask for a cluster view of 2 MiB (two peers hold 1 MiB each) and
    read it slowly: without a budget the pod would need hundreds of MiB and be killed.
    With the default budget (half the cgroup limit) every request gets 200 or 503, the
    container is not killed, and its memory stays under the limit."""
    assert TOOL["dnsmasq"], "dnsmasq is needed"
    ports = {n: free_port() for n in ("kubia-0", "kubia-1", "kubia-2")}
    dns_port = free_port()
    dns = _srv_dns(dns_port, sorted(ports.items()))
    socks = []
    try:
        pod = _slow_reader_cluster(containers, ports, dns_port)
        port = ports["kubia-0"]
        head = b"POST / HTTP/1.1\r\nHost: kubia-0\r\nContent-Length: %d\r\n\r\n" % MIB
        for i in range(400):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            if i % 2 == 0:
                s.sendall(head + b"u" * (MIB // 4))  # an upload, a quarter sent
            else:
                s.sendall(b"GET / HTTP/1.1\r\nHost: kubia-0\r\n\r\n")  # read later
            socks.append(s)
        for i in range(0, 400, 2):
            socks[i].sendall(b"u" * (MIB - MIB // 4))
        statuses = [_read_answer(s)[0] for s in socks]
        peak = _pod_state(pod)
    finally:
        for s in socks:
            s.close()
        dns.terminate()
        dns.wait(10)
    assert set(statuses) <= {200, 503}, sorted(set(statuses))
    uploads, views = statuses[0::2], statuses[1::2]
    assert 200 in uploads and 200 in views, (uploads.count(200), views.count(200))
    assert peak < 64 * 1024, "VmHWM %d KiB under a 64 MiB limit" % peak
