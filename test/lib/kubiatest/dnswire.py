# SPDX-License-Identifier: MIT
"""DNS messages as the tests' clients and servers write and read them: names without
compression, one question, the header's counts; and one query over UDP."""

import random
import socket
import struct
import time

QTYPE_A, QTYPE_SRV, QTYPE_ANY = 1, 33, 255
NOERROR, SERVFAIL, NXDOMAIN, REFUSED = 0, 2, 3, 5
FLAG_TC = 0x0200


def encode_name(name):
    """name in wire format, uncompressed; a trailing dot or none, the same."""
    return b"".join(bytes([len(p)]) + p.encode("ascii")
                    for p in name.rstrip(".").split(".") if p) + b"\0"


def header(msg):
    """(id, flags, qdcount, ancount, nscount, arcount), or None when msg is too short."""
    if len(msg) < 12:
        return None
    return struct.unpack("!HHHHHH", msg[:12])


def parse_question(msg):
    """(id, flags, qname lower-case, qtype, end offset of the question) of a message with
    one question, or None when it has another count or cannot be read."""
    h = header(msg)
    if h is None or h[2] != 1:
        return None
    labels, off = [], 12
    while off < len(msg):
        n = msg[off]
        if n == 0:
            off += 1
            break
        if n & 0xC0:
            return None
        labels.append(msg[off + 1:off + 1 + n].decode("ascii", "replace"))
        off += 1 + n
    if off + 4 > len(msg):
        return None
    qtype, _qclass = struct.unpack("!HH", msg[off:off + 4])
    return h[0], h[1], ".".join(labels).lower(), qtype, off + 4


def query_packet(name, qtype, qid=None):
    """(id, message) of a recursive query for name and qtype, class IN."""
    if qid is None:
        qid = random.randrange(1, 65535)
    hdr = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    return qid, hdr + encode_name(name) + struct.pack("!HH", qtype, 1)


def reply_head(qid, flags, ancount, msg, qend, arcount=0):
    """The header and the question (msg[12:qend], the query's own) of a reply."""
    return struct.pack("!HHHHHH", qid, flags, 1, ancount, 0, arcount) + msg[12:qend]


def dns_query(server, port, name, qtype=QTYPE_SRV, timeout=0.5):
    """One query over UDP: (rcode, ancount, truncated) of its answer, or None when
    nothing answered it within timeout s."""
    qid, pkt = query_packet(name, qtype)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(pkt, (server, port))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data, _ = s.recvfrom(4096)
            except (socket.timeout, ConnectionRefusedError):
                return None
            h = header(data)
            if h is not None and h[0] == qid:
                return h[1] & 0xF, h[3], bool(h[1] & FLAG_TC)
        return None
    finally:
        s.close()
