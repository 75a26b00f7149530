"""The server interceptor: what BentoML gives HTTP, given to gRPC.

One interceptor (:class:`ServingInterceptor`) wraps the unary methods of
``inference.GRPCInferenceService`` only; the health and reflection services pass through
untouched, so a probe is never refused or counted. Around each call, outermost first:
observability (metrics and one access-log line per call), refusal of malformed protobuf,
concurrency limit, per-call deadline, authentication. These were five interceptors; one
wrapper per method, applied when the service is registered, does the same work without an
async layer and a handler look-up per call.

The interceptor and the servicer share one :class:`CallState` per call through a context
variable: the wrapped behaviour runs in the same task as the interceptor around it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from google.protobuf.message import DecodeError

from vigie.errors import ErrorCode, VigieError
from vigie.log import access_line
from vigie.serving import metrics
from vigie.serving.auth import parse_bearer
from vigie.serving.status import grpc_status
from vigie.serving.types import Protocol_

#: Methods answered to anyone and never refused for load (probes).
PROBE_METHODS = frozenset({"ServerLive", "ServerReady", "ModelReady"})

#: The role each protected method needs.
ROLE_OF_METHOD = {"ModelInfer": "predict", "ModelMetadata": "predict", "ServerMetadata": "predict"}

#: Metadata keys an API key may come in (lower case, as gRPC delivers them).
AUTHORIZATION_KEY = "authorization"
API_KEY_KEY = "x-api-key"

Behavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
Authenticate = Callable[[str | None, str, str], str]

access_log = logging.getLogger("vigie.serving.grpc.access")
_log = logging.getLogger(__name__)


@dataclass
class CallState:
    """What one call has learnt so far, for the metrics and the access log.

    Attributes:
        method: Short method name (``ModelInfer``).
        caller: The authenticated key id, if any.
        model: The model asked for, if any.
        version: The version that answered, if any.
        request_id: The request id (the client's, or the generated one).
        outcome: The error code a failure carried (an ``ErrorCode`` value, or the gRPC
            status name for refusals that have none); None while all is well.
        counted: The data plane has counted this request in the metrics (it counts what
            reaches ``infer``; the front end counts what fails before).
        sent: The status a refusal has begun to send (its name), if any: a call cancelled
            while its refusal is on the wire (the server stopping as the client reads it)
            is logged with the status the client got, not as cancelled.
    """

    method: str
    caller: str | None = None
    model: str = ""
    version: str = ""
    request_id: str = ""
    outcome: str | None = None
    counted: bool = False
    sent: str | None = None


CALL: ContextVar[CallState | None] = ContextVar("vigie_grpc_call", default=None)


def current_call() -> CallState | None:
    """The state of the call being handled in this task, if an interceptor made one."""
    return CALL.get()


def status_code(err: VigieError) -> grpc.StatusCode:
    """The gRPC status of an error, from the one table in :mod:`vigie.serving.status`."""
    return getattr(grpc.StatusCode, grpc_status(err.code))


async def refuse(
    context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str
) -> NoReturn:
    """Note the outcome on the call state, then end the call with a status."""
    state = CALL.get()
    if state is not None:
        state.outcome = state.outcome or code.name
        state.sent = code.name
    await context.abort(code, message)
    raise AssertionError("ServicerContext.abort always raises")


async def refuse_error(context: grpc.aio.ServicerContext, err: VigieError) -> NoReturn:
    """End the call with the status and message of a VigieError."""
    state = CALL.get()
    if state is not None:
        state.outcome = err.code.value
        state.sent = status_code(err).name
    await context.abort(status_code(err), err.message)
    raise AssertionError("ServicerContext.abort always raises")


class _UnaryInterceptor:
    """Wraps the unary methods of the inference service with :meth:`wrap`.

    The wrapped handlers are what the server registers (:meth:`wrap_handlers`), so the
    wrapper is built once per method and costs one call per RPC; a ``grpc.aio``
    interceptor would also cost an awaited ``intercept_service`` on every call.
    """

    def applies_to(self, method: str) -> bool:
        """Whether this interceptor wraps ``method`` (a short name such as ``ModelInfer``)."""
        return True

    def wrap(self, method: str, behavior: Behavior) -> Behavior:
        """The behaviour of ``method`` with this interceptor's work around it."""
        raise NotImplementedError

    def deserializer(self, inner: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
        """The request deserializer to use instead of ``inner`` (by default, ``inner``)."""
        return inner

    def wrap_handlers(self, handlers: dict[str, Any]) -> dict[str, Any]:
        """A service's method handlers (short name -> handler) with this wrapper around the
        unary ones it applies to, to register instead of the originals."""
        wrapped = dict(handlers)
        for method, handler in handlers.items():
            if handler.unary_unary is not None and self.applies_to(method):
                wrapped[method] = grpc.unary_unary_rpc_method_handler(
                    self.wrap(method, handler.unary_unary),
                    request_deserializer=self.deserializer(handler.request_deserializer),
                    response_serializer=handler.response_serializer,
                )
        return wrapped


def _final_status(context: grpc.aio.ServicerContext, failed: bool) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    return "UNKNOWN" if failed else "OK"


@dataclass(frozen=True)
class MalformedMessage:
    """What a request that could not be parsed deserializes to."""

    error: str


def api_key(metadata: Any) -> str | None:
    """The API key of a call: ``authorization: Bearer <key>``, else ``x-api-key``."""
    bearer: str | None = None
    plain: str | None = None
    for key, value in metadata or ():
        if key == AUTHORIZATION_KEY:
            bearer = parse_bearer(value if isinstance(value, str) else None)
        elif key == API_KEY_KEY and isinstance(value, str):
            plain = value.strip() or None
    return bearer or plain


class ServingInterceptor(_UnaryInterceptor):
    """Everything BentoML gives HTTP, given to gRPC in one wrapper per method.

    Outermost first, as five interceptors did it before (each had cost an async wrapper
    and a handler look-up per call): one access-log line per call and the failure counts
    of ``ModelInfer`` calls refused before they reached the data plane; refusal of
    malformed protobuf; the concurrency limit; the per-call deadline; authentication.
    Probes (``ServerLive``, ``ServerReady``, ``ModelReady``) are only observed and
    guarded against malformed protobuf: they are never refused for load or for a key.

    Args:
        model_label: The metric label of a model name (the data plane's
            ``metric_model``), so that clients cannot create label values at will.
        limit: Most calls handled at once (``grpc_max_concurrency``).
        timeout_s: The per-call deadline (``request_timeout_s``); a shorter deadline set
            by the client is enforced by gRPC itself.
        authenticate: ``(token, role, protocol) -> caller id``, raising VigieError
            UNAUTHENTICATED or FORBIDDEN (``Authenticator.check``); None lets every
            call in.
    """

    def __init__(
        self,
        model_label: Callable[[str], str],
        *,
        limit: int,
        timeout_s: float,
        authenticate: Authenticate | None = None,
    ) -> None:
        self._model_label = model_label
        self.limit = limit
        self.in_flight = 0
        self.timeout_s = timeout_s
        self._authenticate = authenticate

    def deserializer(self, inner: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
        """Parse with ``inner``; a parse failure becomes a MalformedMessage.

        gRPC itself answers UNKNOWN (and logs an error) when a deserializer raises.
        """

        def parse(data: bytes) -> Any:
            try:
                return inner(data)
            except DecodeError as err:
                return MalformedMessage(str(err))

        return parse

    def wrap(self, method: str, behavior: Behavior) -> Behavior:
        """Observe, guard, limit, bound and authenticate one call of ``method``."""
        probe = method in PROBE_METHODS
        role = ROLE_OF_METHOD.get(method) if self._authenticate is not None else None

        async def served(request: Any, context: grpc.aio.ServicerContext) -> Any:
            state = CallState(method=method)
            token = CALL.set(state)
            start = time.perf_counter()
            status = "OK"
            try:
                if isinstance(request, MalformedMessage):
                    await refuse(
                        context,
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"the {method} request is not valid protobuf: {request.error}",
                    )
                if probe:
                    response = await behavior(request, context)
                else:
                    response = await self._limited(method, role, request, context, behavior)
                status = _final_status(context, failed=False)
                return response
            except asyncio.CancelledError:
                status = state.sent or "CANCELLED"
                raise
            except BaseException:
                status = _final_status(context, failed=True)
                raise
            finally:
                CALL.reset(token)
                self._record(state, status, time.perf_counter() - start, context)

        return served

    async def _limited(
        self,
        method: str,
        role: str | None,
        request: Any,
        context: grpc.aio.ServicerContext,
        behavior: Behavior,
    ) -> Any:
        if self.in_flight >= self.limit:
            await refuse(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"too many concurrent calls (limit {self.limit}); retry shortly",
            )
        self.in_flight += 1
        metrics.GRPC_IN_FLIGHT.inc()
        try:
            async with asyncio.timeout(self.timeout_s):
                if role is not None:
                    await self._check_key(role, context)
                return await behavior(request, context)
        except TimeoutError:
            await refuse(
                context,
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"{method} took longer than the {self.timeout_s:g} s request timeout",
            )
        finally:
            self.in_flight -= 1
            metrics.GRPC_IN_FLIGHT.dec()

    async def _check_key(self, role: str, context: grpc.aio.ServicerContext) -> None:
        assert self._authenticate is not None
        token = api_key(context.invocation_metadata())
        try:
            caller = self._authenticate(token, role, Protocol_.V2_GRPC.value)
        except VigieError as err:
            metrics.count_auth_failure(
                Protocol_.V2_GRPC.value,
                forbidden=err.code is ErrorCode.FORBIDDEN,
                token_given=token is not None,
            )
            await refuse_error(context, err)
        state = CALL.get()
        if state is not None:
            state.caller = caller

    def _record(
        self, state: CallState, status: str, elapsed: float, context: grpc.aio.ServicerContext
    ) -> None:
        if state.method == "ModelInfer" and status != "OK" and not state.counted:
            metrics.count_failure(
                Protocol_.V2_GRPC.value, self._model_label(state.model), state.outcome or status
            )
        if not access_log.isEnabledFor(logging.INFO):
            return  # the line and its fields are built only for a logger that keeps them
        access_line(
            access_log,
            f"grpc {state.method} {status}",
            {
                "method": state.method,
                "peer": context.peer(),
                "status": status,
                "duration_ms": round(elapsed * 1000.0, 3),
                "request_id": state.request_id,
                "model": state.model,
                "version": state.version,
                "caller": state.caller,
            },
        )
