"""The fan-out's own frames: byte for byte what eventlet's WebSocket would send."""

import socket
import ssl
import warnings

import pytest

from ingest.fanout import text_frame

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # eventlet's maintenance-mode notice
    from eventlet.websocket import RFC6455WebSocket


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_text_frames_match_eventlets_for_every_length_encoding(size):
    payload = "4" + "é" * (size // 2) + "x" * (size % 2)  # multi-byte UTF-8 on purpose
    eventlet_frame = RFC6455WebSocket(None, {}, version=13)._pack_message(payload)
    assert text_frame(payload.encode()) == eventlet_frame


def test_only_plain_tcp_websockets_are_written_to_directly():
    from eventlet.greenio import GreenSocket

    from ingest.fanout import _writable_directly

    plain = socket.socket()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    tls = context.wrap_socket(socket.socket(), do_handshake_on_connect=False)
    try:
        over_tcp = RFC6455WebSocket(GreenSocket(plain), {}, version=13)
        over_tls = RFC6455WebSocket(GreenSocket(tls), {}, version=13)
        classes = (RFC6455WebSocket, socket.socket, ssl.SSLSocket)
        assert _writable_directly(over_tcp, *classes)
        assert not _writable_directly(over_tls, *classes)
    finally:
        plain.close()
        tls.close()


def test_the_probe_accepts_the_pinned_libraries_and_refuses_a_changed_websocket(monkeypatch):
    import engineio

    from ingest import fanout

    eio = engineio.Server(async_mode="eventlet")
    assert fanout.probe(eio) is True
    monkeypatch.delattr(RFC6455WebSocket, "_pack_message")
    assert fanout.probe(eio) is False
