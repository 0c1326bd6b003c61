"""The cluster's network: a bridge in a namespace of its own, a veth pair per pod, one
veth to the host (for the API server's proxy and for probes). Nothing has a default
route, so nothing in the cluster reaches beyond it. Also: a socket inside a pod's
network namespace (for the liveness probe), and whether a subnet or a port is free.
"""

import contextlib
import ctypes
import ipaddress
import os
import shutil
import socket

from .util import sh, tool, write_atomic


def net_up(c):
    ip = tool("ip")
    sh(ip, "netns", "add", c.net)
    sh(ip, "-n", c.net, "link", "set", "lo", "up")
    # Fixed addresses: a bridge otherwise takes the lowest MAC of its ports, which
    # changes as pods come and go, and a pod that comes back with its old IP but a new
    # MAC would be unreachable until every neighbour cache expired.
    sh(ip, "-n", c.net, "link", "add", "br0", "address", mac_of(c.dns_ip), "type", "bridge")
    sh(ip, "-n", c.net, "addr", "add", c.dns_ip + "/24", "dev", "br0")
    sh(ip, "-n", c.net, "link", "set", "br0", "up")
    sh(ip, "link", "add", c.host_if, "type", "veth", "peer", "name", "host0", "netns", c.net)
    sh(ip, "-n", c.net, "link", "set", "host0", "master", "br0", "up")
    sh(ip, "addr", "add", c.host_ip + "/24", "dev", c.host_if)
    sh(ip, "link", "set", c.host_if, "up")


def mac_of(addr):
    """A locally administered MAC made of the IPv4 address: the same pod, the same MAC."""
    return "02:00:" + ":".join("%02x" % int(o) for o in addr.split("."))


def pod_net_create(c, netns, veth, addr):
    ip = tool("ip")
    sh(ip, "netns", "add", netns)
    sh(ip, "-n", netns, "link", "set", "lo", "up")
    sh(ip, "-n", c.net, "link", "add", veth, "type", "veth", "peer", "name", "eth0",
       "address", mac_of(addr), "netns", netns)
    sh(ip, "-n", c.net, "link", "set", veth, "master", "br0", "up")
    sh(ip, "-n", netns, "addr", "add", addr + "/24", "dev", "eth0")
    sh(ip, "-n", netns, "link", "set", "eth0", "up")
    etc = os.path.join("/etc/netns", netns)
    os.makedirs(etc, exist_ok=True)
    ns = c.st["namespace"]
    write_atomic(os.path.join(etc, "resolv.conf"),
                 "nameserver %s\nsearch %s.svc.cluster.local svc.cluster.local cluster.local\n"
                 "options ndots:5\n" % (c.dns_ip, ns))


def pod_net_delete(c, netns, veth):
    ip = tool("ip")
    if veth:
        sh(ip, "-n", c.net, "link", "del", veth, check=False)
    sh(ip, "netns", "del", netns, check=False)
    shutil.rmtree(os.path.join("/etc/netns", netns), ignore_errors=True)
    with contextlib.suppress(OSError):
        os.rmdir("/etc/netns")  # only when no other namespace has files there


def set_link(c, veth, up):
    sh(tool("ip"), "-n", c.net, "link", "set", veth, "up" if up else "down")


def subnet_free(base):
    net = ipaddress.ip_network(base + ".0/24")
    r = sh(tool("ip"), "-4", "-o", "addr", "show")
    for line in r.stdout.splitlines():
        parts = line.split()
        if "inet" in parts:
            a = ipaddress.ip_interface(parts[parts.index("inet") + 1])
            if a.network.overlaps(net):
                return False
    r = sh(tool("ip"), "-4", "route", "show", "table", "all")
    for line in r.stdout.splitlines():
        dst = line.split()[0]
        if dst in ("default", "broadcast", "local", "unreachable", "blackhole", "prohibit"):
            dst = line.split()[1] if dst != "default" else "0.0.0.0/0"
        with contextlib.suppress(ValueError):
            if dst != "0.0.0.0/0" and ipaddress.ip_network(dst, strict=False).overlaps(net):
                return False
    return True


def port_free(host, port, family=socket.AF_INET):
    try:
        s = socket.socket(family, socket.SOCK_STREAM)
    except OSError:
        return False
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


CLONE_NEWNET = 0x40000000
_libc = None


def netns_socket(netns):
    """A TCP socket in the network namespace netns (the calling thread returns to its
    own namespace before this returns; the socket stays in netns)."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    with open("/proc/thread-self/ns/net") as home, \
            open(os.path.join("/run/netns", netns)) as target:
        if _libc.setns(target.fileno(), CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, "setns into %s: %s" % (netns, os.strerror(err)))
        try:
            return socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        finally:
            if _libc.setns(home.fileno(), CLONE_NEWNET) != 0:
                # never go on in the wrong namespace
                os._exit(70)
