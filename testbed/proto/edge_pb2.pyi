from testbed.proto import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CacheRequest(_message.Message):
    __slots__ = ("frame", "models", "backhaul_down_rate_bps", "time_scale", "link_loss")
    FRAME_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    BACKHAUL_DOWN_RATE_BPS_FIELD_NUMBER: _ClassVar[int]
    TIME_SCALE_FIELD_NUMBER: _ClassVar[int]
    LINK_LOSS_FIELD_NUMBER: _ClassVar[int]
    frame: int
    models: _containers.RepeatedScalarFieldContainer[str]
    backhaul_down_rate_bps: float
    time_scale: float
    link_loss: float
    def __init__(self, frame: _Optional[int] = ..., models: _Optional[_Iterable[str]] = ..., backhaul_down_rate_bps: _Optional[float] = ..., time_scale: _Optional[float] = ..., link_loss: _Optional[float] = ...) -> None: ...

class ModelFill(_message.Message):
    __slots__ = ("model", "bytes", "fill_s")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    FILL_S_FIELD_NUMBER: _ClassVar[int]
    model: str
    bytes: int
    fill_s: float
    def __init__(self, model: _Optional[str] = ..., bytes: _Optional[int] = ..., fill_s: _Optional[float] = ...) -> None: ...

class CacheReport(_message.Message):
    __slots__ = ("cached", "evicted", "fills")
    CACHED_FIELD_NUMBER: _ClassVar[int]
    EVICTED_FIELD_NUMBER: _ClassVar[int]
    FILLS_FIELD_NUMBER: _ClassVar[int]
    cached: _containers.RepeatedScalarFieldContainer[str]
    evicted: _containers.RepeatedScalarFieldContainer[str]
    fills: _containers.RepeatedCompositeFieldContainer[ModelFill]
    def __init__(self, cached: _Optional[_Iterable[str]] = ..., evicted: _Optional[_Iterable[str]] = ..., fills: _Optional[_Iterable[_Union[ModelFill, _Mapping]]] = ...) -> None: ...
