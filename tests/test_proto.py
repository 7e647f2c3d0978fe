"""The wire protocol: committed stubs up to date, pacing, chunking, array checks."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from testbed.proto import codegen
from testbed.proto.runtime import CHUNK_BYTES, Pacer, chunks, decode_array, encode_array, paced


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
