from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Seed(_message.Message):
    __slots__ = ("entropy", "spawn_key")
    ENTROPY_FIELD_NUMBER: _ClassVar[int]
    SPAWN_KEY_FIELD_NUMBER: _ClassVar[int]
    entropy: _containers.RepeatedScalarFieldContainer[int]
    spawn_key: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, entropy: _Optional[_Iterable[int]] = ..., spawn_key: _Optional[_Iterable[int]] = ...) -> None: ...

class RequestHeader(_message.Message):
    __slots__ = ("request_id", "model", "steps", "height_px", "width_px", "channels", "noise_seed", "input_bytes", "output_bytes", "downlink_rate_bps", "backhaul_up_rate_bps", "backhaul_down_rate_bps", "time_scale", "link_loss")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_PX_FIELD_NUMBER: _ClassVar[int]
    WIDTH_PX_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    NOISE_SEED_FIELD_NUMBER: _ClassVar[int]
    INPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    DOWNLINK_RATE_BPS_FIELD_NUMBER: _ClassVar[int]
    BACKHAUL_UP_RATE_BPS_FIELD_NUMBER: _ClassVar[int]
    BACKHAUL_DOWN_RATE_BPS_FIELD_NUMBER: _ClassVar[int]
    TIME_SCALE_FIELD_NUMBER: _ClassVar[int]
    LINK_LOSS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: str
    steps: int
    height_px: int
    width_px: int
    channels: int
    noise_seed: int
    input_bytes: int
    output_bytes: int
    downlink_rate_bps: float
    backhaul_up_rate_bps: float
    backhaul_down_rate_bps: float
    time_scale: float
    link_loss: float
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[str] = ..., steps: _Optional[int] = ..., height_px: _Optional[int] = ..., width_px: _Optional[int] = ..., channels: _Optional[int] = ..., noise_seed: _Optional[int] = ..., input_bytes: _Optional[int] = ..., output_bytes: _Optional[int] = ..., downlink_rate_bps: _Optional[float] = ..., backhaul_up_rate_bps: _Optional[float] = ..., backhaul_down_rate_bps: _Optional[float] = ..., time_scale: _Optional[float] = ..., link_loss: _Optional[float] = ...) -> None: ...

class UploadChunk(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: RequestHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[RequestHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class ResultHeader(_message.Message):
    __slots__ = ("request_id", "served_by", "steps_run", "unet_calls", "batch_size", "wait_s", "generation_s", "backhaul_up_s", "backhaul_down_s", "height_px", "width_px", "channels", "output_bytes")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SERVED_BY_FIELD_NUMBER: _ClassVar[int]
    STEPS_RUN_FIELD_NUMBER: _ClassVar[int]
    UNET_CALLS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    WAIT_S_FIELD_NUMBER: _ClassVar[int]
    GENERATION_S_FIELD_NUMBER: _ClassVar[int]
    BACKHAUL_UP_S_FIELD_NUMBER: _ClassVar[int]
    BACKHAUL_DOWN_S_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_PX_FIELD_NUMBER: _ClassVar[int]
    WIDTH_PX_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    served_by: str
    steps_run: int
    unet_calls: int
    batch_size: int
    wait_s: float
    generation_s: float
    backhaul_up_s: float
    backhaul_down_s: float
    height_px: int
    width_px: int
    channels: int
    output_bytes: int
    def __init__(self, request_id: _Optional[str] = ..., served_by: _Optional[str] = ..., steps_run: _Optional[int] = ..., unet_calls: _Optional[int] = ..., batch_size: _Optional[int] = ..., wait_s: _Optional[float] = ..., generation_s: _Optional[float] = ..., backhaul_up_s: _Optional[float] = ..., backhaul_down_s: _Optional[float] = ..., height_px: _Optional[int] = ..., width_px: _Optional[int] = ..., channels: _Optional[int] = ..., output_bytes: _Optional[int] = ...) -> None: ...

class DownloadChunk(_message.Message):
    __slots__ = ("header", "data")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    header: ResultHeader
    data: bytes
    def __init__(self, header: _Optional[_Union[ResultHeader, _Mapping]] = ..., data: _Optional[bytes] = ...) -> None: ...

class DescribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ScenarioDescription(_message.Message):
    __slots__ = ("scenario_sha256", "keys")
    class KeysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SCENARIO_SHA256_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    scenario_sha256: str
    keys: _containers.ScalarMap[str, str]
    def __init__(self, scenario_sha256: _Optional[str] = ..., keys: _Optional[_Mapping[str, str]] = ...) -> None: ...
