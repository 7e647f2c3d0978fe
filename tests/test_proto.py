"""The wire protocol: committed stubs up to date, pacing, chunking, array checks, slots, the
relay."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from testbed.proto import codegen
from testbed.proto.common_pb2 import RequestHeader, ResultHeader
from testbed.proto.relay import forward_to_cloud
from testbed.proto.runtime import CHUNK_BYTES, Pacer, chunks, decode_array, encode_array, paced
from testbed.proto.slots import slot_from_message, slot_message
from testbed.proto.streams import image_bytes, reply_messages


def test_committed_stubs_equal_freshly_generated_ones(tmp_path: Path) -> None:
    fresh = codegen.generate(tmp_path)
    assert len(fresh) == 3 * len(codegen.PROTOS)
    for path in fresh:
        committed = codegen.PROTO_DIR / path.name
        assert committed.is_file(), f"{path.name} is not committed"
        assert committed.read_bytes() == path.read_bytes(), (
            f"{path.name} differs from the .proto files: run `python -m testbed.proto.codegen`"
        )


def test_chunks_carry_payload_then_filler_up_to_the_size() -> None:
    payload = bytes(range(256)) * 300  # 76,800 bytes
    parts = list(chunks(payload, filler_to=100_000))
    assert all(len(p) <= CHUNK_BYTES for p in parts)
    data = b"".join(parts)
    assert len(data) == 100_000 and data[: len(payload)] == payload
    assert data[len(payload) :] == bytes(100_000 - len(payload))
    assert b"".join(chunks(payload, filler_to=10)) == payload  # never truncates


@pytest.mark.parametrize(("rate_bps", "time_scale"), [(4e6, 1.0), (2e6, 2.0)])
def test_pacing_takes_the_eq_2_time_within_2_percent(rate_bps: float, time_scale: float) -> None:
    size = 100_000  # bytes: 200 ms at 4 Mbit/s; 400 ms emulated (200 ms wall) at 2 Mbit/s x 2
    pacer = Pacer(rate_bps, time_scale)
    start = time.perf_counter()
    assert sum(len(p) for p in paced(chunks(b"", filler_to=size), pacer)) == size
    wall_s = time.perf_counter() - start
    expected_s = 8 * size / rate_bps
    assert pacer.emulated_s() == pytest.approx(expected_s, rel=0.02)
    assert wall_s == pytest.approx(expected_s / time_scale, rel=0.02)


def test_pacer_refuses_non_positive_rates() -> None:
    with pytest.raises(ValueError, match="rate_bps"):
        Pacer(0.0)
    with pytest.raises(ValueError, match="time_scale"):
        Pacer(1e6, float("nan"))
    with pytest.raises(ValueError, match="underflows to 0"):
        Pacer(5e-324, 0.5)  # each valid, the product underflows to 0


def test_arrays_round_trip_and_are_checked() -> None:
    image = np.random.default_rng(0).random((4, 5, 3), dtype=np.float32)
    data = encode_array(image)
    np.testing.assert_array_equal(decode_array(data, (4, 5, 3), "image"), image)
    with pytest.raises(ValueError, match="image: 236 bytes, expected 240"):
        decode_array(data[:-4], (4, 5, 3), "image")
    bad = image.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="mask: holds NaN"):
        decode_array(encode_array(bad), (4, 5, 3), "mask")
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        decode_array(encode_array(image * 3), (4, 5, 3), "image")


def test_a_slot_crosses_the_wire_exactly() -> None:
    from testbed.core.config import ScenarioConfig
    from testbed.core.seeding import episode_seed
    from ue_emulator.world import World

    world = World(ScenarioConfig())
    world.reset(episode_seed(3, 0))
    world.begin_frame()
    slot = world.next_slot()
    back = slot_from_message(slot_message(slot))
    for name, value in vars(slot).items():
        np.testing.assert_array_equal(getattr(back, name), value, err_msg=name)
        assert np.asarray(getattr(back, name)).dtype == np.asarray(value).dtype, name
    assert back.positions_m.shape == slot.positions_m.shape


class _Call:
    """A reply stream as a stub returns it: iterable, and cancellable."""

    def __init__(self, messages) -> None:
        self._messages = iter(messages)
        self.cancelled = False

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._messages)

    def cancel(self) -> None:
        self.cancelled = True


class _EchoCloud:
    """A stand-in for the cloud's ``Generate``: reads the whole upload, then replies with the
    uploaded image (``output_bytes`` of it: fewer makes the reply malformed)."""

    def __init__(self, output_bytes: int | None = None) -> None:
        self.output_bytes = output_bytes
        self.call: _Call | None = None

    def Generate(self, uploads, timeout: float) -> _Call:
        messages = list(uploads)
        header = messages[0].header
        shape = (header.height_px, header.width_px, header.channels)
        data = b"".join(message.data for message in messages[1:])
        image = decode_array(data[: image_bytes(shape)], shape, "image")
        result = ResultHeader(
            request_id=header.request_id,
            served_by="cloud",
            height_px=shape[0],
            width_px=shape[1],
            channels=shape[2],
            output_bytes=self.output_bytes or header.output_bytes,
        )
        rate_bps, time_scale = header.backhaul_down_rate_bps, header.time_scale
        self.call = _Call(reply_messages(result, image, rate_bps, time_scale))
        return self.call


def test_forward_to_cloud_measures_both_backhaul_transfers_and_cancels_the_call() -> None:
    image = np.random.default_rng(1).random((8, 8, 3), dtype=np.float32)
    mask = np.ones((8, 8), dtype=np.float32)
    header = RequestHeader(
        request_id="r",
        height_px=8,
        width_px=8,
        channels=3,
        input_bytes=50_000,  # 0.4 s emulated at 1 Mbit/s (4 ms wall x 100)
        output_bytes=25_000,  # 0.4 s emulated at 0.5 Mbit/s
        backhaul_up_rate_bps=1e6,
        backhaul_down_rate_bps=5e5,
        time_scale=100.0,
    )
    cloud = _EchoCloud()
    result, output = forward_to_cloud(cloud, header, image, mask, timeout_s=10.0)
    np.testing.assert_array_equal(output, image)
    assert (result.request_id, result.served_by) == ("r", "cloud")
    assert 0.4 <= result.backhaul_up_s < 0.4 + 1.0
    assert 0.4 <= result.backhaul_down_s < 0.4 + 1.0
    assert cloud.call is not None and cloud.call.cancelled


def test_forward_to_cloud_refuses_a_malformed_reply_and_cancels_the_call() -> None:
    image = np.zeros((4, 4, 3), dtype=np.float32)
    header = RequestHeader(
        height_px=4,
        width_px=4,
        channels=3,
        input_bytes=image_bytes((4, 4, 3)) + 64,
        output_bytes=image_bytes((4, 4, 3)),
        backhaul_up_rate_bps=1e9,
        backhaul_down_rate_bps=1e9,
        time_scale=1.0,
    )
    cloud = _EchoCloud(output_bytes=header.output_bytes + 4)
    with pytest.raises(ValueError, match="header: reply of"):
        forward_to_cloud(cloud, header, image, np.ones((4, 4), np.float32), timeout_s=10.0)
    assert cloud.call is not None and cloud.call.cancelled
