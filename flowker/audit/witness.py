"""Witnesses: copies of the signed checkpoints kept outside the database.

A database insider can delete entries from the end together with the checkpoint rows
past the cut; what remains is a shorter chain that verifies. A witness holds every
checkpoint as it was signed, so verification can demand that the database still holds
each witnessed checkpoint and, at its sequence, an entry with the witnessed hash.

``FLOWKER_AUDIT_WITNESS`` names one:

* ``file://DIR``: an append-only, fsync'ed JSON Lines file ``DIR/checkpoints.jsonl``
  (put DIR on another volume, or a write-once mount);
* ``http://...`` / ``https://...``: a witness service such as ``flowker witness serve``
  (:mod:`flowker.audit.witness_server`), which countersigns what it accepts.

Both refuse a checkpoint that does not extend the last one they hold (its
``previousCheckpointHash`` must be the hash of that one, and its sequence higher); the
same checkpoint sent twice is accepted once and acknowledged twice.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import unquote, urlsplit

from flowker.audit import checkpoints as cp
from flowker.error_codes import ErrorCode
from flowker.errors import AuditChainError, ConfigurationError

LOG_FILE = "checkpoints.jsonl"
HTTP_TIMEOUT_SECONDS = 10.0


class WitnessUnavailable(AuditChainError):
    """The witness could not be reached or answered nonsense: the append is refused."""

    code = ErrorCode.AUDIT_WITNESS_UNAVAILABLE


class WitnessRefused(AuditChainError):
    """The witness holds a checkpoint this one does not extend."""

    code = ErrorCode.AUDIT_WITNESS_REFUSED


@dataclass(frozen=True)
class Witnessed:
    """One checkpoint as a witness holds it."""

    sequence: int
    head_hash: str
    checkpoint_hash: str
    record: dict  # the whole stored record (checkpoint fields, and a countersignature if any)


class Witness(Protocol):
    url: str

    def submit(self, checkpoint: cp.Checkpoint) -> dict: ...

    def witnessed(self) -> list[Witnessed]: ...


def extension_problem(last: dict | None, checkpoint: cp.Checkpoint) -> str | None:
    """None when ``checkpoint`` may follow ``last`` (a stored record, None when empty)."""
    fields = cp.statement_fields(checkpoint)
    if fields is None or fields["v"] < 2:
        return "the checkpoint is not a version-2 (chained) checkpoint statement"
    problem, _interval = cp.check(checkpoint, None)
    if problem:
        return problem
    if last is None:
        return None  # the first checkpoint a witness sees is trusted on first use
    if checkpoint.sequence <= last["sequence"]:
        return (
            f"the witness already holds a checkpoint at sequence {last['sequence']}; "
            f"one at sequence {checkpoint.sequence} does not extend it"
        )
    if checkpoint.previous_checkpoint_hash != last["checkpointHash"]:
        return (
            f"the checkpoint at sequence {checkpoint.sequence} does not name the witness's last checkpoint "
            f"(sequence {last['sequence']}) as its predecessor"
        )
    return None


def record_of(checkpoint: cp.Checkpoint) -> dict:
    return {**checkpoint.to_dict(), "checkpointHash": checkpoint.hash}


def witnessed_of(record: dict) -> Witnessed:
    return Witnessed(int(record["sequence"]), str(record["headHash"]), str(record["checkpointHash"]), record)


class WitnessLog:
    """An append-only JSON Lines file of accepted checkpoints, one writer at a time.

    Writers (threads and processes) serialize on an ``flock`` of the file; each record is
    written with one ``write`` to an ``O_APPEND`` descriptor and fsync'ed before the
    caller hears it was accepted.
    """

    def __init__(self, directory: str):
        self.directory = directory
        self.path = os.path.join(directory, LOG_FILE)

    def _open(self) -> int:
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            created = not os.path.exists(self.path)
            descriptor = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        except OSError as exc:
            raise WitnessUnavailable(f"cannot open the witness file {self.path}: {exc.strerror}") from None
        if created:
            _fsync_directory(self.directory)
        return descriptor

    def last(self) -> dict | None:
        """The newest record, read from the end of the file."""
        if not os.path.exists(self.path):
            return None
        with open(self.path, "rb") as handle:
            return _last_record(handle)

    def records(self) -> list[dict]:
        if not os.path.exists(self.path):
            return []
        with open(self.path, "r", encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.endswith("\n") and line.strip()]

    def append(self, checkpoint: cp.Checkpoint, countersign=None) -> dict:
        """Store ``checkpoint`` if it extends the last one (returns the stored record, or
        the one already stored for the same checkpoint); :class:`WitnessRefused` if not.
        ``countersign(record) -> dict`` adds the witness's signature before it is written."""
        descriptor = self._open()
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            with os.fdopen(os.dup(descriptor), "rb") as reader:
                last = _last_record(reader)
            if last is not None and last.get("checkpointHash") == checkpoint.hash:
                return last  # sent again (a retry): already held
            problem = extension_problem(last, checkpoint)
            if problem:
                raise WitnessRefused(f"the witness refused the checkpoint: {problem}")
            record = record_of(checkpoint)
            if countersign is not None:
                record = countersign(record)
            data = (json.dumps(record, separators=(",", ":"), sort_keys=True) + "\n").encode("utf-8")
            try:
                os.write(descriptor, data)
                os.fsync(descriptor)
            except OSError as exc:
                raise WitnessUnavailable(f"cannot write the witness file {self.path}: {exc.strerror}") from None
            return record
        finally:
            os.close(descriptor)  # releases the flock


def _last_record(handle) -> dict | None:
    handle.seek(0, os.SEEK_END)
    size = handle.tell()
    block = 4096
    while True:
        start = max(0, size - block)
        handle.seek(start)
        data = handle.read(size - start)
        lines = [line for line in data.split(b"\n")[:-1] if line.strip()]  # complete lines only
        if len(lines) > 1 or start == 0:
            break
        block *= 4
    if not lines:
        return None
    try:
        return json.loads(lines[-1])
    except ValueError:
        raise WitnessUnavailable("the witness file's last line is not valid JSON") from None


def _fsync_directory(directory: str) -> None:
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


class FileWitness:
    def __init__(self, url: str, directory: str):
        self.url = url
        self.log = WitnessLog(directory)

    def submit(self, checkpoint: cp.Checkpoint) -> dict:
        return self.log.append(checkpoint)

    def witnessed(self) -> list[Witnessed]:
        return [witnessed_of(record) for record in self.log.records()]


class HttpWitness:
    """A witness service: ``POST {url}/v1/checkpoints``, ``GET {url}/v1/checkpoints``."""

    def __init__(self, url: str):
        self._target = url.rstrip("/")
        parts = urlsplit(self._target)
        # What messages show: never credentials given in the URL.
        host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
        self.url = parts._replace(netloc=host).geturl() if parts.username or parts.password else self._target

    def _request(self, method: str, path: str, body: dict | None = None):
        import requests

        try:
            return requests.request(
                method, self._target + path, json=body, timeout=HTTP_TIMEOUT_SECONDS, allow_redirects=False
            )
        except requests.RequestException as exc:
            raise WitnessUnavailable(
                f"the audit witness {self.url} is unreachable ({type(exc).__name__}): nothing past this "
                "checkpoint can be acknowledged"
            ) from None

    def submit(self, checkpoint: cp.Checkpoint) -> dict:
        response = self._request("POST", "/v1/checkpoints", checkpoint.to_dict())
        if response.status_code == 409:
            raise WitnessRefused(
                f"the audit witness {self.url} refused the checkpoint at sequence "
                f"{checkpoint.sequence}: {_message(response)}"
            )
        if response.status_code not in (200, 201):
            raise WitnessUnavailable(
                f"the audit witness {self.url} answered {response.status_code}: {_message(response)}"
            )
        try:
            record = response.json()["checkpoint"]
        except (ValueError, KeyError, TypeError):
            raise WitnessUnavailable(f"the audit witness {self.url} answered without the checkpoint") from None
        if record.get("checkpointHash") != checkpoint.hash:
            raise WitnessUnavailable(f"the audit witness {self.url} acknowledged another checkpoint")
        return record

    def witnessed(self) -> list[Witnessed]:
        response = self._request("GET", "/v1/checkpoints")
        if response.status_code != 200:
            raise WitnessUnavailable(
                f"the audit witness {self.url} answered {response.status_code}: {_message(response)}"
            )
        try:
            return [witnessed_of(record) for record in response.json()["checkpoints"]]
        except (ValueError, KeyError, TypeError):
            raise WitnessUnavailable(f"the audit witness {self.url} sent a malformed list") from None


def _message(response) -> str:
    try:
        return str(response.json().get("message", ""))[:300]
    except (ValueError, AttributeError):
        return response.text[:300]


def open_witness(url: str | None) -> Witness | None:
    """The witness a ``FLOWKER_AUDIT_WITNESS`` value names (None for none)."""
    if not url:
        return None
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "file":
        directory = unquote(parts.path)
        if parts.netloc not in ("", "localhost") or not directory:
            raise ConfigurationError("FLOWKER_AUDIT_WITNESS file URLs look like file:///path/to/dir")
        return FileWitness(url, directory)
    if scheme in ("http", "https") and parts.hostname:
        return HttpWitness(url)
    raise ConfigurationError("FLOWKER_AUDIT_WITNESS must be file:///DIR or an http(s):// URL")
