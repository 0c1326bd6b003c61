"""kubectl exec and attach over a WebSocket (RFC 6455) with the channel subprotocols
v5..v2.channel.k8s.io: each binary message is its channel's byte, then its data; with
v4.base64.channel.k8s.io (for clients that can send text only, as browsers' terminals),
each text message is the channel's digit, then its data in base64."""

import base64
import hashlib
import struct

from .channels import (CLOSE, ERROR, PROTOCOLS, STDIN, Transport, header_values,
                       http_status, negotiate)

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
BASE64 = "v4.base64.channel.k8s.io"


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
        protocol = negotiate(sock, header_values(headers, "Sec-WebSocket-Protocol"), 400,
                             PROTOCOLS + (BASE64,))
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
            if self.protocol == BASE64:
                self.frame(0x1, b"%d" % channel + base64.b64encode(data[i:i + self.lim.chunk]))
            else:
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
        mask = (self.read_exact(4) * (n // 4 + 1))[:n]
        data = (int.from_bytes(self.read_exact(n), "little")
                ^ int.from_bytes(mask, "little")).to_bytes(n, "little")
        return b0 & 0x80, b0 & 0x0F, data

    def close_frame(self, code):
        try:
            self.frame(0x8, struct.pack(">H", code))
        except ConnectionError:
            pass

    def read_loop(self):
        # a message's channel is its first byte, whichever of its fragments brings it
        channel, first = None, False
        while True:
            fin, op, data = (self.read_base64 if self.protocol == BASE64 else
                             self.read_frame)()
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
                    channel, first = None, True
                if first and data:
                    channel, data, first = data[0], data[1:], False
                if channel == CLOSE and self.version >= 5:
                    if data and data[0] == STDIN and self.session_.stdin is not None:
                        self.session_.stdin.close()
                elif channel is not None and data:
                    self.deliver(channel, data)

    def read_base64(self):
        """A frame, or a whole data message as one binary frame of its channel's byte
        and the data (base64 is decoded a message at a time)."""
        fin, op, data = self.read_frame()
        if op not in (0x1, 0x2):
            return fin, op, data
        while not fin:
            fin, op, more = self.read_frame()
            if op == 0x9:
                self.frame(0xA, more)
            elif op != 0x0 or len(data) + len(more) > self.lim.max_frame:
                self.close_frame(1002 if op != 0x0 else 1009)
                raise ValueError("bad base64 message")
            else:
                data += more
        if not data:
            return fin, 0x2, b""
        if not data[:1].isdigit():
            raise ValueError("a base64 message without its channel's digit")
        return fin, 0x2, bytes([data[0] - 0x30]) + base64.b64decode(data[1:], validate=True)

    closing = False  # our close frame is sent: the client's answers it

    def finish(self, code, error):
        status = self.status_bytes(code, error)
        if status:
            self.send(ERROR, status)
        # the client's streams end (EOF, then the status is read) at a normal closure
        self.closing = True
        self.close_frame(1000)
