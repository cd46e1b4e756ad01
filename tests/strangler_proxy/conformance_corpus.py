"""Raw requests for the differential test against nginx (``test_nginx_conformance.py``).

Each case is (class, name, bytes). ``{c}`` in the bytes is replaced by the case's id, so that
every request an upstream reads, smuggled ones too, can be traced back to its case. The last
well-formed request of a case says ``Connection: close`` so that answers end promptly.
"""

from __future__ import annotations

H = b"Host: a\r\n"
CLOSE = b"Connection: close\r\n"


def _get(path: bytes = b"/{c}/", extra: bytes = b"", version: bytes = b"HTTP/1.1") -> bytes:
    return b"GET " + path + b" " + version + b"\r\n" + H + extra + CLOSE + b"\r\n"


def _post(headers: bytes, body: bytes, path: bytes = b"/{c}/") -> bytes:
    return b"POST " + path + b" HTTP/1.1\r\n" + H + headers + CLOSE + b"\r\n" + body


HIDDEN = b"GET /{c}/hidden HTTP/1.1\r\nHost: a\r\n\r\n"
CHUNKED = b"Transfer-Encoding: chunked\r\n"

FRAMING = [
    ("cl-zero", _post(b"Content-Length: 0\r\n", b"")),
    ("cl-body", _post(b"Content-Length: 5\r\n", b"hello")),
    ("cl-leading-zeros", _post(b"Content-Length: 005\r\n", b"hello")),
    ("cl-ows", _post(b"Content-Length:  5 \r\n", b"hello")),
    ("cl-duplicate-same", _post(b"Content-Length: 5\r\nContent-Length: 5\r\n", b"hello")),
    ("cl-duplicate-differ", _post(b"Content-Length: 5\r\nContent-Length: 6\r\n", b"hello!")),
    ("cl-list", _post(b"Content-Length: 5, 5\r\n", b"hello")),
    ("cl-negative", _post(b"Content-Length: -5\r\n", b"hello")),
    ("cl-plus", _post(b"Content-Length: +5\r\n", b"hello")),
    ("cl-hex", _post(b"Content-Length: 0x5\r\n", b"hello")),
    ("cl-overflow", _post(b"Content-Length: 99999999999999999999999\r\n", b"hello")),
    ("cl-empty", _post(b"Content-Length: \r\n", b"")),
    ("cl-body-on-get", b"GET /{c}/ HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n" + CLOSE
     + b"\r\nhello"),
    ("chunked", _post(CHUNKED, b"5\r\nhello\r\n0\r\n\r\n")),
    ("chunked-two-chunks", _post(CHUNKED, b"3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n")),
    ("chunked-extension", _post(CHUNKED, b"5;name=value\r\nhello\r\n0\r\n\r\n")),
    ("chunked-trailer", _post(CHUNKED, b"5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n")),
    ("chunked-uppercase-hex", _post(CHUNKED, b"A\r\nhellohello\r\n0\r\n\r\n")),
    ("chunked-leading-zeros", _post(CHUNKED, b"0005\r\nhello\r\n0\r\n\r\n")),
    ("chunked-bad-size", _post(CHUNKED, b"zz\r\nhello\r\n0\r\n\r\n")),
    ("chunked-size-overflow", _post(CHUNKED, b"ffffffffffffffffff\r\nhello\r\n0\r\n\r\n")),
    ("chunked-negative-size", _post(CHUNKED, b"-5\r\nhello\r\n0\r\n\r\n")),
    ("chunked-size-space", _post(CHUNKED, b"5 \r\nhello\r\n0\r\n\r\n")),
    ("chunked-missing-crlf", _post(CHUNKED, b"5\r\nhelloX0\r\n\r\n")),
    ("chunked-lf-only", _post(CHUNKED, b"5\nhello\n0\n\n")),
    ("chunked-case", _post(b"Transfer-Encoding: Chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n")),
    ("te-chunked-chunked", _post(b"Transfer-Encoding: chunked, chunked\r\n",
                                 b"5\r\nhello\r\n0\r\n\r\n")),
    ("te-identity", _post(b"Transfer-Encoding: identity\r\nContent-Length: 5\r\n", b"hello")),
    ("te-gzip-chunked", _post(b"Transfer-Encoding: gzip, chunked\r\n",
                              b"5\r\nhello\r\n0\r\n\r\n")),
    ("te-chunked-gzip", _post(b"Transfer-Encoding: chunked, gzip\r\n",
                              b"5\r\nhello\r\n0\r\n\r\n")),
    ("te-two-headers", _post(b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
                             b"5\r\nhello\r\n0\r\n\r\n")),
    ("te-http10", b"POST /{c}/ HTTP/1.0\r\n" + H + CHUNKED + b"\r\n5\r\nhello\r\n0\r\n\r\n"),
    ("bare-lf-head", b"GET /{c}/ HTTP/1.1\nHost: a\nConnection: close\n\n"),
    ("cr-in-header", b"GET /{c}/ HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n" + CLOSE + b"\r\n"),
    ("nul-in-header", b"GET /{c}/ HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n" + CLOSE + b"\r\n"),
    ("obs-fold", b"GET /{c}/ HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n" + CLOSE + b"\r\n"),
    ("space-before-colon", _get(extra=b"X-A : b\r\n")),
    ("header-no-colon", _get(extra=b"X-A b\r\n")),
    ("empty-header-name", _get(extra=b": b\r\n")),
    ("incomplete-body", _post(b"Content-Length: 10\r\n", b"hello")),
]

SMUGGLING = [
    ("cl-te", _post(b"Content-Length: 4\r\n" + CHUNKED, b"0\r\n\r\n" + HIDDEN)),
    ("te-cl", _post(CHUNKED + b"Content-Length: 60\r\n", b"0\r\n\r\n" + HIDDEN)),
    ("te-space-name", _post(b"Transfer-Encoding : chunked\r\nContent-Length: 5\r\n", b"hello")),
    ("te-tab-value", _post(b"Transfer-Encoding:\tchunked\r\n", b"5\r\nhello\r\n0\r\n\r\n")),
    ("te-xchunked", _post(b"Transfer-Encoding: xchunked\r\nContent-Length: 5\r\n", b"hello")),
    ("te-chunked-vtab", _post(b"Transfer-Encoding: chunked\x0b\r\nContent-Length: 5\r\n",
                              b"hello")),
    ("te-leading-comma", _post(b"Transfer-Encoding: ,chunked\r\n",
                               b"5\r\nhello\r\n0\r\n\r\n")),
    ("te-quoted", _post(b'Transfer-Encoding: "chunked"\r\nContent-Length: 5\r\n', b"hello")),
    ("te-obs-fold", _post(b"Transfer-Encoding:\r\n chunked\r\nContent-Length: 5\r\n",
                          b"hello")),
    ("te-underscore", _post(b"Transfer_Encoding: chunked\r\nContent-Length: 5\r\n", b"hello")),
    ("cl-underscore", _post(b"Content_Length: 60\r\nContent-Length: 5\r\n", b"hello")),
    ("cl-vtab", _post(b"Content-Length:\x0b5\r\n", b"hello")),
    ("cl-space-name", _post(b"Content-Length : 5\r\n", b"hello")),
    ("two-cl-smuggle", _post(b"Content-Length: 0\r\nContent-Length: 60\r\n", HIDDEN)),
    ("chunk-ext-smuggle", _post(CHUNKED, b"5;x=\"\r\n0\r\n\r\n\"\r\nhello\r\n0\r\n\r\n")),
    ("get-cl-hidden", b"GET /{c}/ HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n\r\n"
     % len(HIDDEN.replace(b"{c}", b"c000")) + HIDDEN.replace(b"\r\n\r\n", b"\r\n" + CLOSE
                                                             + b"\r\n")),
    ("lf-cl-te", b"POST /{c}/ HTTP/1.1\nHost: a\nContent-Length: 4\nTransfer-Encoding: chunked"
     b"\n\n0\r\n\r\n" + HIDDEN),
    ("zero-chunk-trailer-smuggle", _post(CHUNKED, b"0\r\nContent-Length: 60\r\n\r\n" + HIDDEN)),
    ("http10-keepalive-cl-te", b"POST /{c}/ HTTP/1.0\r\n" + H + b"Connection: keep-alive\r\n"
     b"Content-Length: 4\r\n" + CHUNKED + b"\r\n0\r\n\r\n" + HIDDEN),
    ("chunk-size-long-hex", _post(CHUNKED, b"00000000000000000000005\r\nhello\r\n0\r\n\r\n")),
]

HOST = [
    ("host-missing-11", b"GET /{c}/ HTTP/1.1\r\n" + CLOSE + b"\r\n"),
    ("host-missing-10", b"GET /{c}/ HTTP/1.0\r\n\r\n"),
    ("host-twice", b"GET /{c}/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n" + CLOSE + b"\r\n"),
    ("host-empty", b"GET /{c}/ HTTP/1.1\r\nHost:\r\n" + CLOSE + b"\r\n"),
    ("host-port", b"GET /{c}/ HTTP/1.1\r\nHost: a:8080\r\n" + CLOSE + b"\r\n"),
    ("host-bad-chars", b"GET /{c}/ HTTP/1.1\r\nHost: a b\r\n" + CLOSE + b"\r\n"),
    ("host-userinfo", b"GET /{c}/ HTTP/1.1\r\nHost: u@a\r\n" + CLOSE + b"\r\n"),
    ("host-slash", b"GET /{c}/ HTTP/1.1\r\nHost: a/b\r\n" + CLOSE + b"\r\n"),
    ("absolute-form", b"GET http://other/{c}/ HTTP/1.1\r\n" + H + CLOSE + b"\r\n"),
    ("absolute-form-no-host", b"GET http://other/{c}/ HTTP/1.1\r\n" + CLOSE + b"\r\n"),
    ("connection-close-host", b"GET /{c}/ HTTP/1.1\r\nHost: a\r\nConnection: close, Host"
     b"\r\n\r\n"),
    ("host-ipv6", b"GET /{c}/ HTTP/1.1\r\nHost: [::1]:80\r\n" + CLOSE + b"\r\n"),
]

METHODS = [
    (name.decode().lower(), b"%s /{c}/ HTTP/1.1\r\n" % name + H + CLOSE + b"\r\n")
    for name in (b"GET", b"HEAD", b"DELETE", b"OPTIONS", b"TRACE", b"PROPFIND")
] + [
    ("put-body", b"PUT /{c}/ HTTP/1.1\r\n" + H + b"Content-Length: 2\r\n" + CLOSE + b"\r\nhi"),
    ("patch-body", b"PATCH /{c}/ HTTP/1.1\r\n" + H + b"Content-Length: 2\r\n" + CLOSE
     + b"\r\nhi"),
    ("connect", b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n" + CLOSE + b"\r\n"),
    ("options-star", b"OPTIONS * HTTP/1.1\r\n" + H + CLOSE + b"\r\n"),
    ("lowercase-method", b"get /{c}/ HTTP/1.1\r\n" + H + CLOSE + b"\r\n"),
    ("unknown-method", b"FOO /{c}/ HTTP/1.1\r\n" + H + CLOSE + b"\r\n"),
    ("method-bad-char", b"G(T /{c}/ HTTP/1.1\r\n" + H + CLOSE + b"\r\n"),
    ("http09", b"GET /{c}/\r\n"),
    ("http20-line", _get(version=b"HTTP/2.0")),
    ("http12", _get(version=b"HTTP/1.2")),
    ("http-lowercase", _get(version=b"http/1.1")),
    ("dot-segments", _get(path=b"/x/../{c}/")),
    ("escaped-path", _get(path=b"/%7Bc%7D/../{c}/a%2Fb")),
    ("double-slash", _get(path=b"//{c}//")),
    ("space-in-path", b"GET /{c}/a b HTTP/1.1\r\n" + H + CLOSE + b"\r\n"),
    ("fragment", _get(path=b"/{c}/#frag")),
]

UPGRADE = [
    ("websocket-plain-route", _get(extra=b"Upgrade: websocket\r\nSec-WebSocket-Key: x\r\n"
                                         b"Sec-WebSocket-Version: 13\r\n")
     .replace(CLOSE, b"Connection: Upgrade\r\n")),
    ("h2c-get", b"GET /{c}/ HTTP/1.1\r\n" + H + b"Connection: Upgrade, HTTP2-Settings\r\n"
     b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n" + _get()),
    ("h2c-post-cl", b"POST /{c}/ HTTP/1.1\r\n" + H + b"Connection: Upgrade, HTTP2-Settings\r\n"
     b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nContent-Length: %d\r\n\r\n"
     % len(HIDDEN.replace(b"{c}", b"c000")) + HIDDEN + _get()),
    ("h2c-post-chunked", b"POST /{c}/ HTTP/1.1\r\n" + H + b"Connection: Upgrade\r\n"
     b"Upgrade: h2c\r\n" + CHUNKED + b"\r\n5\r\nhello\r\n0\r\n\r\n" + _get()),
    ("upgrade-without-connection", _post(b"Upgrade: h2c\r\nContent-Length: 5\r\n", b"hello")),
    ("connection-upgrade-without-upgrade", _post(b"Connection: Upgrade\r\nContent-Length: 5\r\n",
                                                 b"hello").replace(CLOSE, b"")),
    ("websocket-post-body", b"POST /{c}/ HTTP/1.1\r\n" + H + b"Connection: Upgrade\r\n"
     b"Upgrade: websocket\r\nContent-Length: 5\r\n\r\nhello" + _get()),
    ("upgrade-http10", b"GET /{c}/ HTTP/1.0\r\n" + H + b"Connection: Upgrade\r\n"
     b"Upgrade: websocket\r\n\r\n"),
]

_KEEP = b"GET /{c}/%d HTTP/1.1\r\n" + H + b"\r\n"
PIPELINING = [
    ("two-gets", _KEEP % 1 + _get()),
    ("three-gets", _KEEP % 1 + _KEEP % 2 + _get()),
    ("post-then-get", b"POST /{c}/p HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello"
     + _get()),
    ("chunked-then-get", b"POST /{c}/p HTTP/1.1\r\n" + H + CHUNKED + b"\r\n5\r\nhello\r\n0"
     b"\r\n\r\n" + _get()),
    ("head-then-get", b"HEAD /{c}/h HTTP/1.1\r\n" + H + b"\r\n" + _get()),
    ("get-then-junk", _KEEP % 1 + b"\x01junk\r\n\r\n"),
    ("get-then-incomplete", _KEEP % 1 + b"GET /{c}/2 HTTP/1.1\r\nHost"),
    ("get-then-bad-cl", _KEEP % 1 + b"POST /{c}/2 HTTP/1.1\r\nHost: a\r\n"
     b"Content-Length: x\r\n\r\n"),
    ("http10-then-get", b"GET /{c}/1 HTTP/1.0\r\n" + H + b"\r\n" + _get()),
    ("keepalive-10", b"GET /{c}/1 HTTP/1.0\r\n" + H + b"Connection: keep-alive\r\n\r\n"
     + _get()),
    ("close-then-get", b"GET /{c}/1 HTTP/1.1\r\n" + H + CLOSE + b"\r\n" + _get()),
    ("empty-lines-before", b"\r\n\r\n" + _get()),
    ("expect-then-get", b"POST /{c}/p HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\n"
     b"Content-Length: 5\r\n\r\nhello" + _get()),
    ("cl0-then-get", b"POST /{c}/p HTTP/1.1\r\n" + H + b"Content-Length: 0\r\n\r\n" + _get()),
]

LIMITS = [
    ("header-60k", _get(extra=b"X-Big: " + b"a" * 60_000 + b"\r\n")),
    ("header-70k", _get(extra=b"X-Big: " + b"a" * 70_000 + b"\r\n")),
    ("many-headers", _get(extra=b"".join(b"X-H%d: v\r\n" % i for i in range(300)))),
    ("url-8k", _get(path=b"/{c}/" + b"a" * 8000)),
    ("url-70k", _get(path=b"/{c}/" + b"a" * 70_000)),
    ("expect-100", _post(b"Expect: 100-continue\r\nContent-Length: 5\r\n", b"hello")),
    ("expect-other", _post(b"Expect: something\r\nContent-Length: 5\r\n", b"hello")),
    ("body-1mb", _post(b"Content-Length: 1000000\r\n", b"x" * 1_000_000)),
    ("chunked-1mb", _post(CHUNKED, b"f4240\r\n" + b"x" * 1_000_000 + b"\r\n0\r\n\r\n")),
    ("header-value-8k", _get(extra=b"Cookie: " + b"c" * 8000 + b"\r\n")),
    ("long-method", b"A" * 100 + b" /{c}/ HTTP/1.1\r\n" + H + CLOSE + b"\r\n"),
    ("x-forwarded-for-sent", _get(extra=b"X-Forwarded-For: 1.2.3.4\r\n")),
    ("proxy-owned-header", _get(extra=b"X-Strangler-Shadow: 1\r\n")),
]

CORPUS: list[tuple[str, str, bytes]] = [
    (cls, name, raw) for cls, cases in (
        ("framing", FRAMING), ("smuggling", SMUGGLING), ("host", HOST), ("methods", METHODS),
        ("upgrade", UPGRADE), ("pipelining", PIPELINING), ("limits", LIMITS))
    for name, raw in cases
]
