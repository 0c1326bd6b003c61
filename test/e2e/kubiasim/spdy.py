"""kubectl exec and attach over SPDY/3.1, as the client's spdystream speaks it: one
stream per channel, opened by the client with a streamtype header.

Flow control: spdystream neither sends WINDOW_UPDATE nor reads it, so the server's
sending is held back by TCP alone (as the kubelet's own spdystream is); what the client
sends is acknowledged with WINDOW_UPDATE (SPDY/3.1's receiver's duty), per stream and
for the session, as the command takes it."""

import struct
import threading
import zlib

from .channels import (ERROR, RESIZE, STDERR, STDIN, STDOUT, STREAM_TYPES, Transport,
                       header_values, http_status, negotiate)

# SPDY/3's header compression dictionary (draft-mbelshe-httpbis-spdy-00, 2.6.10.1):
# each of these names and values with its 32-bit length, then the plain text after.
_SPDY_WORDS = (
    "options head post put delete trace accept accept-charset accept-encoding "
    "accept-language accept-ranges age allow authorization cache-control connection "
    "content-base content-encoding content-language content-length content-location "
    "content-md5 content-range content-type date etag expect expires from host if-match "
    "if-modified-since if-none-match if-range if-unmodified-since last-modified location "
    "max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after "
    "server te trailer transfer-encoding upgrade user-agent vary via warning "
    "www-authenticate method get status 200|OK version HTTP/1.1 url public set-cookie "
    "keep-alive origin").split()
_SPDY_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502"
    "504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
    "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error"
    "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct "
    "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,"
    "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8"
    "charset=iso-8859-1,utf-,*,enq=0.")
SPDY_DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode()
                           for w in (x.replace("|", " ") for x in _SPDY_WORDS)
                           ) + _SPDY_TAIL.encode()

SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = (
    1, 2, 3, 4, 6, 7, 8, 9)
FLAG_FIN = 0x01
RST_PROTOCOL_ERROR, RST_REFUSED_STREAM = 1, 3
SPDY_INITIAL_WINDOW = 65536


class SpdyTransport(Transport):
    """SPDY/3.1 as spdystream speaks it: one stream per channel, opened by the client."""

    @classmethod
    def handshake(cls, sock, rfile, headers, lim):
        conn = [v.lower() for v in header_values(headers, "Connection")]
        if "upgrade" not in conn:
            http_status(sock, 400, "BadRequest", "malformed SPDY upgrade: Connection: "
                        "Upgrade is required")
            return None
        protocol = negotiate(sock, header_values(headers, "X-Stream-Protocol-Version"), 403)
        if protocol is None:
            return None
        t = cls(sock, rfile, protocol, lim)
        t.write(("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n"
                 "Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: %s\r\n\r\n"
                 % protocol).encode())
        return t

    def __init__(self, *a):
        super().__init__(*a)
        self.deflate = zlib.compressobj(zdict=SPDY_DICTIONARY)
        self.inflate = zlib.decompressobj(zdict=SPDY_DICTIONARY)
        self.streams = {}  # channel -> stream id
        self.channels = {}  # stream id -> channel
        self.cond = threading.Condition()
        self.last_id = 0
        self.unacked = {}  # stream id -> bytes read by the command, not yet acknowledged

    def control(self, ftype, flags, payload):
        self.write(struct.pack(">HHI", 0x8003, ftype, (flags << 24) | len(payload))
                   + payload)

    def data(self, sid, payload, fin=False):
        self.write(struct.pack(">II", sid, ((FLAG_FIN if fin else 0) << 24) | len(payload))
                   + payload)

    def send(self, channel, data):
        sid = self.streams[channel]
        for i in range(0, len(data), self.lim.chunk):
            self.data(sid, data[i:i + self.lim.chunk])

    def header_block(self, block):
        raw = self.inflate.decompress(block, self.lim.max_frame)
        if self.inflate.unconsumed_tail:
            raise ValueError("SPDY header block too large")
        n, pos, out = struct.unpack_from(">I", raw)[0], 4, {}
        for _ in range(n):
            ln = struct.unpack_from(">I", raw, pos)[0]
            name = raw[pos + 4:pos + 4 + ln].decode("latin-1").lower()
            pos += 4 + ln
            lv = struct.unpack_from(">I", raw, pos)[0]
            out[name] = raw[pos + 4:pos + 4 + lv].decode("latin-1")
            pos += 4 + lv
        return out

    def read_loop(self):
        while True:
            head = self.read_exact(8)
            flags, length = head[4], struct.unpack(">I", b"\0" + head[5:8])[0]
            if length > self.lim.max_frame:
                self.goaway(1)
                raise ValueError("SPDY frame too large")
            payload = self.read_exact(length)
            if not head[0] & 0x80:
                self.on_data(struct.unpack(">I", head[:4])[0] & 0x7FFFFFFF, flags, payload)
                continue
            version, ftype = struct.unpack(">HH", head[:4])
            if version & 0x7FFF != 3:
                self.goaway(1)
                raise ValueError("SPDY version %d" % (version & 0x7FFF))
            if ftype == SYN_STREAM:
                self.on_syn(struct.unpack_from(">I", payload)[0] & 0x7FFFFFFF, flags,
                            self.header_block(payload[10:]))
            elif ftype in (SYN_REPLY, HEADERS):
                self.header_block(payload[4:])  # keeps the decompressor in step
            elif ftype == RST_STREAM:
                sid = struct.unpack_from(">I", payload)[0] & 0x7FFFFFFF
                if self.channels.get(sid) == STDIN and self.session_.stdin is not None:
                    self.session_.stdin.close()
            elif ftype == PING:
                self.control(PING, 0, payload)
            elif ftype == GOAWAY:
                self.peer_closed.set()
                self.lost()
                return
            # SETTINGS and WINDOW_UPDATE change nothing: sending is not windowed

    def on_syn(self, sid, flags, hdrs):
        channel = STREAM_TYPES.get(hdrs.get("streamtype", ""))
        with self.cond:
            if sid <= self.last_id or channel is None or channel in self.streams:
                self.control(RST_STREAM, 0, struct.pack(">II", sid, RST_PROTOCOL_ERROR))
                return
            self.last_id = sid
            self.streams[channel], self.channels[sid] = sid, channel
            self.control(SYN_REPLY, 0, struct.pack(">I", sid) + self.compress_headers())
            self.cond.notify_all()
        if flags & FLAG_FIN:
            self.on_data(sid, FLAG_FIN, b"")

    def compress_headers(self):
        return self.deflate.compress(struct.pack(">I", 0)) + self.deflate.flush(
            zlib.Z_SYNC_FLUSH)

    def on_data(self, sid, flags, payload):
        channel = self.channels.get(sid)
        if channel is None:
            return
        if payload:
            self.deliver(channel, payload)
            if channel != STDIN or self.session_.stdin is None:
                self.consumed(len(payload), sid)
        if flags & FLAG_FIN and channel == STDIN and self.session_.stdin is not None:
            self.session_.stdin.close()

    def consumed(self, n, sid=None):
        # the receiver's window: acknowledged once half of it was used
        sid = sid or self.streams.get(STDIN)
        if sid is None:
            return
        with self.cond:
            self.unacked[sid] = self.unacked.get(sid, 0) + n
            self.unacked[0] = self.unacked.get(0, 0) + n
            due = [(k, v) for k, v in self.unacked.items() if v >= SPDY_INITIAL_WINDOW // 2]
            for k, _v in due:
                del self.unacked[k]
        for k, v in due:
            try:
                self.control(WINDOW_UPDATE, 0, struct.pack(">II", k, v))
            except ConnectionError:
                pass

    def ready(self, flags):
        want = {ERROR}
        want |= {STDIN} if flags["stdin"] else set()
        want |= {STDOUT} if flags["stdout"] else set()
        want |= {STDERR} if flags["stderr"] and not flags["tty"] else set()
        want |= {RESIZE} if flags["tty"] and self.version >= 3 else set()
        with self.cond:
            return self.cond.wait_for(lambda: want <= set(self.streams) or self.dead.is_set(),
                                      self.lim.stream_timeout_s) and not self.dead.is_set()

    def goaway(self, status):
        try:
            self.control(GOAWAY, 0, struct.pack(">II", self.last_id, status))
        except ConnectionError:
            pass

    def finish(self, code, error):
        for ch in (STDOUT, STDERR):
            if ch in self.streams:
                self.data(self.streams[ch], b"", fin=True)
        if ERROR in self.streams:
            self.data(self.streams[ERROR], self.status_bytes(code, error), fin=True)
        for ch in (STDIN, RESIZE):
            if ch in self.streams:
                self.data(self.streams[ch], b"", fin=True)
        # the client then resets its streams, says GOAWAY and closes

    def abandon(self):
        self.goaway(0)

    def lost(self):
        super().lost()
        with self.cond:
            self.cond.notify_all()  # ready() waits no more
