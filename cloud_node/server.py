"""The cloud node (``testbed.v1.Cloud``): every catalogue model, full-quality generation, weights.

* ``Generate`` serves a request the edge forwards: the upload is checked like at the edge
  (`testbed.proto.streams.receive_upload`), then RePaint runs with the cloud's full-quality
  step count, ceil(A3) of the calibration profile for that model (`catalogue.a3_steps`, where
  eq. (7)'s TV stops improving). The header's ``steps`` is IGNORED here: the edge's allocation
  does not reach the cloud. Requests go through an `InferenceWorker`, so forwarded requests
  of the same model that are ready together run as one batch. The reply (result header, image,
  zero filler up to ``output_bytes``) is paced at R_cb, the cloud-to-edge link.
* ``FetchWeights`` streams a model's files for an edge cache fill, paced at the request's rate:
  the safetensors weights and JSON configs of its zoo or checkpoint folder (never pickles),
  sorted by path, each a `FileHeader` (relative POSIX path, size, SHA-256) followed by its
  bytes.

Model names are looked up in the catalogue, whose models were checked at start to be zoo
models or the checkpoint folders the scenario names (``catalogue.models``,
`edge_node.zoo.catalogue_model_dirs`); a name in a request is never used as a path.

| RPC | status | when |
|---|---|---|
| Generate | INVALID_ARGUMENT | no header first, or a second one; a size, rate or time_scale out |
| | | of range; the image or mask malformed; more or fewer bytes than input_bytes |
| Generate | NOT_FOUND | model not in the catalogue |
| Generate | RESOURCE_EXHAUSTED | input_bytes or output_bytes over MAX_TRANSFER_BYTES |
| Generate | OUT_OF_RANGE | the reply, paced at backhaul_down_rate_bps x time_scale, cannot |
| | | arrive before the call's deadline (checked before any generation) |
| Generate | INTERNAL | the generation failed (the node keeps serving) |
| FetchWeights | NOT_FOUND | model not in the catalogue (paths such as ``../x`` included) |
| FetchWeights | INVALID_ARGUMENT | rate_bps or time_scale not finite and > 0 |
| FetchWeights | OUT_OF_RANGE | the files, paced at rate_bps x time_scale, cannot arrive before |
| | | the call's deadline |
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path

import grpc

from edge_node.worker import InferenceWorker, make_executor, result_header, wait_for
from edge_node.zoo import catalogue_model_dirs, image_shape, transfer_bytes, transfer_files
from testbed.core.config import ScenarioConfig, build_catalogue
from testbed.core.errors import CheckpointError
from testbed.proto import cloud_pb2, cloud_pb2_grpc
from testbed.proto.common_pb2 import DownloadChunk, UploadChunk
from testbed.proto.runtime import (
    CHUNK_BYTES,
    LOOPBACK,
    MAX_TRANSFER_BYTES,
    NodeServer,
    Pacer,
    paced,
    serve_servicer,
)
from testbed.proto.security import Security, check_listen
from testbed.proto.streams import (
    ImageShape,
    Refusal,
    check_link_loss,
    check_paced_in_time,
    check_positive,
    receive_upload,
    reply_messages,
    shown,
)

SERVICE_NAME = cloud_pb2.DESCRIPTOR.services_by_name["Cloud"].full_name


class CloudServicer(cloud_pb2_grpc.CloudServicer):
    """Validates each request, then hands it to the worker (Generate) or streams files."""

    def __init__(
        self,
        model_dirs: Mapping[str, Path],
        full_steps: Mapping[str, int],
        worker: InferenceWorker,
    ) -> None:
        self.model_dirs = dict(model_dirs)
        self.full_steps = dict(full_steps)
        self.worker = worker
        self.shapes: dict[str, ImageShape] = {
            name: image_shape(folder) for name, folder in self.model_dirs.items()
        }
        self.files = {name: transfer_files(folder) for name, folder in self.model_dirs.items()}
        self.weights_bytes = {
            name: transfer_bytes(folder) for name, folder in self.model_dirs.items()
        }

    def Generate(
        self, request_iterator: Iterator[UploadChunk], context: grpc.ServicerContext
    ) -> Iterator[DownloadChunk]:
        try:
            upload = receive_upload(request_iterator, self.shapes, max_steps=None)
            model = upload.header.model
            check_paced_in_time(
                "backhaul_down_rate_bps",
                upload.header.output_bytes,
                upload.header.backhaul_down_rate_bps,
                upload.header.time_scale,
                context.time_remaining(),
            )
            future = self.worker.submit(
                self.model_dirs[model], upload, self.full_steps[model], upload.completed_s
            )
            generation = wait_for(future, context.time_remaining())
        except Refusal as refusal:
            context.abort(refusal.code, refusal.message)
        header = upload.header
        yield from reply_messages(
            result_header(header, generation, served_by="cloud"),
            generation.image,
            header.backhaul_down_rate_bps,
            header.time_scale,
            header.link_loss,
            seed=header.noise_seed + 2,  # a loss draw of its own, apart from the uploads'
        )

    def FetchWeights(
        self, request: cloud_pb2.WeightsRequest, context: grpc.ServicerContext
    ) -> Iterator[cloud_pb2.WeightsChunk]:
        try:
            if request.model not in self.model_dirs:
                raise Refusal(
                    grpc.StatusCode.NOT_FOUND,
                    f"model: {shown(request.model)} is not a catalogue model; "
                    f"known: {', '.join(self.model_dirs)}",
                )
            check_positive("rate_bps", request.rate_bps)
            check_positive("time_scale", request.time_scale)
            check_link_loss("link_loss", request.link_loss)
            check_paced_in_time(
                "rate_bps",
                self.weights_bytes[request.model],
                request.rate_bps,
                request.time_scale,
                context.time_remaining(),
            )
        except Refusal as refusal:
            context.abort(refusal.code, refusal.message)
        folder = self.model_dirs[request.model]
        # every file hashed before the link starts, so hashing never counts as link time
        headers = [_file_header(folder, relative) for relative in self.files[request.model]]
        pacer = Pacer(
            request.rate_bps, request.time_scale, request.link_loss, seed=len(request.model)
        )
        for header in headers:
            yield cloud_pb2.WeightsChunk(file=header)
            for part in paced(_read(folder / header.path), pacer):
                yield cloud_pb2.WeightsChunk(data=part)


def _file_header(folder: Path, relative: Path) -> cloud_pb2.FileHeader:
    """The header of a file of ``folder``: relative POSIX path, size in bytes, SHA-256 (hex)."""
    digest = hashlib.sha256()
    size_bytes = 0
    for part in _read(folder / relative):
        digest.update(part)
        size_bytes += len(part)
    return cloud_pb2.FileHeader(
        path=relative.as_posix(), size_bytes=size_bytes, sha256=digest.hexdigest()
    )


def _read(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while part := handle.read(CHUNK_BYTES):
            yield part


def full_quality_steps(config: ScenarioConfig) -> dict[str, int]:
    """The cloud's steps per model: ceil(A3), the fewest whole steps at which eq. (7)'s TV has
    reached its best value A4."""
    catalogue = build_catalogue(config.catalogue)
    return {
        name: math.ceil(a3) for name, a3 in zip(catalogue.names, catalogue.a3_steps, strict=True)
    }


def serve(
    config: ScenarioConfig,
    listen: str = f"{LOOPBACK}:0",
    device: str | None = None,
    threads: int | None = None,
    security: Security | None = None,
    dtype: str = "float32",
) -> NodeServer:
    """Start the cloud node for ``config``'s catalogue on ``listen`` (loopback, any free port
    by default): RePaint on ``device`` (default: cuda if torch sees one, else cpu) with
    ``threads`` torch CPU threads (default: torch's), the catalogue's resampling schedule
    (its profile's ``[repaint]``, as the edge runs it) and the UNet in ``dtype`` (float32,
    float16 or bfloat16; float16 not on cpu). ``security``: TLS and the token checked
    on every call (`testbed.proto.security`); a non-loopback ``listen`` needs both.

    Refuses, with a `TestbedError`, a catalogue model that is neither a zoo model nor a
    checkpoint folder (``catalogue.models``), a model whose
    weights are not safetensors or exceed ``MAX_TRANSFER_BYTES``, and a bad device,
    thread count or dtype. ``NodeServer.stop`` also stops the worker.
    """
    check_listen(listen, security)
    full_steps = full_quality_steps(config)
    names = tuple(full_steps)
    model_dirs = catalogue_model_dirs(names, config.catalogue.model_entries(names))
    for name, folder in model_dirs.items():
        if not any(path.suffix == ".safetensors" for path in transfer_files(folder)):
            raise CheckpointError(f"model {name!r}: no safetensors weights in {folder}")
        total_bytes = transfer_bytes(folder)
        if total_bytes > MAX_TRANSFER_BYTES:
            raise CheckpointError(
                f"model {name!r}: {total_bytes} bytes of weights, over the limit of "
                f"{MAX_TRANSFER_BYTES} bytes a cache fill carries"
            )
    executor = make_executor(device, threads, build_catalogue(config.catalogue).repaint, dtype)
    with ExitStack() as owned:
        worker = InferenceWorker(executor)
        owned.callback(worker.close)
        servicer = CloudServicer(model_dirs, full_steps, worker)
        add = cloud_pb2_grpc.add_CloudServicer_to_server
        return serve_servicer(add, servicer, SERVICE_NAME, listen, security, owned)
