"""``POST /v1/executors/{id}/test``: probe an executor through the SSRF guard.

Three stages, like the Flowker API's connectivity test, each a ``GET`` with a 10 s
timeout and a 1 MiB response cap on a hardened, address-pinned session:

* ``connectivity`` - the base URL without credentials answers below 500;
* ``authentication`` - with credentials, the base URL does not answer 401/403/5xx
  (skipped for an auth type that sends no credentials, such as ``none``);
* ``end_to_end`` - with credentials, the first GET endpoint without path parameters
  (else the base URL) answers 2xx.

After a failure the remaining stages are skipped. ``overallStatus`` ignores skipped
stages: ``passed`` (no failure), ``failed`` (nothing passed), else ``partial``. Messages
name hosts and status codes, never secrets (they pass through a Redactor that knows
every secret resolved for the probe).
"""

from __future__ import annotations

import datetime as _dt
import re
import time
from dataclasses import dataclass, field

import requests

from flowker.api.views import iso
from flowker.errors import FlowkerError, HostResolutionError, SSRFBlockedError

PROBE_TIMEOUT_SECONDS = 10.0
PROBE_MAX_RESPONSE_BYTES = 1024 * 1024
STAGES = ("connectivity", "authentication", "end_to_end")
SUMMARIES = {
    "passed": "All tests passed - executor connectivity verified",
    "failed": "All tests failed - executor configuration needs review",
    "partial": "Some tests failed - review failed stages before use",
}


@dataclass
class Stage:
    name: str
    status: str = "skipped"
    duration_ms: float = 0.0
    message: str | None = None
    details: dict = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict:
        item = {"name": self.name, "status": self.status, "durationMs": round(self.duration_ms, 2)}
        if self.message:
            item["message"] = self.message
        if self.details:
            item["details"] = self.details
        if self.error:
            item["error"] = self.error
        return item


def overall_status(stages: list[Stage]) -> str:
    ran = [stage for stage in stages if stage.status != "skipped"]
    failed = sum(stage.status == "failed" for stage in ran)
    if failed == 0:
        return "passed"
    if failed == len(ran):
        return "failed"
    return "partial"


class ExecutorProbe:
    def __init__(self, settings, registry, secret_box, address_policy, redactor):
        from flowker.auth.resolution import AuthResolution

        self.settings = settings
        self.registry = registry
        self.secret_box = secret_box
        self.policy = address_policy
        # The process redactor: secrets resolved for a probe are then also scrubbed from
        # every log line (urllib3 logs the URL, query-string keys included).
        self.redactor = redactor
        # The runner's way to credentials: every secret registered before any request.
        self.auth_resolution = AuthResolution(settings, registry, redactor, secret_box=lambda: secret_box)

    def run(self, executor, spec: dict) -> dict:
        """Probe ``executor`` (a row) with its stored ``spec`` (literal secrets encrypted:
        they are decrypted and registered with the redactor on the way to the auth)."""
        from flowker.security.http import new_session
        from flowker.security.redaction import redact_url

        base_url = spec["baseUrl"]
        # Refused addresses are an error of the request (422 FLK-0341), not a failed stage:
        # checked as at call time, so a name resolving to a refused address is refused too.
        try:
            self.policy.check_url(base_url)
        except HostResolutionError:
            pass  # not a refusal: the connectivity stage reports it
        redactor = self.redactor
        started_at = _dt.datetime.now(_dt.timezone.utc)
        started = time.perf_counter()
        stages = [Stage(name) for name in STAGES]
        session = new_session(self.policy, max_response_bytes=PROBE_MAX_RESPONSE_BYTES)
        try:
            auth, auth_error = self._auth(spec, redactor)
            end_to_end_url = _end_to_end_url(base_url, spec.get("endpoints") or [])
            plan = [
                (stages[0], base_url, None, _connectivity_verdict),
                (stages[1], base_url, auth, _authentication_verdict),
                (stages[2], end_to_end_url, auth, _end_to_end_verdict),
            ]
            failed_stage = None
            for stage, url, stage_auth, verdict in plan:
                if failed_stage is not None:
                    stage.message = f"Skipped due to {failed_stage} failure"
                    continue
                if stage.name == "authentication" and auth is None and auth_error is None:
                    stage.message = "Skipped: the executor uses no authentication"
                    continue
                if stage.name != "connectivity" and auth_error is not None:
                    stage.status = "failed"
                    stage.message = "credentials could not be prepared"
                    stage.error = redactor.scrub_text(auth_error)
                else:
                    self._probe(session, stage, url, stage_auth, verdict, redactor, redact_url)
                if stage.status == "failed":
                    failed_stage = stage.name
        finally:
            session.close()
        status = overall_status(stages)
        return {
            "executorId": executor.id,
            "executorName": executor.name,
            "overallStatus": status,
            "durationMs": round((time.perf_counter() - started) * 1000, 2),
            "stages": [stage.to_dict() for stage in stages],
            "summary": SUMMARIES[status],
            "startedAt": iso(started_at),
            "completedAt": iso(_dt.datetime.now(_dt.timezone.utc)),
        }

    def _auth(self, spec: dict, redactor):
        """(requests auth or None for a type that sends no credentials, error text or None)."""
        from flowker.auth.base import AuthContext, AuthenticationSpec
        from flowker.security.http import new_session

        def context() -> AuthContext:
            return AuthContext(
                settings=self.settings,
                new_session=lambda: new_session(self.policy, max_response_bytes=PROBE_MAX_RESPONSE_BYTES),
                register_secret=redactor.add_secret,
                redactor=redactor,
            )

        try:
            auth_type, config = self.auth_resolution.resolve(AuthenticationSpec.from_spec(spec.get("authentication")))
            if not auth_type.sends_credentials:
                return None, None
            return self.auth_resolution.credentials(auth_type, config, context).auth, None
        except FlowkerError as exc:
            return None, exc.message
        except Exception as exc:  # noqa: BLE001 - a plugin's failure becomes a failed stage
            return None, f"{type(exc).__name__}: {exc}"

    def _probe(self, session, stage: Stage, url: str, auth, verdict, redactor, redact_url) -> None:
        from flowker.security.http import read_capped

        started = time.perf_counter()
        stage.details = {"url": redactor.scrub_text(redact_url(url))}
        try:
            response = session.get(url, auth=auth, timeout=PROBE_TIMEOUT_SECONDS, stream=True)
            try:
                read_capped(response, PROBE_MAX_RESPONSE_BYTES)
            except FlowkerError:
                pass  # a large body still answered; the status is what counts
            finally:
                response.close()
            stage.details["statusCode"] = response.status_code
            passed, message = verdict(response.status_code)
            stage.status = "passed" if passed else "failed"
            stage.message = message
        except SSRFBlockedError as exc:
            stage.status = "failed"
            stage.message = "address refused by the SSRF guard"
            stage.error = exc.message
        except FlowkerError as exc:
            stage.status = "failed"
            stage.message = "request failed"
            stage.error = redactor.scrub_text(exc.message)
        except requests.RequestException as exc:
            stage.status = "failed"
            stage.message = "request failed"
            stage.error = redactor.scrub_text(_describe(exc))
        finally:
            stage.duration_ms = (time.perf_counter() - started) * 1000


def _connectivity_verdict(status: int) -> tuple[bool, str]:
    if status < 500:
        return True, f"reachable (HTTP {status})"
    return False, f"server error (HTTP {status})"


def _authentication_verdict(status: int) -> tuple[bool, str]:
    if status in (401, 403):
        return False, f"credentials refused (HTTP {status})"
    if status >= 500:
        return False, f"server error (HTTP {status})"
    if 200 <= status < 300:
        return True, f"credentials accepted (HTTP {status})"
    return True, f"credentials not refused (HTTP {status})"


def _end_to_end_verdict(status: int) -> tuple[bool, str]:
    if 200 <= status < 300:
        return True, f"request succeeded (HTTP {status})"
    return False, f"request did not succeed (HTTP {status})"


def _end_to_end_url(base_url: str, endpoints: list) -> str:
    for endpoint in endpoints:
        if isinstance(endpoint, dict) and endpoint.get("method") == "GET" and "{" not in str(endpoint.get("path", "{")):
            return base_url.rstrip("/") + endpoint["path"]
    return base_url


def _describe(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return f"timed out after {PROBE_TIMEOUT_SECONDS:g} s"
    if isinstance(exc, requests.TooManyRedirects):
        return "too many redirects"
    if isinstance(exc, requests.ConnectionError):
        text = str(exc)
        # Keep the reason ("Connection refused"), drop internals such as object reprs.
        match = re.search(
            r"(Connection refused|Name or service not known|No route to host|timed out|reset by peer)", text
        )
        return f"connection failed: {match.group(1)}" if match else "connection failed"
    return type(exc).__name__
