"""Upload and reply streams of the live testbed: checked on arrival, paced on departure.

* An **upload** (a stream of `UploadChunk`) is one `RequestHeader`, then exactly
  ``input_bytes`` of data: the image (float32 HWC in [0, 1]), the mask (float32 HW, exactly
  0 = inpaint or 1 = keep), then filler whose content nobody reads.
* A **reply** (a stream of `DownloadChunk`) is one `ResultHeader`, then exactly
  ``output_bytes`` of data: the generated image, then zero filler.

The edge and the cloud read uploads through :func:`receive_upload`, so both check a request
the same way, and keep only the image and mask: the filler is counted, never buffered, so
memory stays bounded whatever ``input_bytes`` says (at most ``MAX_TRANSFER_BYTES``).

A request a node cannot serve raises :class:`Refusal`: the gRPC status code and a message that
names the offending field first (``"model: ..."``, ``"data: ..."``).

**When a transfer completes.** :func:`runtime.paced` releases each chunk once the emulated
link has carried it, so the last byte arrives ``d / rate`` emulated seconds after the header
and the stream ends right after it. Receivers take the end of the stream as the transfer's
completion (``completed_s``): that is also the moment they know no byte more will come.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import grpc
import numpy as np

from testbed.proto.common_pb2 import DownloadChunk, RequestHeader, ResultHeader, UploadChunk
from testbed.proto.runtime import (
    MAX_LINK_LOSS,
    MAX_TRANSFER_BYTES,
    Pacer,
    chunks,
    decode_array,
    encode_array,
    paced,
)

ImageShape = tuple[int, int, int]
"""(height_px, width_px, channels) of a model's images."""
MAX_REQUEST_ID_CHARS = 256
"""Longest request_id a node echoes back."""
RATE_FIELDS = ("downlink_rate_bps", "backhaul_up_rate_bps", "backhaul_down_rate_bps", "time_scale")
"""Header fields that must be finite and > 0 (bit/s, and emulated s per wall s)."""


class Refusal(Exception):
    """A request a node refuses: the gRPC status to answer and a message naming the field."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def shown(name: str, limit: int = 64) -> str:
    """``repr`` of a client-supplied name, cut to ``limit`` characters for error messages."""
    return repr(name if len(name) <= limit else name[:limit] + "...")


def check_positive(field_name: str, value: float) -> None:
    """INVALID_ARGUMENT naming ``field_name`` unless ``value`` is finite and > 0."""
    if not (math.isfinite(value) and value > 0):
        raise Refusal(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{field_name} = {value!r}: allowed finite values > 0",
        )


def paced_wall_s(nbytes: int, rate_bps: float, time_scale: float) -> float:
    """Wall seconds a `Pacer` at ``rate_bps`` x ``time_scale`` takes for ``nbytes`` on a
    lossless link (the least a lossy one takes); inf when the product underflows to 0."""
    wall_rate_bps = rate_bps * time_scale
    if nbytes == 0:
        return 0.0
    return 8.0 * nbytes / wall_rate_bps if wall_rate_bps > 0 else math.inf


def check_paced_in_time(
    field_name: str, nbytes: int, rate_bps: float, time_scale: float, remaining_s: float | None
) -> None:
    """OUT_OF_RANGE naming ``field_name`` (the rate) when ``nbytes`` paced at ``rate_bps`` x
    ``time_scale`` cannot arrive within ``remaining_s``, what is left of the call's deadline
    (None: no deadline, then only a transfer that would never end is refused).

    Checked before a node paces anything: a pacer's sleep cannot be cut short, so a rate
    valid on its own but far too slow for the call (1 bit/s), or whose product with
    time_scale underflows (5e-324 x 0.5), would hold the node's thread long after the
    caller's deadline, or make the pacer fail (ZeroDivisionError, OverflowError).
    """
    wall_s = paced_wall_s(nbytes, rate_bps, time_scale)
    if math.isfinite(wall_s) and (remaining_s is None or wall_s <= remaining_s):
        return
    left = "no deadline" if remaining_s is None else f"{remaining_s:.3g} s left of the deadline"
    raise Refusal(
        grpc.StatusCode.OUT_OF_RANGE,
        f"{field_name} = {rate_bps!r}: {nbytes} bytes at {rate_bps:g} bit/s x time_scale "
        f"{time_scale:g} take {wall_s:.3g} s of wall time, the call has {left}",
    )


def image_bytes(shape: ImageShape) -> int:
    """Bytes of a float32 HWC image."""
    return 4 * shape[0] * shape[1] * shape[2]


def mask_bytes(shape: ImageShape) -> int:
    """Bytes of a float32 HW mask."""
    return 4 * shape[0] * shape[1]


def check_request_header(
    header: RequestHeader, shapes: Mapping[str, ImageShape], max_steps: int | None
) -> ImageShape:
    """The image shape of ``header``'s model, once every field of the header is checked.

    ``shapes`` holds the models the node serves (catalogue names); ``max_steps`` bounds
    ``steps`` (L at the edge; None where the node ignores it, as the cloud does).
    """
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    if len(header.request_id) > MAX_REQUEST_ID_CHARS:
        raise Refusal(invalid, f"request_id: longer than {MAX_REQUEST_ID_CHARS} characters")
    if header.model not in shapes:
        raise Refusal(
            grpc.StatusCode.NOT_FOUND,
            f"model: {shown(header.model)} is not a catalogue model; known: {', '.join(shapes)}",
        )
    shape = shapes[header.model]
    sizes = (header.height_px, header.width_px, header.channels)
    for name, value, expected in zip(
        ("height_px", "width_px", "channels"), sizes, shape, strict=True
    ):
        if value != expected:
            raise Refusal(
                invalid,
                f"{name} = {value}: model {header.model!r} takes "
                f"{shape[0]}x{shape[1]}x{shape[2]} (height x width x channels) images",
            )
    if max_steps is not None and header.steps > max_steps:
        raise Refusal(
            invalid, f"steps = {header.steps}: allowed 0 to L = catalogue.total_steps = {max_steps}"
        )
    payload = image_bytes(shape) + mask_bytes(shape)
    for name, value, least in (
        ("input_bytes", header.input_bytes, payload),
        ("output_bytes", header.output_bytes, image_bytes(shape)),
    ):
        if value > MAX_TRANSFER_BYTES:
            raise Refusal(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{name} = {value}: over the limit of {MAX_TRANSFER_BYTES} bytes per transfer",
            )
        if value < least:
            raise Refusal(invalid, f"{name} = {value}: below the {least} bytes it must carry")
    for name in RATE_FIELDS:
        check_positive(name, getattr(header, name))
    check_link_loss("link_loss", header.link_loss)
    return shape


def check_link_loss(field_name: str, value: float) -> None:
    """A chunk-loss probability in [0, MAX_LINK_LOSS] (fault injection; 0 = lossless)."""
    if not (0.0 <= value <= MAX_LINK_LOSS):
        raise Refusal(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{field_name} = {value!r}: allowed [0, {MAX_LINK_LOSS}]",
        )


@dataclass(frozen=True)
class Upload:
    """A received, checked upload. It satisfies the edge executor's `ServeRequest`."""

    header: RequestHeader
    masked_image: np.ndarray
    """The corrupted image, HWC float32 in [0, 1]."""
    mask: np.ndarray
    """HW float32 in {0, 1}: 1 = keep, 0 = inpaint."""
    completed_s: float
    """`time.perf_counter()` when the upload's stream ended (its last byte delivered)."""

    @property
    def seed(self) -> int:
        return self.header.noise_seed


def receive_upload(
    messages: Iterator[UploadChunk], shapes: Mapping[str, ImageShape], max_steps: int | None
) -> Upload:
    """Read an upload stream to its end: header first (checked before any data is read), then
    exactly ``input_bytes`` of data, of which only the image and mask are kept and decoded.

    Raises :class:`Refusal` (INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED) naming the field.
    """
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    first = next(messages, None)
    if first is None:
        raise Refusal(invalid, "header: the upload ended before its request header")
    if first.WhichOneof("part") != "header":
        raise Refusal(invalid, "header: the first message of an upload must be the header")
    header = first.header
    shape = check_request_header(header, shapes, max_steps)
    payload_bytes = image_bytes(shape) + mask_bytes(shape)
    payload = bytearray()
    received = 0
    for message in messages:
        if message.WhichOneof("part") != "data":
            raise Refusal(invalid, "header: an upload carries one header, before its data")
        if received + len(message.data) > header.input_bytes:
            raise Refusal(invalid, f"data: more bytes than input_bytes = {header.input_bytes}")
        if len(payload) < payload_bytes:
            payload += message.data[: payload_bytes - len(payload)]
        received += len(message.data)
    completed_s = time.perf_counter()
    if received < header.input_bytes:
        raise Refusal(
            invalid,
            f"data: the upload ended after {received} of input_bytes = {header.input_bytes}",
        )
    split = image_bytes(shape)
    try:
        image = decode_array(bytes(payload[:split]), shape, "image")
        mask = decode_array(bytes(payload[split:]), shape[:2], "mask")
    except ValueError as exc:
        raise Refusal(invalid, str(exc)) from None
    if not np.isin(mask, (0.0, 1.0)).all():
        raise Refusal(invalid, "mask: values must be exactly 0 (inpaint) or 1 (keep)")
    return Upload(header, image, mask, completed_s)


@dataclass
class PacedTransfer:
    """What a paced sender measured: filled in when its stream has been sent to the end."""

    emulated_s: float = field(default=math.nan)
    """Emulated seconds the transfer took (wall seconds x time_scale); NaN until done."""


def upload_messages(
    header: RequestHeader,
    image: np.ndarray,
    mask: np.ndarray,
    rate_bps: float,
    transfer: PacedTransfer | None = None,
) -> Iterator[UploadChunk]:
    """An upload stream: ``header``, then image, mask and zero filler up to ``input_bytes``,
    paced at ``rate_bps`` x ``header.time_scale`` from the moment the stream is first read."""
    pacer = Pacer(rate_bps, header.time_scale, header.link_loss, header.noise_seed)
    yield UploadChunk(header=header)
    payload = encode_array(image) + encode_array(mask)
    for part in paced(chunks(payload, header.input_bytes), pacer):
        yield UploadChunk(data=part)
    if transfer is not None:
        transfer.emulated_s = pacer.emulated_s()


def reply_messages(
    header: ResultHeader,
    image: np.ndarray,
    rate_bps: float,
    time_scale: float,
    link_loss: float = 0.0,
    seed: int = 0,
) -> Iterator[DownloadChunk]:
    """A reply stream: ``header``, then the image and zero filler up to ``output_bytes``,
    paced at ``rate_bps`` x ``time_scale`` (chunks lost with ``link_loss``, retransmitted)
    from the moment the stream is first read."""
    pacer = Pacer(rate_bps, time_scale, link_loss, seed)
    yield DownloadChunk(header=header)
    for part in paced(chunks(encode_array(image), header.output_bytes), pacer):
        yield DownloadChunk(data=part)


@dataclass(frozen=True)
class Reply:
    """A received, checked reply."""

    header: ResultHeader
    image: np.ndarray
    """The generated image, HWC float32 in [0, 1]."""
    started_s: float
    """`time.perf_counter()` when the result header arrived (the reply's link started)."""
    completed_s: float
    """`time.perf_counter()` when the reply's stream ended (its last byte delivered)."""


def receive_reply(messages: Iterator[DownloadChunk], shape: ImageShape, output_bytes: int) -> Reply:
    """Read a reply stream to its end: a `ResultHeader` with ``shape`` and ``output_bytes``,
    then exactly that many bytes, of which only the image is kept and decoded.

    Raises ValueError naming the field; the caller picks the status (a reply is the peer's).
    """
    first = next(messages, None)
    if first is None or first.WhichOneof("part") != "header":
        raise ValueError("header: a reply must start with its result header")
    started_s = time.perf_counter()
    header = first.header
    sizes = (header.height_px, header.width_px, header.channels)
    if sizes != shape or header.output_bytes != output_bytes:
        raise ValueError(
            f"header: reply of {sizes} and {header.output_bytes} bytes, "
            f"expected {shape} and output_bytes = {output_bytes}"
        )
    kept = bytearray()
    received = 0
    for message in messages:
        if message.WhichOneof("part") != "data" or received + len(message.data) > output_bytes:
            raise ValueError(f"data: more than a header and output_bytes = {output_bytes}")
        if len(kept) < image_bytes(shape):
            kept += message.data[: image_bytes(shape) - len(kept)]
        received += len(message.data)
    completed_s = time.perf_counter()
    if received < output_bytes:
        raise ValueError(f"data: the reply ended after {received} of {output_bytes} bytes")
    return Reply(header, decode_array(bytes(kept), shape, "image"), started_s, completed_s)
