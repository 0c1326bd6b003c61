"""Cluster DNS: dnsmasq on the bridge, answering as CoreDNS does for the headless Service
(SRV and A records of the ready pods only, NXDOMAIN when there are none). Its command
line holds the records, so a change of endpoints restarts it.
"""

import os
import socket
import struct

from .processes import alive, spawn, stop_ref
from .util import SimError, tool, wait_for

DNS_TTL = 5  # CoreDNS's default TTL for the kubernetes plugin


def dns_args(c, ready):
    ns_domain = c.domain()
    a = [tool("dnsmasq"), "-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
         "--no-poll", "--bind-interfaces", "--listen-address=" + c.dns_ip, "--port=53",
         "--local=/cluster.local/", "--local=//", "--pid-file=", "--user=root",
         "--local-ttl=%d" % DNS_TTL, "--log-facility=" + os.path.join(c.run, "dnsmasq.log")]
    if c.st.get("dns_log_queries"):
        a.append("--log-queries")
    weight = 100 // len(ready) if ready else 0
    for p in ready:
        target = c.pod_fqdn(p["name"])
        for name in (ns_domain, "_http._tcp." + ns_domain):
            a.append("--srv-host=%s,%s,%d,0,%d" % (name, target, p["srv_port"], weight))
        a.append("--host-record=%s,%s" % (target, p["ip"]))
    for p in ready:  # the headless Service's own name: every ready pod's address
        a.append("--host-record=%s,%s" % (ns_domain, p["ip"]))
    return a


def dns_query(server, name, qtype=33, timeout=0.3):
    """The rcode of one query, or None when nothing answered."""
    qid = os.getpid() & 0xFFFF
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p)
    pkt = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q + b"\0" + struct.pack("!HH", qtype, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(pkt, (server, 53))
        data = s.recv(4096)
        if len(data) >= 12 and struct.unpack("!H", data[:2])[0] == qid:
            return struct.unpack("!H", data[2:4])[0] & 0xF
    except OSError:
        return None
    finally:
        s.close()
    return None


def dns_apply(c, ready):
    st = c.st
    args = dns_args(c, ready)
    if st.get("dns_stopped"):
        return
    if alive(st.get("dns")) and st.get("dns_args") == args:
        return
    stop_ref(st.get("dns"), 5)
    ref, _ = spawn([tool("ip"), "netns", "exec", c.net] + args,
                   os.path.join(c.run, "dnsmasq.out"))
    st["dns"], st["dns_args"] = ref, args
    c.save()

    def answering():
        if not alive(ref):
            raise SimError("dnsmasq exited at start: see %s" % os.path.join(c.run, "dnsmasq.out"))
        return dns_query(c.dns_ip, c.domain()) is not None
    wait_for(answering, 10, "the cluster DNS to answer")


def dns_stop(c):
    stop_ref(c.st.get("dns"), 5)
    c.st["dns"] = None
    c.st["dns_stopped"] = True
    c.save()
