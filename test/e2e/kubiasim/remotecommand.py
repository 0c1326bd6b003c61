"""The API server's side of kubectl exec and attach: the remote command protocols.

kubectl 1.30+ asks for a WebSocket first (GET, RFC 6455, subprotocol
v5.channel.k8s.io) and falls back to SPDY/3.1 on any answer but 101; kubectl 1.27-1.29
use SPDY (POST, `Upgrade: SPDY/3.1`, `X-Stream-Protocol-Version: v4.channel.k8s.io`
and older). Both carry the same channels: 0 stdin, 1 stdout, 2 stderr, 3 error (the
command's end as a `Status`), 4 resize (JSON {"Width", "Height"} of the client's
terminal); WebSocket v5 adds 255 (a client message [255, n] closes its channel n,
which ends the command's stdin). SPDY carries each channel on a stream the client
opens with a `streamtype` header (error, stdin, stdout, stderr, resize).

How the API server calls it, for
`GET|POST /api/v1/namespaces/<ns>/pods/<name>/exec?command=…&stdin=…&stdout=…&stderr=…
&tty=…&container=…` and `…/attach` (same parameters without command): once it has
read the request line and headers (and checked that the pod exists and is running,
and the container, answering 404/400 itself otherwise),

    code = remotecommand.serve(self.connection, self.rfile, self.command, self.headers,
                               query, run, attach=path.endswith("/attach"))
    self.close_connection = True

from a BaseHTTPRequestHandler method (do_GET and do_POST): `self.connection` is the
socket, `self.rfile` the buffered reader positioned after the request's headers (a
client may send frames right after its request, so they can already be buffered
there), `self.headers` the request's headers, query the raw query string (or
urllib.parse.parse_qs's dict). serve answers the request itself: 101 and the session,
or a `Status` (400 for a request it cannot take, 403 when no stream protocol matches),
and returns the command's exit code, or None when there was no session. It returns
when the command has ended and the client has closed (or after `linger_s`): the
connection must not be used for another request.

`run(session)` runs the command (see Session) and returns its exit code; it runs in
the caller's thread. It may raise RemoteCommandError(message): kubectl prints
"error: <message>" and exits 1. The exit code reaches kubectl as the status ("command
terminated with exit code 3"; kubectl exits with it). run_command() is a run for a
local command line; pod_commands.exec_argv() gives the command line for a pod's
container, e.g. `run=lambda s: run_command(exec_argv(c, pod, s.container, s.command,
s.tty), s)`.

Flow control: the client's SPDY library (spdystream) neither sends WINDOW_UPDATE nor
reads it, so the server's sending is held back by TCP alone (as the kubelet's own
spdystream is); what the client sends is acknowledged with WINDOW_UPDATE (SPDY/3.1's
receiver's duty), per stream and for the session. Both transports stop reading the
socket while the command has not taken `max_stdin_buffer` bytes of its stdin, so a
client that sends faster than the command reads is held back by TCP too.
"""

import base64
import errno
import fcntl
import hashlib
import json
import os
import queue
import select
import signal
import struct
import subprocess
import termios
import threading
import time
import zlib
from urllib.parse import parse_qs

from .util import tool

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
# preferred first; v1 (channel.k8s.io, no error channel over SPDY) is not offered
PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io",
             "v2.channel.k8s.io")
STREAM_TYPES = {"stdin": STDIN, "stdout": STDOUT, "stderr": STDERR, "error": ERROR,
                "resize": RESIZE}
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

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


class RemoteCommandError(Exception):
    """A command that could not run: its message reaches kubectl as the status."""


class Limits:
    """The protocols' limits, each one a keyword of serve().

    max_frame: largest frame (WebSocket message fragment, SPDY frame) taken from the
    client, and largest decompressed SPDY header block; stream_timeout_s: how long a
    SPDY client may take to open its streams (the kubelet's 30 s); linger_s: how long
    the client is given to close once the status is sent; max_stdin_buffer: stdin bytes
    held for a command that does not read them; chunk: largest output frame sent."""

    def __init__(self, max_frame=1 << 20, stream_timeout_s=30.0, linger_s=10.0,
                 max_stdin_buffer=1 << 20, chunk=32768):
        if min(max_frame, max_stdin_buffer, chunk) < 1 or chunk > (1 << 24) - 1:
            raise ValueError("remote command limits must be positive (chunk < 16 MiB)")
        if stream_timeout_s <= 0 or linger_s < 0:
            raise ValueError("remote command timeouts must be positive")
        self.max_frame, self.stream_timeout_s, self.linger_s = (
            max_frame, stream_timeout_s, linger_s)
        self.max_stdin_buffer, self.chunk = max_stdin_buffer, chunk


class Session:
    """What run() is given.

    command: the exec's command line (a list; empty for attach); container: the
    container asked for (None: the pod's only one); tty: the client wants a terminal;
    stdin: an Inbox (read(n) -> bytes, b"" at its end) or None when not asked;
    stdout, stderr: an Outbox (write(bytes), raising ConnectionError once the client is
    gone) or None when not asked (stderr is None with a tty: it goes to the terminal);
    resizes: a queue.Queue of (columns, rows), None without a tty; gone: an Event set
    when the client went away: run should then end an exec's command at once (an
    attach leaves the container's process running, as the kubelet does)."""

    def __init__(self, command, container, tty, attach):
        self.command, self.container, self.tty, self.attach = command, container, tty, attach
        self.stdin = self.stdout = self.stderr = self.resizes = None
        self.gone = threading.Event()


class Inbox:
    """Bytes from the client for the command's stdin, bounded: put() waits while
    max bytes are held and not read (the transport stops reading the socket)."""

    def __init__(self, limit, on_read=None):
        self._buf, self._eof, self._limit = bytearray(), False, limit
        self._cond = threading.Condition()
        self._on_read = on_read

    def put(self, data, dead):
        with self._cond:
            while len(self._buf) >= self._limit and not self._eof and not dead.is_set():
                self._cond.wait(0.2)
            if not self._eof:
                self._buf += data

    def close(self):
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    def read(self, n=65536, timeout=None):
        """Up to n bytes; b"" at the end; None when timeout passed with nothing."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._buf or self._eof, timeout):
                return None
            data = bytes(self._buf[:n])
            del self._buf[:n]
            self._cond.notify_all()
        if data and self._on_read:
            self._on_read(len(data))
        return data


class Outbox:
    """The command's stdout or stderr: each write goes to the client at once."""

    def __init__(self, send, channel):
        self._send, self._channel = send, channel

    def write(self, data):
        self._send(self._channel, bytes(data))
        return len(data)


def parse_bool(name, values):
    # Go's strconv.ParseBool, as the API server reads its query
    v = values[-1] if values else "false"
    if v in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if v in ("0", "f", "F", "false", "FALSE", "False", ""):
        return False
    raise RemoteCommandError("%s: invalid boolean value %r" % (name, v))


def status_json(code=0, error=None):
    if error is not None:
        st = {"status": "Failure", "message": error, "reason": "InternalError", "code": 500}
    elif code == 0:
        st = {"status": "Success"}
    else:
        st = {"status": "Failure", "reason": "NonZeroExitCode",
              "message": "command terminated with non-zero exit code: exit code %d" % code,
              "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}
    return json.dumps(dict({"kind": "Status", "apiVersion": "v1", "metadata": {}}, **st))


def http_status(sock, code, reason, message, extra=()):
    """An answer that is not an upgrade: a Status, and the connection closes."""
    body = json.dumps({"kind": "Status", "apiVersion": "v1", "metadata": {},
                       "status": "Failure", "message": message, "reason": reason,
                       "code": code}).encode()
    phrase = {400: "Bad Request", 403: "Forbidden"}.get(code, "Error")
    head = ["HTTP/1.1 %d %s" % (code, phrase), "Content-Type: application/json",
            "Content-Length: %d" % len(body), "Connection: close"] + list(extra)
    try:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    except OSError:
        pass


def header_values(headers, name):
    """Every comma-separated value of header name (headers: an email.message.Message,
    as BaseHTTPRequestHandler has, or a dict of strings or lists)."""
    if hasattr(headers, "get_all"):
        raw = headers.get_all(name) or []
    else:
        raw = []
        for k, v in headers.items():
            if k.lower() == name.lower():
                raw += v if isinstance(v, (list, tuple)) else [v]
    return [p.strip() for v in raw for p in v.split(",") if p.strip()]


def serve(sock, rfile, method, headers, query, run, attach=False, websocket=True, **limits):
    """Serves one exec or attach request (see the module's docstring): the upgrade,
    run(session), the status, the close. websocket=False answers a WebSocket request
    with 400, as a server without it does (kubectl 1.30+ then falls back to SPDY)."""
    lim = Limits(**limits)
    if isinstance(query, str):
        query = parse_qs(query, keep_blank_values=True)
    try:
        command = list(query.get("command", []))
        flags = {k: parse_bool(k, query.get(k, [])) for k in ("stdin", "stdout", "stderr",
                                                               "tty")}
        containers = query.get("container", [])
        if not attach and not command:
            raise RemoteCommandError("you must specify at least 1 command")
        if not (flags["stdin"] or flags["stdout"] or flags["stderr"]):
            raise RemoteCommandError("you must specify at least 1 of stdin, stdout, stderr")
    except RemoteCommandError as e:
        http_status(sock, 400, "BadRequest", str(e))
        return None
    upgrade = [u.lower() for u in header_values(headers, "Upgrade")]
    if "websocket" in upgrade and websocket:
        transport = WebSocketTransport.handshake(sock, rfile, method, headers, lim)
    elif "spdy/3.1" in upgrade:
        transport = SpdyTransport.handshake(sock, rfile, headers, lim)
    else:
        http_status(sock, 400, "BadRequest", "Upgrade request required")
        return None
    if transport is None:
        return None
    s = Session(command, containers[-1] if containers else None, flags["tty"], attach)
    return transport.session(s, flags, run)


def negotiate(sock, offered, code):
    """The first of PROTOCOLS that the client offers; None (and the answer sent) when
    it offers none of them."""
    for p in PROTOCOLS:
        if p in offered:
            return p
    http_status(sock, code, "Forbidden" if code == 403 else "BadRequest",
                "unable to upgrade: no common stream protocol: client offered %s, "
                "server supports %s" % (offered, list(PROTOCOLS)),
                ["X-Accepted-Stream-Protocol-Versions: " + ", ".join(PROTOCOLS)])
    return None


class Transport:
    """What both protocols share: the reader thread, run(), the status, the close."""

    def __init__(self, sock, rfile, protocol, lim):
        self.sock, self.rfile, self.protocol, self.lim = sock, rfile, protocol, lim
        self.version = int(protocol[1])
        self.wlock = threading.Lock()
        self.dead = threading.Event()       # the connection is unusable or closed
        self.peer_closed = threading.Event()  # the client closed (close frame, GOAWAY, EOF)
        self.session_ = None

    def read_exact(self, n):
        data = self.rfile.read(n) if n else b""
        if len(data) < n:
            raise EOFError
        return data

    def write(self, data):
        with self.wlock:
            if self.dead.is_set():
                raise ConnectionResetError("the client is gone")
            try:
                self.sock.sendall(data)
            except OSError as e:
                self.lost()
                raise ConnectionResetError("the client is gone: %s" % e)

    def lost(self):
        self.dead.set()
        self.peer_closed.set()
        if self.session_ is not None:
            self.session_.gone.set()
            if self.session_.stdin is not None:
                self.session_.stdin.close()

    def reader(self):
        try:
            self.read_loop()
        except (EOFError, OSError, ValueError, zlib.error, struct.error):
            pass
        finally:
            self.lost()

    def deliver(self, channel, data):
        s = self.session_
        if channel == STDIN and s.stdin is not None:
            s.stdin.put(data, self.dead)
        elif channel == RESIZE and s.resizes is not None:
            self.resize_buf += data
            *lines, self.resize_buf = self.resize_buf.split(b"\n")
            for line in filter(None, (x.strip() for x in lines)):
                try:
                    size = json.loads(line)
                    s.resizes.put((int(size["Width"]), int(size["Height"])))
                except (ValueError, KeyError, TypeError):
                    pass  # a malformed size changes nothing

    def session(self, s, flags, run):
        self.session_ = s
        self.resize_buf = b""
        if flags["stdin"]:
            s.stdin = Inbox(self.lim.max_stdin_buffer, self.consumed)
        if flags["stdout"]:
            s.stdout = Outbox(self.send, STDOUT)
        if flags["stderr"] and not flags["tty"]:
            s.stderr = Outbox(self.send, STDERR)
        if flags["tty"]:
            s.resizes = queue.Queue()
        t = threading.Thread(target=self.reader, name="remotecommand-reader", daemon=True)
        t.start()
        code, error = None, None
        try:
            if not self.ready(flags):
                error = "timed out waiting for the client to create its streams"
            else:
                code = run(s)
        except RemoteCommandError as e:
            error = str(e) or "the command could not run"
        except Exception as e:
            error = "internal error: %s: %s" % (type(e).__name__, e)
            raise
        finally:
            if s.stdin is not None:
                # stdin the command did not take is dropped: the reader goes on to
                # the client's close
                s.stdin.close()
            try:
                self.finish(code if code is not None else 1, error)
            except (ConnectionError, OSError):
                pass
            self.peer_closed.wait(self.lim.linger_s)
            self.dead.set()
            try:
                self.sock.shutdown(2)
            except OSError:
                pass
            t.join(5)
        return None if error is not None else code

    def ready(self, flags):
        return True

    def consumed(self, n):
        pass

    def status_bytes(self, code, error):
        if self.version >= 4:
            return status_json(code, error).encode()
        # v2, v3: a failure's text, nothing on success
        if error is not None:
            return error.encode()
        return b"command terminated with non-zero exit code: %d" % code if code else b""


class WebSocketTransport(Transport):
    """RFC 6455 with the channel subprotocols: each binary message is the channel's
    byte, then its data."""

    @classmethod
    def handshake(cls, sock, rfile, method, headers, lim):
        key = (header_values(headers, "Sec-WebSocket-Key") or [""])[0]
        conn = [v.lower() for v in header_values(headers, "Connection")]
        try:
            key_ok = len(base64.b64decode(key, validate=True)) == 16
        except ValueError:
            key_ok = False
        if (method != "GET" or "upgrade" not in conn or not key_ok
                or header_values(headers, "Sec-WebSocket-Version") != ["13"]):
            http_status(sock, 400, "BadRequest",
                        "malformed WebSocket upgrade: GET with Connection: Upgrade, "
                        "Sec-WebSocket-Version: 13 and a Sec-WebSocket-Key is required",
                        ["Sec-WebSocket-Version: 13"])
            return None
        protocol = negotiate(sock, header_values(headers, "Sec-WebSocket-Protocol"), 400)
        if protocol is None:
            return None
        accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
        t = cls(sock, rfile, protocol, lim)
        t.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n"
                 "Sec-WebSocket-Protocol: %s\r\n\r\n" % (accept, protocol)).encode())
        return t

    def frame(self, opcode, payload):
        n = len(payload)
        if n < 126:
            head = struct.pack(">BB", 0x80 | opcode, n)
        elif n < 65536:
            head = struct.pack(">BBH", 0x80 | opcode, 126, n)
        else:
            head = struct.pack(">BBQ", 0x80 | opcode, 127, n)
        self.write(head + payload)

    def send(self, channel, data):
        for i in range(0, len(data), self.lim.chunk):
            self.frame(0x2, bytes([channel]) + data[i:i + self.lim.chunk])

    def read_frame(self):
        b0, b1 = self.read_exact(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self.read_exact(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self.read_exact(8))[0]
        if not b1 & 0x80 or b0 & 0x70 or n > self.lim.max_frame:
            # unmasked, extensions or too large: the connection cannot go on (1002, 1009)
            self.close_frame(1009 if n > self.lim.max_frame else 1002)
            raise ValueError("bad WebSocket frame")
        mask = self.read_exact(4)
        data = bytearray(self.read_exact(n))
        for i in range(n):
            data[i] ^= mask[i & 3]
        return b0 & 0x80, b0 & 0x0F, bytes(data)

    def close_frame(self, code):
        try:
            self.frame(0x8, struct.pack(">H", code))
        except ConnectionError:
            pass

    def read_loop(self):
        channel = None  # the channel of a fragmented message, once its first part came
        while True:
            fin, op, data = self.read_frame()
            if op == 0x9:
                self.frame(0xA, data)
            elif op == 0x8:
                self.peer_closed.set()
                if not self.closing:
                    self.close_frame(struct.unpack(">H", data[:2])[0] if len(data) >= 2
                                     else 1000)
                return
            elif op in (0x1, 0x2, 0x0):
                if op != 0x0:
                    if not data:
                        continue
                    channel, data = data[0], data[1:]
                if channel == CLOSE and self.version >= 5:
                    if data and data[0] == STDIN and self.session_.stdin is not None:
                        self.session_.stdin.close()
                elif channel is not None:
                    self.deliver(channel, data)
                if fin:
                    channel = None

    closing = False

    def finish(self, code, error):
        status = self.status_bytes(code, error)
        if status:
            self.send(ERROR, status)
        # the client's streams end (EOF, then the status is read) at a normal closure
        self.closing = True
        self.close_frame(1000)


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
            # SETTINGS and WINDOW_UPDATE change nothing: sending is not windowed (above)

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
        # the client resets its streams, says GOAWAY and closes; ours follows its
        self.peer_closed.wait(self.lim.linger_s)
        self.goaway(0)


def run_command(argv, session, cwd=None, env=None, drain_s=2.0):
    """A run() for serve(): argv as a local process, its stdin, stdout and stderr the
    session's, on a new pseudo-terminal when session.tty (its window resized as the
    client's is). The process gets a session of its own and is killed (its process
    group) when the client goes away. Returns its exit code (128 + the signal's number
    when a signal ended it). drain_s: how long output is still read once it exited (a
    child of its may keep the output open)."""
    master = None
    if session.tty:
        master, slave = os.openpty()
        # setsid -c: the terminal becomes the process's controlling terminal (Ctrl-C,
        # SIGWINCH), without running Python code between fork and exec
        argv = [tool("setsid"), "-c", "--"] + list(argv)
        try:
            proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd,
                                    env=env, close_fds=True)
        finally:
            os.close(slave)
        outs = [(master, session.stdout)]
        stdin_fd = master
    else:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, start_new_session=True, close_fds=True,
            stdin=subprocess.PIPE if session.stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE if session.stdout else subprocess.DEVNULL,
            stderr=subprocess.PIPE if session.stderr else subprocess.DEVNULL)
        outs = [(p.fileno(), box) for p, box in ((proc.stdout, session.stdout),
                                                 (proc.stderr, session.stderr)) if p]
        stdin_fd = proc.stdin.fileno() if proc.stdin else None
    stop = threading.Event()

    def kill():
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass

    def pump_out(fd, box):
        p = select.poll()
        p.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        while not stop.is_set():
            if not p.poll(200):
                continue
            try:
                data = os.read(fd, 65536)
            except OSError as e:
                if e.errno == errno.EIO:  # the terminal's last holder closed it
                    return
                raise
            if not data:
                return
            try:
                box.write(data)
            except ConnectionError:
                kill()
                return

    def pump_in():
        while not stop.is_set():
            data = session.stdin.read(65536, timeout=0.2)
            if data is None:
                continue
            if not data:
                break
            try:
                write_all(stdin_fd, data)
            except OSError:
                break
        if master is None and proc.stdin:
            try:
                proc.stdin.close()
            except OSError:
                pass

    def write_all(fd, data):
        while data:
            data = data[os.write(fd, data):]

    def resizer():
        while not stop.is_set():
            try:
                cols, rows = session.resizes.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            except OSError:
                pass

    threads = [threading.Thread(target=pump_out, args=o, daemon=True) for o in outs]
    if session.stdin is not None and stdin_fd is not None:
        threads.append(threading.Thread(target=pump_in, daemon=True))
    if master is not None and session.resizes is not None:
        threads.append(threading.Thread(target=resizer, daemon=True))
    for t in threads:
        t.start()
    try:
        while proc.poll() is None:
            if session.gone.wait(0.1):
                kill()
                proc.wait()
        deadline = time.monotonic() + drain_s
        for t in threads[:len(outs)]:
            t.join(max(0.0, deadline - time.monotonic()))
    finally:
        stop.set()
        if proc.poll() is None:
            kill()
            proc.wait()
        for t in threads:
            t.join(1)
        if master is not None:
            os.close(master)
        for p in (proc.stdin, proc.stdout, proc.stderr):
            if p:
                try:
                    p.close()
                except OSError:
                    pass
    rc = proc.returncode
    return 128 - rc if rc < 0 else rc
