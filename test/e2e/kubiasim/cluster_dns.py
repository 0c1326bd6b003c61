"""Cluster DNS: dnsmasq on the bridge, answering for the headless Service with the ready
pods only (NXDOMAIN when there are none). Its command line holds the records, so a
change of endpoints restarts it.

Two sets of records (`kubia-sim up --cluster-dns`):

* coredns (the default): what CoreDNS and kube-dns publish. The Kubernetes DNS
  specification's records: A for each pod (<pod>.<svc>.<ns>.svc.cluster.local) and for
  the Service's name (every ready pod's address), and SRV for each named port of the
  Service (_<port>._<proto>.<svc>.<ns>.svc.cluster.local: one per pod, the endpoint's
  port); and, beyond the specification, SRV for the bare Service name too
  (<svc>.<ns>.svc.cluster.local: one per pod and port, named or not).
* spec: the specification's records only, as a DNS server that implements just the
  specification answers: no SRV for the bare name, which then has A records only
  (an SRV query of it gets an answer with no record), or nothing at all without pods.
"""

import os

from kubiatest import dnswire

from .processes import alive, spawn, stop_ref
from .util import SimError, tool, wait_for

DNS_TTL = 5  # CoreDNS's default TTL for the kubernetes plugin
DNS_MODES = ("coredns", "spec")


def srv_records(c, ready):
    """{owner name: [(target, port), ...]}: the SRV records of the headless Service for
    the ready pods, in the cluster's DNS mode."""
    ns_domain = c.domain()
    coredns = c.st.get("dns_mode", "coredns") == "coredns"
    records = {}

    def add(name, record):
        if record not in records.setdefault(name, []):
            records[name].append(record)
    for p in ready:
        target = c.pod_fqdn(p["name"])
        ports = p.get("srv_ports") or [{"name": "http", "protocol": "tcp",
                                        "port": p["srv_port"]}]
        for port in ports:
            if coredns:
                add(ns_domain, (target, port["port"]))
            if port["name"]:
                add("_%s._%s.%s" % (port["name"], port["protocol"], ns_domain),
                    (target, port["port"]))
    return records


def dns_args(c, ready):
    ns_domain = c.domain()
    # --local=/#/: every name is answered here, NXDOMAIN for what is not held, as in a
    # cluster whose upstream DNS knows no such name (the pods have no route out, so
    # there is no upstream to ask). Without it dnsmasq refuses names outside the zones
    # it serves, and a name that a resolver asks as given after its search list
    # (_http._tcp.kubia) would get REFUSED, an error, where a cluster says NXDOMAIN.
    a = [tool("dnsmasq"), "-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
         "--no-poll", "--bind-interfaces", "--listen-address=" + c.dns_ip, "--port=53",
         "--local=/#/", "--pid-file=", "--user=root",
         "--local-ttl=%d" % DNS_TTL, "--log-facility=" + os.path.join(c.run, "dnsmasq.log")]
    if c.st.get("dns_log_queries"):
        a.append("--log-queries")
    for name, records in sorted(srv_records(c, ready).items()):
        # CoreDNS spreads a weight of 100 over the records of one answer
        weight = 100 // len(records)
        for target, port in records:
            a.append("--srv-host=%s,%s,%d,0,%d" % (name, target, port, weight))
    for p in ready:
        a.append("--host-record=%s,%s" % (c.pod_fqdn(p["name"]), p["ip"]))
    for p in ready:  # the headless Service's own name: every ready pod's address
        a.append("--host-record=%s,%s" % (ns_domain, p["ip"]))
    return a


def dns_rcode(server, name, qtype=33, timeout=0.3):
    """The rcode of one query, or None when nothing answered."""
    try:
        r = dnswire.dns_query(server, 53, name, qtype, timeout)
    except OSError:
        return None
    return None if r is None else r[0]


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
        return dns_rcode(c.dns_ip, c.domain()) is not None
    wait_for(answering, 10, "the cluster DNS to answer")


def dns_stop(c):
    stop_ref(c.st.get("dns"), 5)
    c.st["dns"] = None
    c.st["dns_stopped"] = True
    c.save()
