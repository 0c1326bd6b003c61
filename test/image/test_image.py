"""The container image: docker/Dockerfile built with podman, then run the way a
StatefulSet's pod runs it (non-root, read-only root file system, a volume at /var/data).

The image is built once per run from the Dockerfile as it is (podman's layer cache
keeps a rebuild of unchanged sources short) and kept as localhost/kubia:test, so later
suites can use it. Its base, debian:bookworm-slim, is made locally by base-image.sh.

Root only: podman as root and network namespaces. Traffic goes to loopback only: the
containers either share the host's network, listen on a free port and are asked on
127.0.0.1, or live in a network namespace this test makes, which has nothing but its
own loopback.
Every container (with its anonymous volumes), namespace and process a test starts is
removed when it ends, pass or fail.
"""

import http.client
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

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
DOCKERFILE = os.path.join(TOP, "docker", "Dockerfile")
BASE_IMAGE_SH = os.path.join(HERE, "base-image.sh")
CONTAINERS_CONF = os.path.join(HERE, "containers.conf")
IMAGE = "localhost/kubia:test"
MAX_IMAGE_BYTES = 25 * 1000 * 1000
KUBIA_UID = KUBIA_GID = 10001
# Every container and namespace of this run carries it, so cleanup can check that none
# is left behind, and parallel runs do not meet.
PREFIX = "kubia-image-test-%d" % os.getpid()
_PATH = os.environ.get("PATH", "/usr/bin:/bin") + ":/usr/sbin:/sbin"
TOOL = {t: shutil.which(t, path=_PATH)
        for t in ("podman", "debootstrap", "ip", "dnsmasq", "curl", "dig")}


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


def wait_until(pred, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(interval)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(port, method, path, body=None):
    """One HTTP request to 127.0.0.1:port; (status, body text)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request(method, path, body=body)
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


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
    r = subprocess.run(["bash", BASE_IMAGE_SH], capture_output=True, text=True,
                       timeout=900, env=env)
    assert r.returncode == 0, "base-image.sh failed:\n%s%s" % (r.stdout, r.stderr)

    old = podman("image", "inspect", "--format", "{{.Id}}", IMAGE, check=False)
    started = time.monotonic()
    r = podman("build", "-f", DOCKERFILE, "-t", IMAGE, TOP, timeout=1500, check=False)
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
    rest = set(files) - libs
    assert rest == {"/usr/bin/kubia", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf"}, (
        "unexpected files: %s" % brief(rest))
    assert libs == mapped, "in the image, not loaded: %s; loaded, not in the image: %s" % (
        sorted(libs - mapped), sorted(mapped - libs))
    for tool in ("sh", "bash", "dash", "busybox", "apt", "apt-get", "dpkg"):
        assert not [p for p in files if os.path.basename(p) == tool]

    assert "kubia:x:%d:%d:kubia:/var/data:/sbin/nologin" % (KUBIA_UID, KUBIA_GID) in etc["passwd"]
    assert "kubia:x:%d:" % KUBIA_GID in etc["group"]
    data = dirs["/var/data"]
    assert (data.st_uid, data.st_gid) == (KUBIA_UID, KUBIA_GID)


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
