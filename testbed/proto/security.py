"""Who may talk to a node: loopback by default; TLS and a shared token anywhere else.

* **Binding.** A node listens on loopback (127.0.0.0/8, ``::1``, ``localhost``) unless told
  otherwise. Any other address needs TLS (``--tls-cert``, ``--tls-key``) AND a shared token
  (``--token``); :func:`check_listen` refuses the bind otherwise. TLS and the token may be
  used on loopback too.
* **The token.** Every call carries ``authorization: Bearer <token>``; a node given a token
  checks it on EVERY method, health and reflection included (:class:`TokenCheck`), in constant
  time, and answers anything else with UNAUTHENTICATED ("missing or wrong token") before
  reading the request. The token never appears in a ``repr``, a log or an error message.
* **Clients verify the server**: with ``--tls-ca`` a channel speaks TLS and accepts only a
  server whose certificate that CA signed and whose name (DNS or IP SAN) matches the address
  dialled. A client never sends the token in the clear to another host: a channel to a
  non-loopback address needs both the CA and the token (:func:`check_target`).

Model weights are no part of this module: they travel only as safetensors and JSON
(``edge_node.zoo.TRANSFER_SUFFIXES``), so no received file is ever unpickled.

This module is the protocol layer: grpc, the standard library and ``testbed.core`` only.
"""

from __future__ import annotations

import collections
import hmac
import ipaddress
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from testbed.core.errors import UsageError

TOKEN_ENV = "TESTBED_TOKEN"
"""Environment variable read for the token when ``--token`` is absent."""
MIN_TOKEN_CHARS = 16
"""Shortest token accepted (``secrets.token_hex(32)`` gives 64 characters)."""
AUTH_METADATA_KEY = "authorization"
BEARER = "Bearer "
UNAUTHENTICATED_DETAILS = "missing or wrong token"
"""What a node answers, with UNAUTHENTICATED, to a call without the right token."""
LISTEN_REFUSAL = "a non-loopback address needs --tls-cert, --tls-key and --token"
TOKEN_RULE = (
    f"--token (or {TOKEN_ENV}): at least {MIN_TOKEN_CHARS} printable ASCII characters without "
    "spaces, e.g. python -c 'import secrets; print(secrets.token_hex(32))'"
)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP address, ``[v6]`` or a name) is this machine's loopback:
    127.0.0.0/8, ``::1`` or ``localhost``. Any other name counts as remote."""
    host = host.strip().removeprefix("[").removesuffix("]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def address_host(address: str) -> str:
    """The host of ``host:port`` (empty when the address has none)."""
    return address.rpartition(":")[0]


MAX_PORT = 65535


def check_address(flag: str, address: str, any_port: bool = False) -> tuple[str, int]:
    """The host and port of ``address`` given to ``flag``: ``HOST:PORT`` (an IPv6 host in
    brackets, ``[::1]:50051``) with a non-empty host and a port in 1-65535, or 0 as well with
    ``any_port`` (a ``--listen`` that takes any free port); a `UsageError` naming ``flag``
    otherwise. The one check of every address a user gives."""
    ports = f"0-{MAX_PORT}, 0: any free port" if any_port else f"1-{MAX_PORT}"
    rule = f"{flag} {address!r}: expected HOST:PORT with a port in {ports}"
    host, colon, port = address.strip().rpartition(":")
    bare = host.removeprefix("[").removesuffix("]")
    bracketed = host.startswith("[") and host.endswith("]")
    if not colon or not bare or (":" in bare and not bracketed) or any(c.isspace() for c in host):
        raise UsageError(rule)
    if (
        not (port.isascii() and port.isdigit())
        or not (0 if any_port else 1) <= int(port) <= MAX_PORT
    ):
        raise UsageError(rule)
    return host, int(port)


@dataclass(frozen=True)
class Security:
    """What secures a node's server and its clients' channels; any part may be absent.

    Build it with :meth:`from_files` (or :meth:`SecurityOptions.security`), which reads and
    checks the PEM files; the constructor checks only which parts go together and the token.
    """

    cert_pem: bytes | None = None
    """The node's certificate chain (PEM): serves TLS, with :attr:`key_pem`."""
    key_pem: bytes | None = field(default=None, repr=False)
    """The certificate's private key (PEM, unencrypted)."""
    ca_pem: bytes | None = None
    """The CA certificate(s) (PEM) a client verifies servers with; TLS when given."""
    token: str | None = field(default=None, repr=False)
    """The shared token every call carries and every node checks."""

    def __post_init__(self) -> None:
        if (self.cert_pem is None) != (self.key_pem is None):
            raise UsageError("--tls-cert and --tls-key go together (the key of that certificate)")
        if self.token is not None and not _valid_token(self.token):
            raise UsageError(TOKEN_RULE)

    @property
    def serves_tls(self) -> bool:
        return self.cert_pem is not None and self.key_pem is not None

    @classmethod
    def from_files(
        cls,
        cert: str | Path | None = None,
        key: str | Path | None = None,
        ca: str | Path | None = None,
        token: str | None = None,
    ) -> Security:
        """Read and check the PEM files named by ``--tls-cert``, ``--tls-key`` and
        ``--tls-ca``; a `UsageError` names the flag of a file that is missing, unreadable or
        not what it should be, and a key that does not belong to the certificate."""
        cert_pem = _read_pem("--tls-cert", cert, (b"CERTIFICATE",))
        key_pem = _read_pem("--tls-key", key, (b"PRIVATE KEY",))
        ca_pem = _read_pem("--tls-ca", ca, (b"CERTIFICATE",))
        security = cls(cert_pem, key_pem, ca_pem, token)
        if key_pem is not None and b"ENCRYPTED" in key_pem:
            raise UsageError(f"--tls-key {key}: an encrypted key; gRPC needs it unencrypted")
        if cert is not None and key is not None:
            try:
                context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                context.load_cert_chain(cert, key, password=lambda: b"")
            except ssl.SSLError as exc:
                raise UsageError(
                    f"--tls-cert {cert} / --tls-key {key}: not a certificate and its key ({exc})"
                ) from None
        if ca_pem is not None:
            try:
                ssl.create_default_context(cadata=ca_pem.decode("ascii", errors="replace"))
            except ssl.SSLError as exc:
                raise UsageError(f"--tls-ca {ca}: not a PEM CA certificate ({exc})") from None
        return security


def _valid_token(token: str) -> bool:
    return len(token) >= MIN_TOKEN_CHARS and all("!" <= char <= "~" for char in token)


def _read_pem(flag: str, path: str | Path | None, kinds: tuple[bytes, ...]) -> bytes | None:
    """The bytes of the PEM file ``path`` holding a ``-----BEGIN <kind>`` block; None if no
    path; a `UsageError` naming ``flag`` otherwise."""
    if path is None:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot read it ({exc.strerror})") from None
    begins = [line for line in data.splitlines() if line.startswith(b"-----BEGIN ")]
    if not any(line.rstrip(b"-").endswith(kind) for line in begins for kind in kinds):
        wanted = " or ".join(kind.decode() for kind in kinds)
        raise UsageError(f"{flag} {path}: not a PEM file holding a {wanted}")
    return data


# Server side ---------------------------------------------------------------------------------


def check_listen(listen: str, security: Security | None) -> None:
    """Refuse a malformed ``--listen`` (:func:`check_address`) and a bind to a non-loopback
    host without TLS and a token (`UsageError`)."""
    host, _ = check_address("--listen", listen, any_port=True)
    if host and not is_loopback(host):
        if security is None or not security.serves_tls or security.token is None:
            raise UsageError(f"--listen {listen}: {LISTEN_REFUSAL}")


def server_credentials(security: Security) -> grpc.ServerCredentials:
    """TLS credentials of a server with ``security``'s certificate (no client certificates:
    clients prove themselves with the token)."""
    assert security.cert_pem is not None and security.key_pem is not None
    return grpc.ssl_server_credentials([(security.key_pem, security.cert_pem)])


class TokenCheck(grpc.ServerInterceptor):
    """Lets a call through only if it carries ``authorization: Bearer <token>``, exactly once;
    any other call, to any method (health, reflection, unknown ones), ends UNAUTHENTICATED
    before its request is read or parsed."""

    def __init__(self, token: str) -> None:
        self._expected = (BEARER + token).encode()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        given = [
            value
            for key, value in handler_call_details.invocation_metadata or ()
            if key == AUTH_METADATA_KEY
        ]
        handler = continuation(handler_call_details)
        if len(given) == 1 and hmac.compare_digest(_as_bytes(given[0]), self._expected):
            return handler
        return _refusing(handler)


def _as_bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", errors="replace")


def _refusing(handler: grpc.RpcMethodHandler | None) -> grpc.RpcMethodHandler:
    """A handler of the same streaming kind as ``handler`` that answers UNAUTHENTICATED (no
    deserializer: the request's bytes are never parsed)."""

    def refuse(_request: object, context: grpc.ServicerContext) -> None:
        context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_DETAILS)

    streams_in = handler is not None and handler.request_streaming
    streams_out = handler is not None and handler.response_streaming
    if streams_in and streams_out:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if streams_in:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if streams_out:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)


# Client side ---------------------------------------------------------------------------------


def check_target(address: str, security: Security | None) -> None:
    """Refuse a channel to a non-loopback ``address`` that would not verify the server or would
    carry no token (`UsageError`): the token is never sent in the clear to another host."""
    if security is None or security.ca_pem is None or security.token is None:
        _refuse_plain_remote(address)


def _refuse_plain_remote(address: str, flag: str = "") -> None:
    """Refuse a non-loopback ``address`` (given to ``flag``, if named) for a channel that
    would not verify the server or would carry no token."""
    if not is_loopback(address_host(address) or "localhost"):
        named = f"{flag} " if flag else ""
        raise UsageError(
            f"{named}{address}: a non-loopback node needs --tls-ca (to verify it) and --token"
        )


def channel_credentials(security: Security) -> grpc.ChannelCredentials:
    """TLS credentials that accept only servers signed by ``security``'s CA."""
    return grpc.ssl_channel_credentials(root_certificates=security.ca_pem)


class _CallDetails(
    collections.namedtuple(
        "_CallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    """A call's details with metadata replaced (grpc's own type is abstract)."""


Continuation = Callable[..., Any]
"""What a client interceptor calls to go on with the call (gRPC's own, untyped)."""


class TokenCarrier(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds ``authorization: Bearer <token>`` to every call of a channel, TLS or not."""

    def __init__(self, token: str) -> None:
        self._header = (AUTH_METADATA_KEY, BEARER + token)

    def _with_token(self, details: grpc.ClientCallDetails) -> _CallDetails:
        metadata = [
            (key, value) for key, value in details.metadata or () if key != AUTH_METADATA_KEY
        ]
        return _CallDetails(
            details.method,
            details.timeout,
            [*metadata, self._header],
            details.credentials,
            details.wait_for_ready,
            details.compression,
        )

    def _intercept(
        self, continuation: Continuation, client_call_details: grpc.ClientCallDetails, request: Any
    ) -> Any:
        """Any kind of call alike: ``request`` is its message, or the iterator of them."""
        return continuation(self._with_token(client_call_details), request)

    intercept_unary_unary = _intercept
    intercept_unary_stream = _intercept
    intercept_stream_unary = _intercept
    intercept_stream_stream = _intercept


# Options -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SecurityOptions:
    """The security options of a node or of `testbed run` as given (``--tls-cert``,
    ``--tls-key``, ``--tls-ca``, the token); nothing is read until :meth:`security`."""

    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    token: str | None = field(default=None, repr=False)

    def security(self) -> Security | None:
        """The `Security` of these options, its PEM files read and checked; None when none
        of them is given."""
        paths = (self.tls_cert, self.tls_key, self.tls_ca)
        if self.token is None and all(path is None for path in paths):
            return None
        return Security.from_files(*paths, token=self.token)

    def check_target(self, flag: str, address: str) -> None:
        """Refuse ``flag``'s node ``address`` when the channel to it would be plain
        (:func:`check_target`), before any file is read."""
        if self.tls_ca is None or self.token is None:
            _refuse_plain_remote(address, flag)

    def for_child(self) -> tuple[list[str], dict[str, str]]:
        """What hands these options on to a node process: the ``--tls-*`` flags, and the
        token as ``{TESTBED_TOKEN: token}`` to add to its environment (never as ``--token``,
        which any user could read in the process list)."""
        flags = [
            item
            for flag, path in (
                ("--tls-cert", self.tls_cert),
                ("--tls-key", self.tls_key),
                ("--tls-ca", self.tls_ca),
            )
            if path is not None
            for item in (flag, str(path))
        ]
        return flags, ({TOKEN_ENV: self.token} if self.token else {})


def redacted_argv(argv: list[str]) -> list[str]:
    """``argv`` with the value of every ``--token`` replaced by ``***``: what may be written to
    a run folder or a log (``run.json`` records the command)."""
    redacted: list[str] = []
    hide_next = False
    for item in argv:
        if hide_next:
            redacted.append("***")
            hide_next = False
        elif item == "--token":
            redacted.append(item)
            hide_next = True
        elif item.startswith("--token="):
            redacted.append("--token=***")
        else:
            redacted.append(item)
    return redacted
