"""The fan-out's own frames: byte for byte what eventlet's WebSocket would send."""

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
