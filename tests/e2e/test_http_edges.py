"""HTTP at the edge of the real servers: chunked bodies, slow clients, proxies, handshakes."""

from __future__ import annotations

import json
import socket
import subprocess
import threading

import pytest


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


@pytest.mark.parametrize("mode", ["eventlet", "threading"])
def test_chunked_json_and_ndjson_bodies_are_read_whole(live_server_factory, mode):
    server = live_server_factory(mode=mode)
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
    status, body = _status_and_json(
        _chunked_request(
            server,
            "/api/v1/events/batch",
            lines,
            Content_Type="application/x-ndjson",
            X_API_Key=key,
        )
    )
    assert (status, body["accepted"]) == (201, 50)


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
    status, body = _status_and_json(
        _chunked_request(
            server,
            "/api/v1/events/batch",
            lines,
            Content_Type="application/x-ndjson",
            X_API_Key=key,
        )
    )
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
