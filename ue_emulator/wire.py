"""What the users' node reads off the wire: the world seed, and slot allocations, checked.

Each check raises :class:`testbed.proto.streams.Refusal` naming the first field the message
gets wrong; the servicer (`ue_emulator.server`) answers it with the refusal's status code.
"""

from __future__ import annotations

import math

import grpc
import numpy as np

from testbed.core.config import ModelCatalogue
from testbed.core.records import SlotState
from testbed.proto import common_pb2, users_pb2
from testbed.proto.runtime import MAX_TRANSFER_BYTES
from testbed.proto.streams import Refusal, check_link_loss, check_positive, shown

MAX_SEED_WORDS = 64
"""Most entropy words, and most spawn-key words, of a world seed (a seed is a few words:
``episode_seed`` gives one of each). Longer ones are refused: hashing a seed as long as a
message allows (a million words) holds the world for seconds."""
SLOT_RATE_FIELDS = (
    "backhaul_up_rate_bps",
    "backhaul_down_rate_bps",
    "time_scale",
    "request_timeout_s",
)
"""Fields of a slot allocation that must be finite and > 0 (bit/s, emulated s per wall s, s)."""


def world_seed_from_message(message: common_pb2.Seed) -> np.random.SeedSequence:
    """The world seed of an EpisodeRequest; :class:`Refusal` naming ``world_seed`` if empty
    or longer than :data:`MAX_SEED_WORDS`.

    Entropy words are uint64 and spawn keys uint32 on the wire, so every value fits numpy's
    ``SeedSequence``; ``[s, e]`` reproduces ``testbed.core.seeding.episode_seed(s, e)``.
    """
    if not message.entropy:
        raise Refusal(
            grpc.StatusCode.INVALID_ARGUMENT,
            "world_seed.entropy is empty: a SeedSequence needs at least one word",
        )
    for name, words in (("entropy", message.entropy), ("spawn_key", message.spawn_key)):
        if len(words) > MAX_SEED_WORDS:
            raise Refusal(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"world_seed.{name}: {len(words)} words, allowed at most {MAX_SEED_WORDS}",
            )
    return np.random.SeedSequence(list(message.entropy), spawn_key=tuple(message.spawn_key))


def validate_allocation_message(
    allocation: users_pb2.SlotAllocation,
    slot: SlotState,
    catalogue: ModelCatalogue,
    total_steps: int,
) -> None:
    """Raise :class:`Refusal` naming the first field of ``allocation`` that ``slot`` cannot take.

    INVALID_ARGUMENT unless: one allocation per user; each model the catalogue name of its
    user's service type in this slot; steps at most L each and in all; rates (bit/s),
    ``time_scale`` and ``request_timeout_s`` finite and > 0, except an uplink rate of 0 (no
    bandwidth); d_in, d_op > 0 bytes. RESOURCE_EXHAUSTED for d_in or d_op over
    MAX_TRANSFER_BYTES (as the edge answers).
    """
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    num_users = len(slot.services)
    if len(allocation.users) != num_users:
        raise Refusal(
            invalid, f"users: {len(allocation.users)} allocations, the slot has {num_users}"
        )
    for field in SLOT_RATE_FIELDS:
        check_positive(field, getattr(allocation, field))
    if allocation.gallery_users > num_users:
        raise Refusal(
            invalid, f"gallery_users = {allocation.gallery_users}: allowed 0..{num_users}"
        )
    for user, (wanted, service) in enumerate(zip(allocation.users, slot.services, strict=True)):
        _validate_user_allocation(user, wanted, service, catalogue.names[service], total_steps)
    check_link_loss("link_loss", allocation.link_loss)
    total = sum(wanted.steps for wanted in allocation.users)
    if total > total_steps:
        raise Refusal(invalid, f"users[*].steps: {total} in all, over L = {total_steps}")


def _validate_user_allocation(
    user: int, wanted: users_pb2.UserAllocation, service: int, model: str, total_steps: int
) -> None:
    """Refuse user ``user``'s allocation unless it asks for ``model``, the model of its
    ``service`` type, with at most L steps and with a rate and sizes it can carry."""
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    field = f"users[{user}]"
    if wanted.model != model:
        raise Refusal(
            invalid,
            f"{field}.model = {shown(wanted.model)}: user {user} requests service type "
            f"{service}, whose model is {model!r}",
        )
    if wanted.steps > total_steps:
        raise Refusal(invalid, f"{field}.steps = {wanted.steps}: allowed 0..L = {total_steps}")
    rate = wanted.uplink_rate_bps
    if not (math.isfinite(rate) and rate >= 0):
        raise Refusal(
            invalid,
            f"{field}.uplink_rate_bps = {rate!r}: allowed finite values >= 0 (0: no bandwidth)",
        )
    check_positive(f"{field}.downlink_rate_bps", wanted.downlink_rate_bps)
    for name in ("input_bytes", "output_bytes"):
        size = getattr(wanted, name)
        if size == 0:
            raise Refusal(invalid, f"{field}.{name} = 0: a request carries bytes")
        if size > MAX_TRANSFER_BYTES:
            raise Refusal(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{field}.{name} = {size}: over the limit of {MAX_TRANSFER_BYTES} bytes",
            )
