"""Helpers for tests: run a sandbox in-process or as a subprocess, and drive its control API.

``SandboxControl`` uses only ``urllib`` so it works wherever the sandbox does;
it has one method per control endpoint (listed in ``stripe_sandbox.control``).
``RunningSandbox`` keeps its state in memory; ``SandboxProcess`` can keep it in
a ``state_file`` that survives stopping and starting the process again.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, TextIO

from .sandbox import Sandbox
from .server import make_server

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class SandboxControlError(Exception):
    """A control call failed; ``status`` and ``body`` are the sandbox's answer."""

    def __init__(self, status: int, body: Any) -> None:
        message = body.get("error", {}).get("message") if isinstance(body, dict) else body
        super().__init__(f"sandbox control call failed ({status}): {message}")
        self.status = status
        self.body = body


class SandboxControl:
    """Thin client of the ``/_sandbox/`` control API."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, payload: dict | None = None, **query: Any) -> Any:
        url = f"{self.base_url}/_sandbox/{path}"
        query = {k: v for k, v in query.items() if v is not None}
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(
            url, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with _NO_PROXY.open(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            exc.close()
            try:
                body: Any = json.loads(raw)
            except ValueError:
                body = raw.decode(errors="replace")
            raise SandboxControlError(exc.code, body) from None

    # -- lifecycle ------------------------------------------------------------

    def health(self) -> dict:
        return self._call("GET", "health")

    def wait_until_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.health()
                return
            except (OSError, SandboxControlError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def reset(self) -> None:
        self._call("POST", "reset", {})

    def forget_idempotency_keys(self) -> dict:
        """Forget every idempotency key, as Stripe does 24 hours after a key's first use."""
        return self._call("POST", "idempotency/forget", {})

    # -- faults -------------------------------------------------------------

    def set_faults(self, operation: str, **knobs: float | None) -> dict:
        """Replace the random-fault knobs of ``operation`` (or ``"*"``); no knobs clears them."""
        return self._call("POST", "faults", {"operation": operation, **knobs})

    def clear_faults(self, operation: str = "*") -> dict:
        return self.set_faults(operation)

    def faults(self) -> dict:
        return self._call("GET", "faults")

    def script(self, operation: str, responses: list[dict], *, replace: bool = False) -> int:
        """Queue scripted responses; returns how many are queued for ``operation``."""
        payload = {"operation": operation, "responses": responses, "replace": replace}
        return self._call("POST", "script", payload)["queued"]

    def set_rate_limit(
        self,
        per_second: float | None,
        burst: float | None = None,
        *,
        per_operation: float | None = None,
        operations: dict[str, float] | None = None,
    ) -> dict:
        """Stripe's limits: ``per_second`` in all (a token bucket holding ``burst``) and
        ``per_operation`` on each named operation (``operations`` overriding some); None: no
        such limit. Live Stripe is ``set_rate_limit(100, per_operation=25)``."""
        payload = {
            "per_second": per_second,
            "burst": burst,
            "per_operation": per_operation,
            "operations": operations,
        }
        return self._call("POST", "rate_limit", payload)

    def config(self) -> dict:
        """The sandbox's configuration now: ``new_refund_status``, ``seed``, ``webhook_url``,
        ``connect_webhook_url``, ``settlement`` and ``state_file``."""
        return self._call("GET", "config")

    def configure(self, **settings: Any) -> dict:
        """E.g. ``configure(new_refund_status="pending")`` or ``configure(seed=7)``."""
        return self._call("POST", "config", settings)

    # -- inspection -----------------------------------------------------------

    def calls(self, operation: str | None = None, *, outcome: str | None = None) -> list[dict]:
        return self._call("GET", "calls", operation=operation, outcome=outcome)["calls"]

    def state(self) -> dict:
        return self._call("GET", "state")

    def ledger(self) -> dict:
        return self._call("GET", "ledger")

    def events(self, type: str | None = None) -> list[dict]:
        events = self.state()["events"]
        return [e for e in events if type is None or e["type"] == type]

    def deliveries(self) -> list[dict]:
        return self.state()["deliveries"]

    def wait_for_deliveries(self, count: int, *, timeout: float = 5.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            deliveries = self.deliveries()
            if len(deliveries) >= count or time.monotonic() > deadline:
                return deliveries
            time.sleep(0.02)

    # -- webhooks and out-of-band changes -----------------------------------

    def configure_webhooks(self, url: str | None, secret: str | None) -> dict:
        return self._call("POST", "webhooks", {"url": url, "secret": secret})

    def send_event(
        self, type: str, obj: dict, *, event_id: str | None = None, account: str | None = None
    ) -> dict:
        """Deliver an arbitrary signed event now; returns ``{"event", "status", "error"}``.

        With ``account`` it is a Connect event, delivered to the Connect endpoint.
        """
        payload = {"type": type, "object": obj, "id": event_id, "account": account}
        return self._call("POST", "events", payload)

    def resend_event(self, event_id: str) -> dict:
        """Deliver an event the sandbox already sent again, same id and payload."""
        return self._call("POST", "events", {"event_id": event_id})

    def reverse_out_of_band(
        self, transfer_id: str, amount: int | None = None, *, metadata: dict | None = None
    ) -> dict:
        payload = {"amount": amount, "metadata": metadata or {}}
        return self._call("POST", f"transfers/{transfer_id}/reverse", payload)

    def set_refund_status(
        self, refund_id: str, status: str, *, failure_reason: str | None = None
    ) -> dict:
        payload = {"status": status, "failure_reason": failure_reason}
        return self._call("POST", f"refunds/{refund_id}/status", payload)

    def fail_refund(self, refund_id: str, failure_reason: str = "declined") -> dict:
        """A succeeded (or pending) refund fails; returns the refund."""
        payload = {"failure_reason": failure_reason}
        return self._call("POST", f"refunds/{refund_id}/fail", payload)

    # -- settlement -----------------------------------------------------------

    def settlement(self) -> dict:
        return self._call("GET", "settlement")

    def set_settlement(
        self,
        currency: str | None = None,
        rates: dict[str, float | None] | None = None,
        *,
        replace_rates: bool = False,
        fee_percent: float | None = None,
        fee_fixed: int | None = None,
        dispute_fee: int | None = None,
    ) -> dict:
        """Settlement currency and rates (1 unit of a currency -> settlement currency)."""
        payload = {
            "currency": currency,
            "rates": rates,
            "replace_rates": replace_rates,
            "fee_percent": fee_percent,
            "fee_fixed": fee_fixed,
            "dispute_fee": dispute_fee,
        }
        return self._call("POST", "settlement", payload)

    # -- disputes -------------------------------------------------------------

    def open_dispute(
        self,
        charge_id: str,
        *,
        amount: int | None = None,
        reason: str | None = None,
        due_by: int | None = None,
        inquiry: bool = False,
        metadata: dict | None = None,
    ) -> dict:
        """A chargeback (funds withdrawn at once) or, with ``inquiry``, an inquiry."""
        payload = {
            "charge": charge_id,
            "amount": amount,
            "reason": reason,
            "due_by": due_by,
            "inquiry": inquiry,
            "metadata": metadata or {},
        }
        return self._call("POST", "disputes", payload)

    def advance_dispute(self, dispute_id: str, status: str) -> dict:
        return self._call("POST", f"disputes/{dispute_id}/advance", {"status": status})

    # -- connected accounts ---------------------------------------------------

    def set_transfers_capability(
        self,
        account_id: str,
        status: str,
        *,
        disabled_reason: str | None = None,
        requirements: list[str] | None = None,
    ) -> dict:
        """``active``, ``inactive`` or ``pending``; returns the account."""
        payload = {
            "status": status,
            "disabled_reason": disabled_reason,
            "requirements": requirements,
        }
        return self._call("POST", f"accounts/{account_id}/capabilities/transfers", payload)

    def deauthorize_account(self, account_id: str) -> dict:
        """The account disconnects the platform; returns ``{"account", "application"}``."""
        return self._call("POST", f"accounts/{account_id}/deauthorize", {})

    def simulate_payout(
        self,
        account_id: str,
        amount: int | None = None,
        currency: str | None = None,
        *,
        failure_code: str | None = None,
    ) -> dict:
        """Pay ``amount`` out of the account's available balance (all of it, as an automatic
        payout, when ``None``); with ``failure_code`` the bank refuses it. Returns the payout."""
        payload = {"amount": amount, "currency": currency, "failure_code": failure_code}
        return self._call("POST", f"accounts/{account_id}/payout", payload)

    def adjust_account(self, account_id: str, amount: int, currency: str | None = None) -> dict:
        """Money on the account that no transfer explains; returns its balance transaction."""
        payload = {"amount": amount, "currency": currency}
        return self._call("POST", f"accounts/{account_id}/adjustment", payload)

    def account_balance(self, account_id: str) -> dict:
        return self._call("GET", f"accounts/{account_id}/balance")

    def object(self, object_id: str) -> dict:
        """Any object the sandbox holds, by its id (``SandboxControlError`` 404 when none)."""
        return self._call("GET", f"objects/{urllib.parse.quote(object_id)}")

    def configure_connect_webhooks(self, url: str | None, secret: str | None) -> dict:
        """The Connect endpoint: connected accounts' events, signed with ``secret``."""
        return self._call("POST", "webhooks/connect", {"url": url, "secret": secret})


class RunningSandbox:
    """A sandbox serving on a daemon thread of this process; usable as a context manager."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | None = 0,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        webhook_workers: int = 4,
        log_stream: TextIO | None = None,
        connect_webhook_url: str | None = None,
        connect_webhook_secret: str | None = None,
    ) -> None:
        self.sandbox = Sandbox(
            seed=seed,
            webhook_url=webhook_url,
            webhook_secret=webhook_secret,
            webhook_workers=webhook_workers,
            connect_webhook_url=connect_webhook_url,
            connect_webhook_secret=connect_webhook_secret,
        )
        self.server = make_server(self.sandbox, host, port, log_stream=log_stream)
        self.url = self.server.url
        self.control = SandboxControl(self.url)
        self._thread = threading.Thread(
            target=self.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="stripe-sandbox",
            daemon=True,
        )
        self._thread.start()
        self._stopped = False

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.sandbox.close()
        self.server.shutdown()
        self.server.close_connections()
        self.server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> RunningSandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class SandboxProcess:
    """``python -m stripe_sandbox`` in a child process, for tests with several processes.

    With ``port=0`` the child picks a free port and reports it on its first
    stdout line. Request logs go to ``log_path`` (a temporary file by default)
    so a full pipe can never stall the server.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | None = 0,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        log_path: str | os.PathLike[str] | None = None,
        extra_args: tuple[str, ...] = (),
        startup_timeout: float = 15.0,
        state_file: str | os.PathLike[str] | None = None,
    ) -> None:
        args = [sys.executable, "-m", "stripe_sandbox", "--host", host, "--port", str(port)]
        if seed is not None:
            args += ["--seed", str(seed)]
        if webhook_url:
            args += ["--webhook-url", webhook_url, "--webhook-secret", webhook_secret or ""]
        if state_file is not None:
            args += ["--state-file", str(state_file)]
        args += list(extra_args)
        if log_path is None:
            handle, log_path = tempfile.mkstemp(prefix="stripe-sandbox-", suffix=".log")
            os.close(handle)
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the child
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=self._log, env=env, text=True
        )
        try:
            self.url = self._read_url(startup_timeout)
        except BaseException:
            self.stop()
            raise
        self.control = SandboxControl(self.url)
        self.control.wait_until_ready(startup_timeout)

    def _read_url(self, timeout: float) -> str:
        lines: queue.Queue[str] = queue.Queue()
        assert self.process.stdout is not None
        stdout = self.process.stdout
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"stripe_sandbox did not start; see {self.log_path}") from None
        if "http://" not in line:
            raise RuntimeError(f"stripe_sandbox failed to start ({line!r}); see {self.log_path}")
        return line[line.index("http://") :].strip()

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()
        return self.process.returncode

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
