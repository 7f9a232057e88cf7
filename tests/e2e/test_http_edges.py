"""HTTP at the edge of the real servers: chunked bodies, slow clients, proxies, handshakes."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
import time
import uuid

import pytest
import requests
import socketio


def _chunked_request(server, path: str, body_parts: list[bytes], **headers: str) -> bytes:
    """Send ``body_parts`` as the chunks of one POST on a raw socket; the raw answer."""
    head = [f"POST {path} HTTP/1.1", "Host: test", "Transfer-Encoding: chunked"]
    head += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        for part in body_parts:
            sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        sock.sendall(b"0\r\n\r\n")
        return _read_response(sock)


def _read_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length, read whole."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        assert more, f"connection closed mid-response: {data!r}"
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":", 1)[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
    )
    while len(body) < length:
        more = sock.recv(65536)
        assert more, "connection closed mid-body"
        body += more
    return head + b"\r\n\r\n" + body


def _status_and_json(raw: bytes) -> tuple[int, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)


def _post_chunked_ndjson(server, key: str, lines: list[bytes]) -> tuple[int, dict]:
    raw = _chunked_request(
        server, "/api/v1/events/batch", lines, Content_Type="application/x-ndjson", X_API_Key=key
    )
    return _status_and_json(raw)


@pytest.mark.parametrize(
    "mode, public_paths_only", [("eventlet", False), ("eventlet", True), ("threading", False)]
)
def test_chunked_json_and_ndjson_bodies_are_read_whole(
    live_server_factory, mode, public_paths_only
):
    """Also with eventlet's internals left alone, as when serving.probe() fails."""
    server = live_server_factory(mode=mode, EVENTLET_PUBLIC_PATHS_ONLY=str(public_paths_only))
    key = server.create_tenant("acme")["api_key"]
    document = json.dumps({"type": "chunked.one", "id": "one", "metadata": {"pad": "x" * 5000}})
    parts = [document[i : i + 1000].encode() for i in range(0, len(document), 1000)]
    status, body = _status_and_json(
        _chunked_request(
            server, "/api/v1/events", parts, Content_Type="application/json", X_API_Key=key
        )
    )
    assert (status, body["id"], len(body["metadata"]["pad"])) == (201, "one", 5000)

    lines = [
        json.dumps({"type": "chunked.many", "id": f"n{i}"}).encode() + b"\n" for i in range(50)
    ]
    status, body = _post_chunked_ndjson(server, key, lines)
    assert (status, body["accepted"]) == (201, 50)
    if mode == "eventlet":
        assert ("eventlet's own way" in server.log()) is public_paths_only


@pytest.mark.parametrize("mode", ["eventlet", "threading"])
def test_a_piped_curl_upload_is_stored(live_server_factory, mode):
    """What the README's curl examples do when the body comes from a pipe, sent chunked."""
    server = live_server_factory(mode=mode)
    key = server.create_tenant("acme")["api_key"]
    done = subprocess.run(
        [
            "curl",
            "-sS",
            "--data-binary",
            "@-",
            "-H",
            "Transfer-Encoding: chunked",
            "-H",
            "Content-Type: application/json",
            "-H",
            f"X-API-Key: {key}",
            server.url + "/api/v1/events",
        ],
        input=b'{"type": "from.a.pipe", "id": "piped"}',
        capture_output=True,
        timeout=30,
    )
    assert json.loads(done.stdout)["id"] == "piped", done.stdout + done.stderr


@pytest.mark.parametrize("mode", ["eventlet", "threading"])
def test_a_chunked_body_over_the_limit_is_413_in_the_envelope(live_server_factory, mode):
    server = live_server_factory(mode=mode, MAX_CONTENT_LENGTH="4096")
    key = server.create_tenant("acme")["api_key"]
    # Valid JSON whole, so a body cut at the limit cannot pass for the complete one.
    lines = [json.dumps({"type": "big", "id": f"b{i}"}).encode() + b"\n" for i in range(200)]
    status, body = _post_chunked_ndjson(server, key, lines)
    assert status == 413
    assert body["error"]["code"] == "payload_too_large"
    listed = server.admin("GET", "/api/v1/events", headers={"X-API-Key": key}).json()
    assert listed["data"] == []


def test_a_chunked_body_that_never_ends_is_refused_without_reading_it_all(live_server_factory):
    """The 413 comes at the limit and the connection closes: no discarding until the end.

    (Werkzeug's development server, in threading mode, drains what the client sends
    after a 413 by design, up to 1,000 reads; eventlet is the production server.)
    """
    server = live_server_factory(mode="eventlet", MAX_CONTENT_LENGTH="4096")
    key = server.create_tenant("acme")["api_key"]
    endless = 500 * 1024 * 1024
    sent, stopped_by = [0], []
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/v1/events/batch HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: application/x-ndjson\r\nX-API-Key: %s\r\n\r\n" % key.encode()
        )

        def send_forever():
            part = b'{"type": "x"}\n' * 4096
            try:
                while sent[0] < endless:
                    sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
                    sent[0] += len(part)
            except OSError as error:
                stopped_by.append(error)

        sender = threading.Thread(target=send_forever, daemon=True)
        sender.start()
        status, body = _status_and_json(_read_response(sock))
        sender.join(30)
    assert (status, body["error"]["code"]) == (413, "payload_too_large")
    assert stopped_by and sent[0] < endless // 10, f"the server read {sent[0]} bytes"


def _open_for_when_closed(sock: socket.socket, since: float, limit: float) -> float:
    """Seconds from ``since`` until the server closed ``sock`` (inf: not in ``limit``)."""
    sock.settimeout(limit)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return float("inf")
    return time.monotonic() - since


def test_slow_and_idle_connections_time_out_but_established_sockets_stay(live_server_factory):
    """REQUEST_HEADER_TIMEOUT_SECONDS=2: every unfinished request head is closed in time, and
    so is an idle keep-alive connection and a stalled body; a slow upload that keeps
    moving completes, and Socket.IO clients connected before (WebSocket and long
    polling) keep receiving events long after."""
    timeout = 2
    server = live_server_factory(
        mode="eventlet",
        REQUEST_HEADER_TIMEOUT_SECONDS=str(timeout),
        REQUEST_BODY_TIMEOUT_SECONDS=str(timeout),
    )
    key = server.create_tenant("acme")["api_key"]
    websocket = socketio.Client(reconnection=False)
    polling = socketio.Client(reconnection=False)
    received = {"websocket": [], "polling": []}
    websocket.on("event", received["websocket"].append)
    polling.on("event", received["polling"].append)
    websocket.connect(server.url, auth={"api_key": key}, transports=["websocket"], wait_timeout=10)
    polling.connect(server.url, auth={"api_key": key}, transports=["polling"], wait_timeout=10)

    since: dict[socket.socket, float] = {}

    def opened(first_bytes: bytes) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", server.port))
        since[sock] = time.monotonic()
        sock.sendall(first_bytes)
        return sock

    slow = {
        "silent": opened(b""),
        "half a request line": opened(b"GET /hea"),
        "half the headers": opened(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Half"),
        "a stalled body": opened(
            b"POST /api/v1/events HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\nX-API-Key: " + key.encode() + b'\r\n\r\n{"type"'
        ),
    }
    idle = opened(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
    assert _read_response(idle).startswith(b"HTTP/1.1 200")
    since[idle] = time.monotonic()
    slow["an idle keep-alive connection"] = idle

    # One header byte every half second: each wait is short, the head never ends.
    trickled = opened(b"GET /health HTTP/1.1\r\n")
    stop_trickling = threading.Event()

    def trickle():
        with contextlib.suppress(OSError):
            while not stop_trickling.wait(0.5):
                trickled.sendall(b"X")

    threading.Thread(target=trickle, daemon=True).start()
    slow["one header byte at a time"] = trickled

    # A body sent a few bytes every half second for three timeouts' time completes.
    upload_body = json.dumps({"type": "slow.upload", "id": "slow"}).encode()
    upload = opened(
        b"POST /api/v1/events HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nX-API-Key: %s\r\n\r\n" % (len(upload_body), key.encode())
    )
    step = -(-len(upload_body) // (3 * timeout * 2))

    def send_slowly():
        for start in range(0, len(upload_body), step):
            time.sleep(0.5)
            upload.sendall(upload_body[start : start + step])

    uploader = threading.Thread(target=send_slowly, daemon=True)
    uploader.start()

    closed_after = {
        what: _open_for_when_closed(sock, since[sock], 3 * timeout) for what, sock in slow.items()
    }
    stop_trickling.set()
    assert all(seconds <= timeout + 1 for seconds in closed_after.values()), closed_after
    uploader.join(30)
    upload.settimeout(10)
    assert _read_response(upload).startswith(b"HTTP/1.1 201"), "the slow upload was cut off"

    time.sleep(timeout)  # the Socket.IO clients are now 2-4 timeouts old
    assert server.post_events(key, [{"type": "late", "id": "late"}]).status_code == 201
    deadline = time.monotonic() + 10
    while len(received["websocket"]) + len(received["polling"]) < 4:
        assert time.monotonic() < deadline, received
        time.sleep(0.05)
    assert [e["id"] for e in received["websocket"]] == ["slow", "late"]
    assert [e["id"] for e in received["polling"]] == ["slow", "late"]
    assert websocket.connected and polling.connected
    websocket.disconnect()
    polling.disconnect()
    for sock in [*slow.values(), upload]:
        sock.close()


def _socket_refusal(server, auth: dict, forwarded_for: str = "192.0.2.1") -> str:
    """Why a Socket.IO connect (from behind the proxy, if there is one) is refused."""
    client = socketio.Client(reconnection=False)
    errors = []
    client.on("connect_error", errors.append)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(
            server.url,
            auth=auth,
            headers={"X-Forwarded-For": forwarded_for},
            transports=["websocket"],
            wait_timeout=10,
        )
    return errors[0]["message"]


@pytest.mark.parametrize("mode", ["eventlet", "threading"])
def test_socket_logins_behind_a_proxy_are_counted_per_client(live_server_factory, mode):
    """TRUSTED_PROXIES=1: one client's failed socket logins lock out that client only.

    Per day, not per minute: threading-mode connects take seconds each, and a sliding
    window that turns over between them counts the earlier failures as fewer.
    """
    server = live_server_factory(
        mode=mode,
        TRUSTED_PROXIES="1",
        RATELIMIT_AUTH_FAILURES="2/day",
        # Its own counters: with REDIS_URL set, every server of the run shares one Redis.
        RATELIMIT_KEY_PREFIX=f"proxy-test-{uuid.uuid4().hex}",
    )
    bad = {"api_key": "ik_wrong"}
    attempts = [_socket_refusal(server, bad, "203.0.113.7").split(":")[0] for _ in range(3)]
    assert attempts == ["authentication_failed", "authentication_failed", "rate_limited"]
    assert _socket_refusal(server, bad, "198.51.100.9").startswith("authentication_failed:")


def test_socket_refusals_say_what_the_readme_says(live_server_factory):
    server = live_server_factory(mode="eventlet")
    key = server.create_tenant("acme")["api_key"]
    assert (
        _socket_refusal(server, {"api_key": "ik_wrong"})
        == "authentication_failed: invalid, expired or revoked credentials"
    )
    assert _socket_refusal(server, {"token": key}) == (
        "authentication_failed: that is an API key: send it as auth={'api_key': ...}"
    )


@pytest.mark.parametrize("mode", ["eventlet", "threading"])
def test_the_socketio_handshake_allows_no_credentials_and_sends_the_security_headers(
    live_server_factory, mode
):
    server = live_server_factory(mode=mode)
    response = requests.get(
        server.url + "/socket.io/?EIO=4&transport=polling",
        headers={"Origin": "https://anywhere.example"},
        timeout=10,
    )
    assert response.status_code == 200 and response.text.startswith("0{")
    assert response.headers["Access-Control-Allow-Origin"] == "https://anywhere.example"
    assert "Access-Control-Allow-Credentials" not in response.headers
    api = requests.get(server.url + "/api/v1/health", timeout=10)
    for name in ("X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy"):
        assert response.headers.get(name) == api.headers[name], name
    assert response.headers["Cache-Control"] == api.headers["Cache-Control"] == "no-store"
