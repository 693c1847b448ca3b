"""A minimal WebSocket client (RFC 6455) in the standard library, for the relay's tests: a blocking
one (WS) and an asyncio one (AsyncWS) for many connections at once. Client frames are masked;
messages are read whole (fragments joined); pings are answered, and so is a close (same code)."""

import asyncio
import base64
import hashlib
import json
import os
import socket
import struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG = 1, 2, 8, 9, 10


def accept_of(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def handshake_bytes(port, path, key, headers=None):
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse_head(head):
    """(status, {lowercase name: value}) of an HTTP response head (bytes, without the blank line)."""
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs


def frame(opcode, payload, fin=True):
    """A masked client frame."""
    mask = os.urandom(4)
    n = len(payload)
    b0 = (0x80 if fin else 0) | opcode
    if n < 126:
        head = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", b0, 0x80 | 127, n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if n < 4096 else _mask_fast(payload, mask)
    return head + mask + masked


def _mask_fast(payload, mask):
    """XOR with the repeated mask, as one big integer (fast for large payloads)."""
    rep = (mask * (len(payload) // 4 + 1))[:len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(rep, "big")).to_bytes(len(payload), "big")


def close_payload(code, reason=""):
    return struct.pack("!H", code) + reason.encode() if code else b""


def parse_close(payload):
    """(code, reason) of a close frame's payload; (1005, "") when it has none."""
    if len(payload) < 2:
        return 1005, ""
    return struct.unpack("!H", payload[:2])[0], payload[2:].decode("utf-8", "replace")


class HandshakeRefused(Exception):
    def __init__(self, status, headers, body):
        super().__init__(f"handshake answered {status}: {body[:300]!r}")
        self.status, self.headers, self.body = status, headers, body


class WS:
    """A blocking client; the constructor raises HandshakeRefused on a non-101 answer."""

    def __init__(self, port, path="/v1/eth", headers=None, timeout=10.0, early=b""):
        """early: bytes sent in the same write as the handshake (frames before the 101 arrived)."""
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(handshake_bytes(port, path, key, headers) + early)
        while b"\r\n\r\n" not in self.buf:
            d = self.sock.recv(65536)
            if not d:
                raise ConnectionError("closed during the handshake: " + repr(self.buf[:200]))
            self.buf += d
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.status, self.headers = parse_head(head)
        if self.status != 101:
            n = int(self.headers.get("content-length", "0"))
            while len(self.buf) < n:
                d = self.sock.recv(65536)
                if not d:
                    break
                self.buf += d
            self.sock.close()
            raise HandshakeRefused(self.status, self.headers, self.buf[:n])
        assert self.headers.get("sec-websocket-accept") == accept_of(key), self.headers
        self.closed = None  # (code, reason) once a close arrived
        self.sent_close = False

    def _read(self, n):
        while len(self.buf) < n:
            d = self.sock.recv(262144)
            if not d:
                raise ConnectionError("connection closed")
            self.buf += d
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_frame(self):
        b0, b1 = self._read(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        assert not (b1 & 0x80), "a server frame must not be masked"
        return bool(b0 & 0x80), b0 & 0x0F, self._read(n)

    def recv(self):
        """The next message: (opcode, payload); a close gives (CLOSE, (code, reason))."""
        parts, first = [], None
        while True:
            fin, op, payload = self.read_frame()
            if op == PING:
                self.sock.sendall(frame(PONG, payload))
                continue
            if op == PONG:
                continue
            if op == CLOSE:
                self.closed = parse_close(payload)
                if not self.sent_close:  # the closing handshake: answer with the same code
                    self.send_close(self.closed[0] if self.closed[0] != 1005 else 0)
                return CLOSE, self.closed
            if op != 0:
                first = op
            parts.append(payload)
            if fin:
                return first, b"".join(parts)

    def recv_json(self):
        op, payload = self.recv()
        if op == CLOSE:
            raise ConnectionError(f"closed {payload}")
        return json.loads(payload)

    def send_text(self, s):
        self.sock.sendall(frame(TEXT, s.encode() if isinstance(s, str) else s))

    def send_json(self, doc):
        self.send_text(json.dumps(doc))

    def send_close(self, code, reason=""):
        self.sent_close = True
        self.sock.sendall(frame(CLOSE, close_payload(code, reason)))

    def call(self, method, params=None, id_=1):
        """Sends a call and returns its answer (notifications that arrive first are skipped)."""
        self.send_json({"jsonrpc": "2.0", "id": id_, "method": method, "params": params or []})
        while True:
            m = self.recv_json()
            if m.get("id") == id_:
                return m

    def wait_close(self):
        """Reads until a close arrives; returns its (code, reason)."""
        while self.closed is None:
            op, payload = self.recv()
        return self.closed

    def at_eof(self, timeout=5.0):
        """True when the server closed the TCP connection within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                d = self.sock.recv(65536)
                if not d:
                    return True
        except (socket.timeout, OSError):
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class AsyncWS:
    """The same client on asyncio streams (for many connections in one thread)."""

    @classmethod
    async def connect(cls, port, path="/v1/eth"):
        self = cls()
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        key = base64.b64encode(os.urandom(16)).decode()
        self.writer.write(handshake_bytes(port, path, key))
        head = await self.reader.readuntil(b"\r\n\r\n")
        status, hdrs = parse_head(head[:-4])
        if status != 101:
            raise HandshakeRefused(status, hdrs, b"")
        assert hdrs.get("sec-websocket-accept") == accept_of(key)
        return self

    async def recv(self):
        parts, first = [], None
        while True:
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            payload = await self.reader.readexactly(n)
            op = b0 & 0x0F
            if op == PING:
                self.writer.write(frame(PONG, payload))
                continue
            if op == PONG:
                continue
            if op == CLOSE:
                return CLOSE, parse_close(payload)
            if op != 0:
                first = op
            parts.append(payload)
            if b0 & 0x80:
                return first, b"".join(parts)

    async def recv_json(self):
        op, payload = await self.recv()
        if op == CLOSE:
            raise ConnectionError(f"closed {payload}")
        return json.loads(payload)

    def send_json(self, doc):
        self.writer.write(frame(TEXT, json.dumps(doc).encode()))

    async def close(self, code=1000):
        try:
            self.writer.write(frame(CLOSE, close_payload(code)))
            await self.writer.drain()
        except OSError:
            pass
        self.writer.close()
