"""One HTTP/1.1 request and its answer on a kept-alive connection of urllib3's pool.

urllib3 stays in charge of connections: it opens them (TCP, TLS against the CA file, the
connect retry), drops the ones the server closed, and keeps the pool's size; every request
through a proxy, and any request finding no open connection, goes through it whole. On an open
connection, though, its request and response machinery (http.client's header checks and
`email` header parser, HTTPHeaderDict, Timeout and Retry objects, a buffered reader) costs
~0.25 ms of CPU per request under the GIL the judges share, where a bare socket exchange of the
same request costs ~0.02 ms (the lab Prometheus, a small query); writing and reading it here
costs a small part of that difference.

What is read is what http.client would read: the status line and headers; a body framed by
`Transfer-Encoding: chunked`, `Content-Length` or the end of the connection; HTTP/1.0 and
`Connection: close` answers end the connection; gzip and deflate answers are decoded. Each
socket read is bounded by what is left of the deadline, checked between reads (a source
trickling bytes cannot hold the thread), and failures are urllib3's own exceptions
(`ProtocolError`, `ReadTimeoutError`, `DecodeError`), so the caller reports them as before. A
connection is only used again after a whole answer with nothing left over.
"""

from __future__ import annotations

import re
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterator, Mapping

from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import DecodeError, ProtocolError, ReadTimeoutError

from webhook.sources.base import SourceTimeout, SourceUnavailable

_READ_SIZE = 65536
_MAX_HEAD = 256 * 1024
_HEAD_END = re.compile(rb"\r?\n\r?\n")
# http.client's own checks (header names, values and the request target), so that a header or
# URL it would refuse is never sent from here: such a request goes through urllib3 and fails there.
_LEGAL_NAME = re.compile(r"[^:\s][^:\r\n]*")
_ILLEGAL_VALUE = re.compile(r"\n(?![ \t])|\r(?![ \t\n])")
_ILLEGAL_TARGET = re.compile(r"[\x00-\x20\x7f]")
_FIELD = re.compile(r"^([^:\s][^:\r\n]*):[ \t]*(.*?)[ \t\r]*$", re.MULTILINE)
_OURS = {"host", "content-length", "transfer-encoding"}


def sendable(headers: Mapping[str, str], target: str) -> bool:
    """Whether these headers and this path can be written here exactly as urllib3 writes them."""
    return not _ILLEGAL_TARGET.search(target) and all(
        _LEGAL_NAME.fullmatch(k) and not _ILLEGAL_VALUE.search(v) and k.lower() not in _OURS
        and k.isascii() and _latin1(v) for k, v in headers.items())


def _latin1(value: str) -> bool:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def host_header(pool: HTTPConnectionPool) -> str:
    """The `Host` header http.client writes for the pool's host and port."""
    host = pool.host
    if ":" in host:
        host = f"[{host}]"
    try:
        host.encode("ascii")
    except UnicodeEncodeError:
        host = host.encode("idna").decode("ascii")
    default = 443 if pool.scheme == "https" else 80
    return host if pool.port in (None, default) else f"{host}:{pool.port}"


def request_bytes(method: str, target: str, host: str, headers: Mapping[str, str],
                  body: bytes | None) -> bytes:
    """The request as urllib3 writes it: request line, Host, Content-Length, our headers."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{k}: {v}" for k, v in headers.items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body if body is not None else head


class Kept:
    """The open connections `wire` holds between requests, most recently used first.

    Taken out of urllib3's pool once and kept here (a deque's pop and append, where the
    pool's queue takes a lock and a condition each way, ~0.1 ms per request): one that the
    server closed meanwhile, one that broke, or one beyond `size` goes back to the pool,
    closed or open, which then owns it again (and opens new ones when asked)."""

    def __init__(self, pool: HTTPConnectionPool, size: int) -> None:
        self.pool = pool
        self._size = size
        self._idle: deque[HTTPConnection] = deque()

    def take(self) -> HTTPConnection | None:
        """An open connection, or None when urllib3 must open one itself."""
        while True:
            try:
                conn = self._idle.pop()
            except IndexError:
                break
            if conn.is_connected:  # urllib3's own test: a socket with nothing to read
                return conn
            conn.close()
            self.pool._put_conn(conn)
        try:
            conn = self.pool._get_conn()  # type: ignore[assignment]
        except Exception:  # a closed pool: urllib3's own path reports it
            return None
        if conn.sock is None:  # urllib3 drops one the server closed
            self.pool._put_conn(conn)
            return None
        return conn

    def give(self, conn: HTTPConnection, reusable: bool) -> None:
        if reusable and len(self._idle) < self._size:
            self._idle.append(conn)
            return
        if not reusable:
            conn.close()
        self.pool._put_conn(conn)


class Answer:
    """A response whose head was read; `read_body` reads the rest. Its interface is the part
    of urllib3's response the client uses (`status`, `close`, `release_conn`)."""

    def __init__(self, kept: Kept, conn: HTTPConnection, deadline: float,
                 stop: threading.Event, late: SourceTimeout, seconds: float,
                 method: str) -> None:
        self._kept, self._conn = kept, conn
        self._sock = conn.sock
        self._deadline, self._stop, self._late, self._seconds = deadline, stop, late, seconds
        self._buf = bytearray()
        self._pos = 0
        self._method = method
        self._reusable = False
        self.status = 0

    # -- the exchange ---------------------------------------------------------------------

    def send(self, data: bytes) -> Answer:
        """Writes the request and reads the answer's head; on failure the connection is
        closed and given back."""
        try:
            return self._send(data)
        except BaseException:
            self.release_conn()
            raise

    def _send(self, data: bytes) -> Answer:
        try:
            self._sock.settimeout(_left(self._seconds, self._deadline))
            self._sock.sendall(data)
        except TimeoutError as exc:
            raise ReadTimeoutError(None, "", "Read timed out.") from exc  # type: ignore[arg-type]
        except OSError as exc:
            raise ProtocolError("Connection aborted.", exc) from exc
        while True:
            found = None
            while found is None:
                found = _HEAD_END.search(self._buf, max(self._pos - 3, 0))
                if found is None:
                    if len(self._buf) > _MAX_HEAD:
                        raise ProtocolError("Connection aborted.", "answer head too long")
                    if not self._fill("Connection aborted."):
                        raise ProtocolError("Connection aborted.",
                                            "Remote end closed connection without response")
                    continue
            head = bytes(self._buf[:found.start()])
            del self._buf[:found.end()]
            self._pos = 0
            self._head(head)
            if self.status != 100:
                return self

    def _head(self, head: bytes) -> None:
        text = head.decode("latin-1")
        first, _, fields = text.partition("\n")
        parts = first.rstrip("\r").split(None, 2)
        try:
            version = parts[0]
            status = int(parts[1])
        except (IndexError, ValueError) as exc:
            raise ProtocolError("Connection aborted.", f"bad status line {first!r}") from exc
        if not version.startswith("HTTP/1.") or not 100 <= status <= 999:
            raise ProtocolError("Connection aborted.", f"bad status line {first!r}")
        # the first of each name, as http.client's headers.get() answers (names lowercased:
        # every value read here is compared lowercased too)
        headers = dict(reversed(_FIELD.findall(fields.lower())))
        self.status = status
        self._chunked = headers.get("transfer-encoding", "").lower() == "chunked"
        connection = headers.get("connection", "").lower()
        if version == "HTTP/1.0":
            self._close = not (headers.get("keep-alive") or "keep-alive" in connection
                               or "keep-alive" in headers.get("proxy-connection", "").lower())
        else:
            self._close = "close" in connection
        length: int | None = None
        if not self._chunked and headers.get("content-length"):
            try:
                length = int(headers["content-length"])
            except ValueError:
                length = None
            if length is not None and length < 0:
                length = None
        if status in (204, 304) or 100 <= status < 200 or self._method == "HEAD":
            length = 0
        if length is None and not self._chunked:
            self._close = True
        self._length = length
        encoding = headers.get("content-encoding", "").lower()
        self._decoder = (_Gzip() if encoding in ("gzip", "x-gzip")
                         else _Deflate() if encoding == "deflate" else None)
        self._encoding = encoding

    def read_body(self, max_body: int) -> bytes:
        """The whole body, decoded, at most `max_body` bytes of it."""
        out: list[bytes] = []
        size = 0
        for piece in self._pieces():
            if self._decoder is not None:
                piece = self._decode(piece)
            size += len(piece)
            if size > max_body:
                raise SourceUnavailable(f"the metrics source answered more than "
                                        f"{max_body // 2**20} MiB for one query",
                                        self._late.metric)
            out.append(piece)
        if self._decoder is not None:
            out.append(self._flush())
        self._reusable = not self._close and self._pos == len(self._buf)
        return b"".join(out)

    def _pieces(self) -> Iterator[bytes]:
        broken = "Connection broken: IncompleteRead"
        if self._chunked:
            while True:
                line = self._line(broken)
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError as exc:
                    raise ProtocolError("Connection broken: InvalidChunkLength", exc) from exc
                if size == 0:
                    while self._line(None) not in (b"", b"\r\n", b"\n"):  # trailers
                        pass
                    return
                yield self._take(size, broken)
                self._take(2, broken)
        elif self._length is not None:
            left = self._length
            while left:
                if self._pos == len(self._buf) and not self._fill(broken):
                    raise ProtocolError(broken, f"{self._length - left} bytes read, "
                                        f"{left} more expected")
                piece = bytes(self._buf[self._pos: self._pos + left])
                self._pos += len(piece)
                left -= len(piece)
                yield piece
        else:  # until the server closes the connection
            while True:
                if self._pos < len(self._buf):
                    yield bytes(self._buf[self._pos:])
                    self._pos = len(self._buf)
                if not self._fill(broken):
                    return

    def _line(self, broken: str | None) -> bytes:
        """The next line (with its end); at the end of the connection, an error, or b"" when
        `broken` is None."""
        while True:
            end = self._buf.find(b"\n", self._pos)
            if end >= 0:
                line = bytes(self._buf[self._pos: end + 1])
                self._pos = end + 1
                return line
            if len(self._buf) - self._pos > _MAX_HEAD:
                raise ProtocolError("Connection broken: line too long", None)
            if not self._fill(broken or ""):
                if broken is None:
                    return b""
                raise ProtocolError(broken, "the connection ended in a chunk's head")

    def _take(self, size: int, broken: str) -> bytes:
        while len(self._buf) - self._pos < size:
            if not self._fill(broken):
                raise ProtocolError(broken, "the connection ended in a chunk")
        piece = bytes(self._buf[self._pos: self._pos + size])
        self._pos += size
        return piece

    def _fill(self, broken: str) -> bool:
        """One more socket read, bounded by what is left of the deadline; False at the end of
        the connection."""
        if self._stop.is_set() or time.monotonic() > self._deadline:
            raise self._late
        if self._pos:  # keep the buffer to what is unread
            del self._buf[:self._pos]
            self._pos = 0
        try:
            self._sock.settimeout(_left(self._seconds, self._deadline))
            chunk = self._sock.recv(_READ_SIZE)
        except TimeoutError as exc:
            raise ReadTimeoutError(None, "", "Read timed out.") from exc  # type: ignore[arg-type]
        except OSError as exc:
            raise ProtocolError(broken or "Connection broken", exc) from exc
        if not chunk:
            return False
        self._buf += chunk
        return True

    def _decode(self, data: bytes) -> bytes:
        try:
            return self._decoder.decompress(data)  # type: ignore[union-attr]
        except zlib.error as exc:
            raise DecodeError(f"Received response with content-encoding: {self._encoding}, "
                              "but failed to decode it.", exc) from exc

    def _flush(self) -> bytes:
        try:
            return self._decoder.flush()  # type: ignore[union-attr]
        except zlib.error as exc:
            raise DecodeError(f"Received response with content-encoding: {self._encoding}, "
                              "but failed to decode it.", exc) from exc

    # -- urllib3's response interface -----------------------------------------------------

    def close(self) -> None:
        self._reusable = False

    def release_conn(self) -> None:
        """The connection kept after a whole answer, else closed and given back to the pool
        (urllib3 opens it again for the next request)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            self._kept.give(conn, self._reusable)


class _Gzip:
    """urllib3's gzip decoding: member after member; garbage after the first member is
    ignored, an error in the first is one."""

    def __init__(self) -> None:
        self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._other = False  # past the first member
        self._swallow = False

    def decompress(self, data: bytes) -> bytes:
        out = bytearray()
        while data and not self._swallow:
            try:
                out += self._obj.decompress(data)
            except zlib.error:
                self._swallow = True
                if self._other:
                    break
                raise
            data = self._obj.unused_data
            if data and self._obj.eof:
                self._other = True
                self._obj = zlib.decompressobj(16 + zlib.MAX_WBITS)
        return bytes(out)

    def flush(self) -> bytes:
        return self._obj.flush()


class _Deflate:
    """urllib3's deflate decoding: zlib-wrapped, or raw deflate if that fails at once."""

    def __init__(self) -> None:
        self._first = True
        self._obj = zlib.decompressobj()
        self._data = b""

    def decompress(self, data: bytes) -> bytes:
        if not self._first:
            return self._obj.decompress(data)
        self._data += data
        try:
            out = self._obj.decompress(data)
            if out:
                self._first = False
                self._data = b""
            return out
        except zlib.error:
            self._first = False
            self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
            try:
                return self._obj.decompress(self._data)
            finally:
                self._data = b""

    def flush(self) -> bytes:
        return self._obj.flush()


def _left(seconds: float, deadline: float) -> float:
    return max(min(seconds, deadline - time.monotonic()), 0.001)
