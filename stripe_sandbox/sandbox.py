"""The request pipeline that ties the store, idempotency, faults and webhooks together.

``Sandbox`` knows nothing about sockets: it turns a parsed request into a
``Reply`` saying what to send, or whether to hold or drop the connection. The
HTTP layer in ``server.py`` carries that out.

Every API request goes through, in order: authentication, routing, parameter
parsing, the global rate limit, the idempotency lookup, the fault draw (which
may reserve the key), injected latency (slept without the lock), and finally
the operation itself, performed and stored under the key in one locked step.
A request made as a connected account (``Stripe-Account`` header) is refused
with Stripe's 403 when the platform can't reach that account.

The control API (``/_sandbox/…``) is listed in ``control``; the endpoints that
predate it are handled here, the newer ones there. Both change the store through
``Sandbox.mutate`` so their events are delivered like the API's.

With a state file, the state is saved after every successful mutating request
(API ``POST`` or control ``POST``) and when the sandbox closes; see ``persistence``.
"""

from __future__ import annotations

import copy
import itertools
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import control, routes
from .errors import (
    ControlError,
    StripeApiError,
    api_error_500,
    authentication_failed,
    idempotency_in_use,
    idempotency_mismatch,
    invalid_request,
    rate_limited,
    unrecognized_url,
)
from .faults import NO_FAULT, Fault, FaultConfigError, FaultPlan
from .forms import Params, decode, parse_pairs
from .idempotency import Entry, IdempotencyStore
from .persistence import StateFile, StateFileError
from .state import OPERATIONS, STATE_VERSION, RequestContext, Store, new_id
from .webhooks import WebhookSender, deliver

NEW_REFUND_STATUSES = ("succeeded", "pending")


def to_json(value: Any) -> bytes:
    return json.dumps(value, indent=2).encode()


@dataclass
class Reply:
    """What the HTTP layer should do: ``respond``, ``drop`` the connection, or ``hold`` it."""

    status: int | None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    action: str = "respond"
    hold_seconds: float = 0.0
    operation: str | None = None
    outcome: str | None = None


def _api_key(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip() or None
    if scheme.lower() == "basic":
        import base64

        try:
            return base64.b64decode(credentials).decode().partition(":")[0] or None
        except ValueError:
            return None
    return None


class Sandbox:
    def __init__(
        self,
        *,
        seed: int | None = 0,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        webhook_workers: int = 4,
        connect_webhook_url: str | None = None,
        connect_webhook_secret: str | None = None,
        state_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self._initial = {
            "seed": seed,
            "url": webhook_url,
            "secret": webhook_secret,
            "connect_url": connect_webhook_url,
            "connect_secret": connect_webhook_secret,
        }
        # One lock for all state; operations are short, and anything slow
        # (latency, holds, webhook delivery) happens outside it.
        self.lock = threading.Lock()
        self.closing = threading.Event()
        self.store = Store()
        self.faults = FaultPlan(seed)
        self.idempotency = IdempotencyStore()
        self.calls: list[dict[str, Any]] = []
        self._sequence = itertools.count(1)
        self.generation = 0
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.connect_webhook_url = connect_webhook_url
        self.connect_webhook_secret = connect_webhook_secret
        self.state_file = StateFile(state_file) if state_file is not None else None
        self._saves = 0
        # How many objects came back from the state file (None: no state file).
        self.restored = self._load_state()
        self.sender = WebhookSender(
            self._record_delivery, lambda g: g == self.generation, workers=webhook_workers
        )

    def close(self) -> None:
        self.closing.set()
        self.sender.stop()
        self.save_state()

    # -- state file -----------------------------------------------------------

    def _load_state(self) -> int | None:
        if self.state_file is None:
            return None
        data = self.state_file.load()
        if data is None:
            return 0
        try:
            self.store = Store.restore(data["store"])
            self.idempotency.restore(data.get("idempotency", []))
        except (KeyError, TypeError, ValueError) as exc:
            raise StateFileError(f"{self.state_file.path} is not a sandbox state: {exc}") from exc
        hooks = data.get("webhooks") or {}
        # Endpoints given at start-up win over the ones saved from the control API.
        if not self.webhook_url:
            self.webhook_url, self.webhook_secret = hooks.get("url"), hooks.get("secret")
        if not self.connect_webhook_url:
            self.connect_webhook_url = hooks.get("connect_url")
            self.connect_webhook_secret = hooks.get("connect_secret")
        tables = ("accounts", "payment_intents", "charges", "refunds", "transfers", "disputes")
        return sum(len(getattr(self.store, table)) for table in tables)

    def save_state(self) -> None:
        """Write the state file (if any) with everything as it is now."""
        if self.state_file is None:
            return
        with self.lock:
            self._saves += 1
            sequence = self._saves
            text = json.dumps(
                {
                    "version": STATE_VERSION,
                    "store": self.store.dump(),
                    "idempotency": self.idempotency.dump(),
                    "webhooks": {
                        "url": self.webhook_url,
                        "secret": self.webhook_secret,
                        "connect_url": self.connect_webhook_url,
                        "connect_secret": self.connect_webhook_secret,
                    },
                }
            )
        try:
            self.state_file.save(sequence, text)
        except OSError as exc:
            print(f"stripe_sandbox: could not save state: {exc}", file=sys.stderr, flush=True)

    # -- API requests -------------------------------------------------------

    def handle_api(self, method: str, target: str, headers: Mapping[str, str], body: bytes):
        started = time.monotonic()
        request_id = new_id("req")
        split = urlsplit(target)
        key = headers.get("Idempotency-Key") if method == "POST" else None
        route = routes.match(method, split.path)
        operation = route[0] if route else None
        call = {
            "seq": next(self._sequence),
            "time": time.time(),
            "method": method,
            "path": split.path,
            "operation": operation,
            "idempotency_key": key,
            "request_id": request_id,
        }
        base_headers = {"Request-Id": request_id}
        if key:
            base_headers["Idempotency-Key"] = key
        if headers.get("Stripe-Version"):
            base_headers["Stripe-Version"] = headers["Stripe-Version"]

        def finish(reply: Reply, outcome: str) -> Reply:
            reply.headers = {**reply.headers, **base_headers}
            reply.operation, reply.outcome = operation, outcome
            call.update(
                status=reply.status if reply.action == "respond" else None,
                outcome=outcome,
                duration_ms=round((time.monotonic() - started) * 1000, 1),
            )
            with self.lock:
                self.calls.append(call)
            return reply

        def error(exc: StripeApiError, outcome: str) -> Reply:
            reply = Reply(exc.status, to_json(exc.to_body(request_id)), dict(exc.headers))
            return finish(reply, outcome)

        api_key = _api_key(headers.get("Authorization"))
        if not api_key or not api_key.startswith("sk_"):
            return error(authentication_failed(api_key), "error")
        if route is None:
            return error(unrecognized_url(method, split.path), "error")
        operation, args = route
        try:
            raw = body.decode("utf-8") if method == "POST" else split.query
            pairs = parse_pairs(raw)
            params = Params(decode(pairs))
        except UnicodeDecodeError:
            return error(invalid_request("Request body is not valid UTF-8."), "error")
        except StripeApiError as exc:
            return error(exc, "error")
        fingerprint = (method, split.path, tuple(sorted(pairs)))

        replay: Entry | None = None
        reservation: Entry | None = None
        fault: Fault = NO_FAULT
        with self.lock:
            rejection = self._admit(operation, key, fingerprint)
            if isinstance(rejection, Entry):
                replay, rejection = rejection, None
            elif rejection is None:
                fault = self.faults.draw(operation)
                if key and fault.stored:
                    reservation = self.idempotency.reserve(key, fingerprint)
            latency = self.faults.latency_seconds(operation)
        if rejection is not None:
            return error(*rejection)

        try:
            if latency:
                self.closing.wait(latency)
            if replay is not None:
                replayed = {
                    **replay.headers,
                    "Idempotent-Replayed": "true",
                    "Original-Request": replay.request_id,
                }
                return finish(Reply(replay.status, replay.body, replayed), "replayed")
            if fault.kind == "timeout":
                hold = Reply(None, action="hold", hold_seconds=fault.hold_seconds)
                return finish(hold, "timeout")
            if fault.kind == "respond":
                reply = Reply(fault.status, to_json(fault.body), dict(fault.headers))
                if reservation is not None:
                    with self.lock:
                        self.idempotency.complete(
                            key, reservation, reply.status, reply.body, reply.headers, request_id
                        )
                return finish(reply, fault.outcome)
            account = headers.get("Stripe-Account") or None
            ctx = RequestContext(request_id, key, account, api_key)
            reply = self._perform(operation, params, args, ctx, reservation)
        finally:
            if reservation is not None:
                with self.lock:
                    self.idempotency.release(key, reservation)

        if method == "POST" and reply.status == 200:
            self.save_state()
        if fault.kind == "drop_after_perform":
            return finish(Reply(None, action="drop"), "dropped_after_perform")
        return finish(reply, reply.outcome or "performed")

    def _admit(self, operation: str, key: str | None, fingerprint: Any):
        """Rate limit and idempotency checks; returns a rejection, a replay Entry, or None."""
        refused_by = self.faults.admit(operation)
        if refused_by is not None:
            return rate_limited(refused_by), "rate_limited"
        if not key:
            return None
        entry = self.idempotency.lookup(key)
        if entry is None:
            return None
        if entry.fingerprint != fingerprint:
            return idempotency_mismatch(key), "idempotency_conflict"
        if not entry.done:
            return idempotency_in_use(key), "in_flight"
        return entry

    def _perform(self, operation, params, args, ctx: RequestContext, reservation: Entry | None):
        """Run the operation and store its result under the key, atomically."""
        handler = OPERATIONS[operation]
        with self.lock:
            try:
                self.store.check_account_access(ctx)
                result = handler(self.store, params, args, ctx)
                reply = Reply(200, to_json(result), outcome="performed")
            except StripeApiError as exc:
                body = to_json(exc.to_body(ctx.request_id))
                reply = Reply(exc.status, body, dict(exc.headers), outcome="error")
            except Exception:
                # A sandbox bug: answer like Stripe's 500 but keep nothing under the
                # key, so the client's retry runs the operation again.
                traceback.print_exc(file=sys.stderr)
                self.store.outbox.clear()
                return Reply(500, to_json(api_error_500().to_body()), outcome="error")
            # Only a successful operation has effects worth announcing.
            events = self.store.take_outbox()
            if reply.status == 200:
                self._dispatch(events)
            if reservation is not None:
                self.idempotency.complete(
                    ctx.idempotency_key,
                    reservation,
                    reply.status,
                    reply.body,
                    reply.headers,
                    ctx.request_id,
                )
        return reply

    def _dispatch(self, events: list[dict[str, Any]]) -> None:
        """Queue events for delivery. Caller holds the lock."""
        for event in events:
            url, secret, endpoint = self._endpoint_for(event)
            if url and secret:
                self.sender.submit(url, secret, event, self.generation, endpoint)

    def _endpoint_for(self, event: dict[str, Any]) -> tuple[str | None, str | None, str]:
        """Connect events (they name an ``account``) go to the Connect endpoint only."""
        if event.get("account"):
            return self.connect_webhook_url, self.connect_webhook_secret, "connect"
        return self.webhook_url, self.webhook_secret, "platform"

    def _record_delivery(self, record: dict[str, Any], generation: int) -> None:
        with self.lock:
            if generation == self.generation:
                self.store.deliveries.append(record)

    # -- control API --------------------------------------------------------

    def handle_control(self, method: str, target: str, body: bytes) -> Reply:
        split = urlsplit(target)
        path = split.path.rstrip("/")
        query = {k: v[-1] for k, v in parse_qs(split.query).items()}
        try:
            payload = json.loads(body) if body.strip() else {}
            if not isinstance(payload, dict):
                raise ControlError("the request body must be a JSON object")
            result = self._control(method, path, query, payload)
            if method == "POST":
                self.save_state()
            return Reply(200, to_json(result), {}, operation="control", outcome="control")
        except json.JSONDecodeError as exc:
            return self._control_error(ControlError(f"invalid JSON: {exc}"))
        except (ControlError, FaultConfigError) as exc:
            return self._control_error(exc)
        except StripeApiError as exc:
            reply = Reply(exc.status, to_json(exc.to_body()), operation="control")
            reply.outcome = "error"
            return reply

    @staticmethod
    def _control_error(exc: Exception) -> Reply:
        status = getattr(exc, "status", 400)
        body = to_json({"error": {"type": "sandbox_error", "message": str(exc)}})
        return Reply(status, body, operation="control", outcome="error")

    def _control(self, method: str, path: str, query: dict[str, str], payload: dict[str, Any]):
        parts = path.split("/")[2:]  # drop "", "_sandbox"
        name = parts[0] if parts else ""
        if method == "GET":
            getters = {
                "health": lambda: {"ok": True},
                "state": self.state,
                "ledger": self.ledger,
                "calls": lambda: {
                    "calls": self.call_log(query.get("operation"), query.get("outcome"))
                },
                "faults": self._describe_faults,
                "config": self._config,
            }
            if len(parts) == 1 and name in getters:
                return getters[name]()
        elif method == "POST":
            if len(parts) == 1 and name in self._POSTS:
                return self._POSTS[name](self, payload)
            if len(parts) == 3 and name == "transfers" and parts[2] == "reverse":
                return self.reverse_out_of_band(
                    parts[1], payload.get("amount"), payload.get("metadata") or {}
                )
            if len(parts) == 3 and name == "refunds" and parts[2] == "status":
                return self.set_refund_status(
                    parts[1], payload.get("status"), payload.get("failure_reason")
                )
        found, result = control.dispatch(self, method, parts, payload)
        if found:
            return result
        raise ControlError(f"unknown control endpoint {method} {path}", status=404)

    def reset(self, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        with self.lock:
            self.generation += 1
            self.store = Store()
            self.faults.reset(self._initial["seed"])
            self.idempotency.clear()
            self.calls.clear()
            self._sequence = itertools.count(1)
            self.webhook_url = self._initial["url"]
            self.webhook_secret = self._initial["secret"]
            self.connect_webhook_url = self._initial["connect_url"]
            self.connect_webhook_secret = self._initial["connect_secret"]
        return {"ok": True}

    def forget_idempotency_keys(self) -> dict[str, Any]:
        """What Stripe does 24 hours after a key's first use: the key is unknown again."""
        with self.lock:
            forgotten = len(self.idempotency)
            self.idempotency.clear()
        return {"forgotten": forgotten}

    def _set_faults(self, payload: dict[str, Any]) -> dict[str, Any]:
        knobs = dict(payload)
        operation = knobs.pop("operation", "*")
        with self.lock:
            self.faults.set_knobs(operation, knobs)
            return self.faults.describe()

    def _set_script(self, payload: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            queued = self.faults.add_script(
                payload.get("operation", "*"),
                payload.get("responses", []),
                replace=bool(payload.get("replace", False)),
            )
        return {"operation": payload.get("operation", "*"), "queued": queued}

    def _set_rate_limit(self, payload: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.faults.set_rate_limit(
                payload.get("per_second"),
                payload.get("burst"),
                per_operation=payload.get("per_operation"),
                operations=payload.get("operations"),
            )
            return self.faults.describe()

    def _describe_faults(self) -> dict[str, Any]:
        with self.lock:
            return self.faults.describe()

    @staticmethod
    def _webhook_endpoint(payload: dict[str, Any]) -> tuple[str | None, str | None]:
        url, secret = payload.get("url"), payload.get("secret")
        if url is not None and not isinstance(url, str):
            raise ControlError("url must be a string or null")
        if url and not (isinstance(secret, str) and secret):
            raise ControlError("a webhook url needs a secret")
        return url or None, (secret if url else None)

    def _configure_webhooks(self, payload: dict[str, Any]) -> dict[str, Any]:
        url, secret = self._webhook_endpoint(payload)
        with self.lock:
            self.webhook_url, self.webhook_secret = url, secret
            return {"url": self.webhook_url, "secret": self.webhook_secret}

    def configure_connect_webhooks(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The Connect endpoint: connected accounts' events, signed with its own secret."""
        url, secret = self._webhook_endpoint(payload)
        with self.lock:
            self.connect_webhook_url, self.connect_webhook_secret = url, secret
            return {"url": url, "secret": secret}

    def _set_config(self, payload: dict[str, Any]) -> dict[str, Any]:
        unknown = set(payload) - {"new_refund_status", "seed"}
        if unknown:
            raise ControlError(f"unknown config keys: {', '.join(sorted(unknown))}")
        status = payload.get("new_refund_status")
        if status is not None and status not in NEW_REFUND_STATUSES:
            raise ControlError(f"new_refund_status must be one of {NEW_REFUND_STATUSES}")
        with self.lock:
            if status is not None:
                self.store.new_refund_status = status
            if "seed" in payload:
                self.faults.reseed(payload["seed"])
        return self._config()

    def _config(self) -> dict[str, Any]:
        with self.lock:
            return {
                "new_refund_status": self.store.new_refund_status,
                "seed": self.faults.seed,
                "webhook_url": self.webhook_url,
                "connect_webhook_url": self.connect_webhook_url,
                "settlement": copy.deepcopy(self.store.settlement),
                "state_file": str(self.state_file.path) if self.state_file else None,
            }

    def send_event(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Build (or look up) an event and deliver it synchronously.

        It goes to the endpoint its kind goes to (Connect if it names an
        ``account``) unless the payload gives a ``url`` and ``secret``.
        """
        with self.lock:
            event = self._event_to_send(payload)
            url, secret, endpoint = self._endpoint_for(event)
            url, secret = payload.get("url") or url, payload.get("secret") or secret
            generation = self.generation
        if not (url and secret):
            raise ControlError("webhooks are not configured; set a url and secret first")
        record = deliver(url, secret, event, endpoint=endpoint)
        self._record_delivery(record, generation)
        return {"event": event, "status": record["status"], "error": record["error"]}

    def _event_to_send(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Caller holds the lock."""
        resend = payload.get("event_id")
        if resend:
            event = self.store.events.get(resend)
            if event is None:
                raise ControlError(f"no such event: {resend}", status=404)
            return event
        event_type, obj = payload.get("type"), payload.get("object")
        if not isinstance(event_type, str) or not isinstance(obj, dict):
            raise ControlError("send an event 'type' (string) and 'object' (object)")
        account = payload.get("account")
        if account is not None and not isinstance(account, str):
            raise ControlError("account must be a string (a Connect event's account id)")
        event = Store.build_event(
            event_type, obj, RequestContext(), payload.get("id"), account=account
        )
        self.store.events.setdefault(event["id"], event)
        return event

    def mutate(self, change: Callable[[Store, RequestContext], Any]) -> Any:
        """Change the store for the control API: atomically, with its events delivered.

        A change that raises leaves no events behind (Store operations check
        before they change anything).
        """
        with self.lock:
            try:
                result = change(self.store, RequestContext())
            except BaseException:
                self.store.outbox.clear()
                raise
            self._dispatch(self.store.take_outbox())
        return result

    def read(self, view: Callable[[Store], Any]) -> Any:
        with self.lock:
            return view(self.store)

    def reverse_out_of_band(self, transfer_id: str, amount: Any, metadata: Any) -> dict:
        if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int)):
            raise ControlError("amount must be an integer or null")
        if amount is not None and amount < 1:
            raise ControlError("amount must be positive")
        if not isinstance(metadata, dict):
            raise ControlError("metadata must be an object")
        metadata = {str(k): str(v) for k, v in metadata.items()}
        return self.mutate(
            lambda store, ctx: store.reverse(transfer_id, amount, metadata, None, ctx)
        )

    def set_refund_status(
        self, refund_id: str, status: Any, failure_reason: Any = None
    ) -> dict[str, Any]:
        return self.mutate(
            lambda store, ctx: store.set_refund_status(refund_id, status, ctx, failure_reason)
        )

    _POSTS = {
        "reset": reset,
        "faults": _set_faults,
        "script": _set_script,
        "rate_limit": _set_rate_limit,
        "webhooks": _configure_webhooks,
        "events": send_event,
        "config": _set_config,
    }

    # -- inspection -----------------------------------------------------------

    def state(self) -> dict[str, Any]:
        with self.lock:
            snapshot = self.store.snapshot()
        snapshot["config"] = self._config()
        return snapshot

    def ledger(self) -> dict[str, Any]:
        with self.lock:
            return self.store.ledger()

    def call_log(self, operation: str | None = None, outcome: str | None = None):
        with self.lock:
            calls = [dict(c) for c in self.calls]
        calls.sort(key=lambda c: c["seq"])
        return [
            c
            for c in calls
            if (operation is None or c["operation"] == operation)
            and (outcome is None or c["outcome"] == outcome)
        ]
