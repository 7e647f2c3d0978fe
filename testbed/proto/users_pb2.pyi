from testbed.proto import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EpisodeRequest(_message.Message):
    __slots__ = ("episode", "world_seed")
    EPISODE_FIELD_NUMBER: _ClassVar[int]
    WORLD_SEED_FIELD_NUMBER: _ClassVar[int]
    episode: int
    world_seed: _common_pb2.Seed
    def __init__(self, episode: _Optional[int] = ..., world_seed: _Optional[_Union[_common_pb2.Seed, _Mapping]] = ...) -> None: ...

class EpisodeReply(_message.Message):
    __slots__ = ("num_users",)
    NUM_USERS_FIELD_NUMBER: _ClassVar[int]
    num_users: int
    def __init__(self, num_users: _Optional[int] = ...) -> None: ...

class FrameRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FrameState(_message.Message):
    __slots__ = ("frame", "popularity_index", "gamma")
    FRAME_FIELD_NUMBER: _ClassVar[int]
    POPULARITY_INDEX_FIELD_NUMBER: _ClassVar[int]
    GAMMA_FIELD_NUMBER: _ClassVar[int]
    frame: int
    popularity_index: int
    gamma: float
    def __init__(self, frame: _Optional[int] = ..., popularity_index: _Optional[int] = ..., gamma: _Optional[float] = ...) -> None: ...

class SlotRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SlotState(_message.Message):
    __slots__ = ("frame", "slot", "popularity_index", "gamma", "location_state", "positions_m", "distance_m", "fading_power", "channel_gain", "services", "input_bits")
    FRAME_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    POPULARITY_INDEX_FIELD_NUMBER: _ClassVar[int]
    GAMMA_FIELD_NUMBER: _ClassVar[int]
    LOCATION_STATE_FIELD_NUMBER: _ClassVar[int]
    POSITIONS_M_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_M_FIELD_NUMBER: _ClassVar[int]
    FADING_POWER_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_GAIN_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    INPUT_BITS_FIELD_NUMBER: _ClassVar[int]
    frame: int
    slot: int
    popularity_index: int
    gamma: float
    location_state: int
    positions_m: _containers.RepeatedScalarFieldContainer[float]
    distance_m: _containers.RepeatedScalarFieldContainer[float]
    fading_power: _containers.RepeatedScalarFieldContainer[float]
    channel_gain: _containers.RepeatedScalarFieldContainer[float]
    services: _containers.RepeatedScalarFieldContainer[int]
    input_bits: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, frame: _Optional[int] = ..., slot: _Optional[int] = ..., popularity_index: _Optional[int] = ..., gamma: _Optional[float] = ..., location_state: _Optional[int] = ..., positions_m: _Optional[_Iterable[float]] = ..., distance_m: _Optional[_Iterable[float]] = ..., fading_power: _Optional[_Iterable[float]] = ..., channel_gain: _Optional[_Iterable[float]] = ..., services: _Optional[_Iterable[int]] = ..., input_bits: _Optional[_Iterable[float]] = ...) -> None: ...

class UserAllocation(_message.Message):
    __slots__ = ("model", "steps", "cached", "uplink_rate_bps", "downlink_rate_bps", "input_bytes", "output_bytes")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CACHED_FIELD_NUMBER: _ClassVar[int]
    UPLINK_RATE_BPS_FIELD_NUMBER: _ClassVar[int]
    DOWNLINK_RATE_BPS_FIELD_NUMBER: _ClassVar[int]
    INPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    model: str
    steps: int
    cached: bool
    uplink_rate_bps: float
    downlink_rate_bps: float
    input_bytes: int
    output_bytes: int
    def __init__(self, model: _Optional[str] = ..., steps: _Optional[int] = ..., cached: _Optional[bool] = ..., uplink_rate_bps: _Optional[float] = ..., downlink_rate_bps: _Optional[float] = ..., input_bytes: _Optional[int] = ..., output_bytes: _Optional[int] = ...) -> None: ...

class SlotAllocation(_message.Message):
    __slots__ = ("episode", "frame", "slot", "users", "backhaul_up_rate_bps", "backhaul_down_rate_bps", "time_scale", "gallery_users", "request_timeout_s", "relay_to_cloud", "link_loss")
    EPISODE_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    USERS_FIELD_NUMBER: _ClassVar[int]
    BACKHAUL_UP_RATE_BPS_FIELD_NUMBER: _ClassVar[int]
    BACKHAUL_DOWN_RATE_BPS_FIELD_NUMBER: _ClassVar[int]
    TIME_SCALE_FIELD_NUMBER: _ClassVar[int]
    GALLERY_USERS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    RELAY_TO_CLOUD_FIELD_NUMBER: _ClassVar[int]
    LINK_LOSS_FIELD_NUMBER: _ClassVar[int]
    episode: int
    frame: int
    slot: int
    users: _containers.RepeatedCompositeFieldContainer[UserAllocation]
    backhaul_up_rate_bps: float
    backhaul_down_rate_bps: float
    time_scale: float
    gallery_users: int
    request_timeout_s: float
    relay_to_cloud: bool
    link_loss: float
    def __init__(self, episode: _Optional[int] = ..., frame: _Optional[int] = ..., slot: _Optional[int] = ..., users: _Optional[_Iterable[_Union[UserAllocation, _Mapping]]] = ..., backhaul_up_rate_bps: _Optional[float] = ..., backhaul_down_rate_bps: _Optional[float] = ..., time_scale: _Optional[float] = ..., gallery_users: _Optional[int] = ..., request_timeout_s: _Optional[float] = ..., relay_to_cloud: _Optional[bool] = ..., link_loss: _Optional[float] = ...) -> None: ...

class UserReport(_message.Message):
    __slots__ = ("uplink_s", "downlink_s", "generation_s", "wait_s", "backhaul_s", "tv", "psnr_db", "ssim", "served_by", "steps_run", "unet_calls", "failure", "upload_png", "output_png", "truth_png", "backhaul_up_s", "backhaul_down_s", "hole_mae")
    UPLINK_S_FIELD_NUMBER: _ClassVar[int]
    DOWNLINK_S_FIELD_NUMBER: _ClassVar[int]
    GENERATION_S_FIELD_NUMBER: _ClassVar[int]
    WAIT_S_FIELD_NUMBER: _ClassVar[int]
    BACKHAUL_S_FIELD_NUMBER: _ClassVar[int]
    TV_FIELD_NUMBER: _ClassVar[int]
    PSNR_DB_FIELD_NUMBER: _ClassVar[int]
    SSIM_FIELD_NUMBER: _ClassVar[int]
    SERVED_BY_FIELD_NUMBER: _ClassVar[int]
    STEPS_RUN_FIELD_NUMBER: _ClassVar[int]
    UNET_CALLS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_PNG_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_PNG_FIELD_NUMBER: _ClassVar[int]
    TRUTH_PNG_FIELD_NUMBER: _ClassVar[int]
    BACKHAUL_UP_S_FIELD_NUMBER: _ClassVar[int]
    BACKHAUL_DOWN_S_FIELD_NUMBER: _ClassVar[int]
    HOLE_MAE_FIELD_NUMBER: _ClassVar[int]
    uplink_s: float
    downlink_s: float
    generation_s: float
    wait_s: float
    backhaul_s: float
    tv: float
    psnr_db: float
    ssim: float
    served_by: str
    steps_run: int
    unet_calls: int
    failure: str
    upload_png: bytes
    output_png: bytes
    truth_png: bytes
    backhaul_up_s: float
    backhaul_down_s: float
    hole_mae: float
    def __init__(self, uplink_s: _Optional[float] = ..., downlink_s: _Optional[float] = ..., generation_s: _Optional[float] = ..., wait_s: _Optional[float] = ..., backhaul_s: _Optional[float] = ..., tv: _Optional[float] = ..., psnr_db: _Optional[float] = ..., ssim: _Optional[float] = ..., served_by: _Optional[str] = ..., steps_run: _Optional[int] = ..., unet_calls: _Optional[int] = ..., failure: _Optional[str] = ..., upload_png: _Optional[bytes] = ..., output_png: _Optional[bytes] = ..., truth_png: _Optional[bytes] = ..., backhaul_up_s: _Optional[float] = ..., backhaul_down_s: _Optional[float] = ..., hole_mae: _Optional[float] = ...) -> None: ...

class SlotReport(_message.Message):
    __slots__ = ("users",)
    USERS_FIELD_NUMBER: _ClassVar[int]
    users: _containers.RepeatedCompositeFieldContainer[UserReport]
    def __init__(self, users: _Optional[_Iterable[_Union[UserReport, _Mapping]]] = ...) -> None: ...
