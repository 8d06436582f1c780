"""The channel's framing: round trips, and everything a hostile worker could send instead of a frame."""

import socket
import struct

import pytest

from harness.probe import channel


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_a_message_round_trips_with_chinese_text(pair):
    a, b = pair
    message = {"op": "predict", "batch": [{"id": "甲", "text": "小明去商店，他买了苹果。"}]}
    channel.send(a, message)
    assert channel.recv(b) == message


def test_frame_is_a_big_endian_length_and_utf8_json():
    frame = channel.encode({"a": "长"})
    body = '{"a":"\\u957f"}'.encode("utf-8")      # 长 is U+957F
    assert frame == struct.pack(">I", len(body)) + body


def test_a_request_round_trips_with_chinese_text(pair):
    a, b = pair
    message = {"op": "predict", "batch": [{"id": "甲", "text": "小明去商店，他买了苹果。", "keyword": ["苹果"]}]}
    nonce = channel.send_request(a, message)
    assert channel.recv_request(b) == (nonce.hex(), message)
    assert len(nonce) == channel.NONCE_BYTES and channel.new_nonce() != nonce


def test_a_request_that_is_not_a_pickle_is_a_channel_error(pair):
    a, b = pair
    a.sendall(struct.pack(">I", 12) + b"12345678junk")
    with pytest.raises(channel.ChannelError, match="not a request from the host"):
        channel.recv_request(b)


def test_the_host_reads_replies_as_json_only_never_as_a_pickle(pair):
    a, b = pair
    channel.send_request(a, {"ok": True})          # a pickle where the host expects a reply
    with pytest.raises(channel.ChannelError, match="not UTF-8 JSON"):
        channel.recv(b)


def test_an_announced_oversize_frame_is_refused_before_reading_it(pair):
    a, b = pair
    a.sendall(struct.pack(">I", channel.MAX_MESSAGE_BYTES + 1))
    with pytest.raises(channel.ChannelError, match="limit"):
        channel.recv_frame(b)


def test_a_smaller_limit_applies_too(pair):
    a, b = pair
    channel.send(a, {"x": "y" * 100})
    with pytest.raises(channel.ChannelError, match="limit is 10"):
        channel.recv_frame(b, max_bytes=10)


def test_garbage_is_a_channel_error(pair):
    a, b = pair
    a.sendall(struct.pack(">I", 4) + b"\xff\xfe{[")
    with pytest.raises(channel.ChannelError, match="not UTF-8 JSON"):
        channel.recv(b)


def test_a_peer_closing_mid_frame_is_a_channel_error(pair):
    a, b = pair
    a.sendall(struct.pack(">I", 100) + b'{"trunc')
    a.close()
    with pytest.raises(channel.ChannelError, match="closed the channel"):
        channel.recv(b)


def test_encoding_a_message_over_the_limit_fails(monkeypatch):
    monkeypatch.setattr(channel, "MAX_MESSAGE_BYTES", 8)
    with pytest.raises(channel.ChannelError, match="exceeds"):
        channel.encode({"long": "x" * 20})


def test_listen_and_connect_through_a_socket_file(tmp_path):
    server, path = channel.listen(tmp_path)
    try:
        client = channel.connect(path)
        conn, _ = server.accept()
        channel.send(client, {"hello": 1})
        assert channel.recv(conn) == {"hello": 1}
        assert oct(path.stat().st_mode & 0o777) == "0o777"
        client.close()
        conn.close()
    finally:
        server.close()


@pytest.mark.parametrize("raw, fault", [
    (b'{"ok": true, "error": "\\ud800"}', "lone surrogate"),           # json.loads accepts it; writing it fails
    (b'{"\\udfff": 1}', "lone surrogate"),                             # a key too
    (b'[["x", "a\\udc00b"]]', "lone surrogate"),                       # anywhere inside
    (b'{"counted": 1000000000000000000000000000000}', "beyond"),       # 10**30
    (b'{"n": -99999999999999999999}', "beyond"),
    (b'{"t": NaN}', "not UTF-8 JSON"),
    (b'{"t": -Infinity}', "not UTF-8 JSON"),
])
def test_a_reply_the_host_could_not_write_back_is_refused_when_decoded(raw, fault):
    with pytest.raises(channel.ChannelError, match=fault):
        channel.decode(raw)


def test_surrogate_pairs_and_64_bit_numbers_pass():
    assert channel.decode(b'{"a": "\\ud83d\\ude00", "n": 9223372036854775807, "id": "1234567890123456789"}') == {
        "a": "\U0001F600", "n": 2**63 - 1, "id": "1234567890123456789"}
