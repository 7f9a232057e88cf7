"""No client, authenticated or not, may hold every connection the server has."""

import json
import socket
import time

import socketio
import websocket


def _get_health(port: int) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_one_address_gets_only_its_share_of_connections(live_server_factory):
    server = live_server_factory(mode="eventlet", MAX_CONNECTIONS_PER_ADDRESS="5")
    held = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(5)]
    try:
        for sock in held:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: te")  # never finished
        status, body = _get_health(server.port)
        assert status == 429
        assert json.loads(body)["error"]["code"] == "too_many_connections"
    finally:
        held.pop().close()
    deadline = time.monotonic() + 10
    while (status := _get_health(server.port)[0]) == 429 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert status == 200, "a freed slot was not given back"
    for sock in held:
        sock.close()


def test_connections_that_never_join_are_closed_but_subscribers_stay(live_server_factory):
    server = live_server_factory(mode="eventlet", SOCKETIO_JOIN_TIMEOUT_SECONDS="1")
    key = server.create_tenant("acme")["api_key"]
    subscriber = socketio.Client(reconnection=False)
    subscriber.connect(server.url, auth={"api_key": key}, transports=["websocket"])
    anonymous = websocket.create_connection(
        f"ws://127.0.0.1:{server.port}/socket.io/?EIO=4&transport=websocket", timeout=15
    )
    try:
        assert anonymous.recv().startswith("0{")  # Engine.IO open; never joins "/"
        started = time.monotonic()
        try:
            while anonymous.recv():
                pass  # pings, until the server closes it
        except websocket.WebSocketConnectionClosedException:
            pass
        assert time.monotonic() - started < 14, "the connection was not closed"
        assert subscriber.connected
        received = []
        subscriber.on("event", received.append)
        server.post_events(key, [{"type": "still.here"}])
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [e["type"] for e in received] == ["still.here"]
    finally:
        anonymous.close()
        subscriber.disconnect()
