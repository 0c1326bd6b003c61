"""What kubectl exec's and attach's two transports share (remotecommand.py serves
them): the channels, the session given to run(), the status that ends it, the refusal
of a request, and a session's course (Transport): a thread reading the client's
frames, run(), the status, the wait for the client's close."""

import json
import queue
import struct
import threading
import zlib

STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
# preferred first; v1 (channel.k8s.io, no error channel over SPDY) is not offered
PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "v3.channel.k8s.io",
             "v2.channel.k8s.io")
STREAM_TYPES = {"stdin": STDIN, "stdout": STDOUT, "stderr": STDERR, "error": ERROR,
                "resize": RESIZE}


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
            raise ValueError("remote command time-outs: stream_timeout_s must be positive, "
                             "linger_s not negative")
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


def negotiate(sock, offered, code, supported=PROTOCOLS):
    """The first of supported that the client offers; None (and the answer sent) when
    it offers none of them."""
    for p in supported:
        if p in offered:
            return p
    http_status(sock, code, "Forbidden" if code == 403 else "BadRequest",
                "unable to upgrade: no common stream protocol: client offered %s, "
                "server supports %s" % (offered, list(supported)),
                ["X-Accepted-Stream-Protocol-Versions: " + ", ".join(supported)])
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
                error = ("the client went away before it created its streams"
                         if self.dead.is_set() else
                         "timed out waiting for the client to create its streams")
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
            if not self.peer_closed.wait(self.lim.linger_s):
                self.abandon()
            self.dead.set()
            try:
                self.sock.shutdown(2)
            except OSError:
                pass
            t.join(5)
        return None if error is not None else code

    def ready(self, flags):
        return True

    def abandon(self):
        """The client did not close within linger_s: the connection ends anyway."""

    def consumed(self, n):
        pass

    def status_bytes(self, code, error):
        if self.version >= 4:
            return status_json(code, error).encode()
        # v2, v3: a failure's text, nothing on success
        if error is not None:
            return error.encode()
        return b"command terminated with non-zero exit code: %d" % code if code else b""
