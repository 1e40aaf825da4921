"""Reading request bodies: capped, then parsed as JSON or (for specs) YAML.

The body is read at most ``max_body_bytes + 1`` bytes at a time, so a request without
``Content-Length`` (chunked) is refused with 413 as soon as it passes the limit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable

import falcon

from flowker.api.errors import bad_body, too_large, unsupported_media_type
from flowker.error_codes import ErrorCode

YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
JSON_TYPES = frozenset({"application/json", "text/json"})
READ_CHUNK = 65536
# Objects and arrays inside one another: run inputs and webhook bodies may nest this deep.
MAX_JSON_DEPTH = 64


def read_body(req: falcon.Request) -> bytes:
    limit = getattr(req.context, "max_body_bytes", 1048576)
    code = getattr(req.context, "body_too_large_code", ErrorCode.BODY_TOO_LARGE)
    if req.content_length is None and _terminated_input(req):
        # Chunked: the server (gunicorn) de-chunks and ends the stream; read it capped.
        stream = req.stream
    else:
        stream = req.bounded_stream  # reads Content-Length bytes at most (none without it)
    chunks = []
    size = 0
    while True:
        chunk = stream.read(min(READ_CHUNK, limit + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise too_large(limit, code)
    return b"".join(chunks)


def _terminated_input(req: falcon.Request) -> bool:
    return (
        bool(req.env.get("wsgi.input_terminated")) or "chunked" in (req.get_header("Transfer-Encoding") or "").lower()
    )


def media_type(req: falcon.Request) -> str:
    return (req.content_type or "").split(";", 1)[0].strip().lower()


class _RefusedJson(ValueError):
    """Valid JSON syntax that Flowker refuses; the message says what and where, without values."""


def _refuse_constant(name: str):
    raise _RefusedJson(f"{name} is not a JSON number (NaN and Infinity are not allowed)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        # 1e400 parses as inf, which would be stored and answered as "Infinity" (not JSON).
        raise _RefusedJson(f"the number {text[:40]} is too large for a JSON number (a 64-bit float)")
    return value


def _object_without_duplicates(pairs: list) -> dict:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set = set()
        for key, _ in pairs:
            if key in seen:
                # json.dumps: ASCII-only, so a lone surrogate in the key cannot break the answer.
                raise _RefusedJson(f"the key {json.dumps(key[:50])} appears more than once in one object")
            seen.add(key)
    return value


def loads_strict(text: str):
    """json.loads that refuses NaN/Infinity, numbers too large for a float, duplicate keys.

    (Lone surrogates and nesting are checked afterwards by :func:`refuse_hostile_values`.)
    """
    return json.loads(
        text, parse_constant=_refuse_constant, parse_float=_finite_float, object_pairs_hook=_object_without_duplicates
    )


def parse_json(raw: bytes, *, empty=None, what: str = "request body", max_depth: int = MAX_JSON_DEPTH):
    if not raw.strip():
        if empty is not None:
            return empty
        raise bad_body(f"the {what} is empty: send a JSON object")
    try:
        value = loads_strict(raw.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise bad_body(f"the {what} is not valid UTF-8") from None
    except _RefusedJson as exc:
        raise bad_body(f"the {what} is refused: {exc}") from None
    except ValueError as exc:
        # json's messages give the position only, never echo content.
        raise bad_body(f"the {what} is not valid JSON: {str(exc)[:200]}") from None
    except RecursionError:
        raise bad_body(f"the {what} is nested too deeply") from None
    refuse_hostile_values(value, max_depth, what)
    return value


def _refused_text(text: str) -> str | None:
    """Why a string or key cannot be stored, or None. PostgreSQL refuses NUL in text; a lone
    surrogate (JSON's ``"\\ud800"``) is not Unicode text and cannot be encoded as UTF-8."""
    if "\x00" in text:
        return "a NUL character (\\u0000)"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "a lone surrogate (such as \\ud800): not a Unicode character"
    return None


def refuse_hostile_values(value, max_depth: int, what: str = "request body") -> None:
    """400 for nesting deeper than ``max_depth``, a NUL character or lone surrogate in any key
    or string, or a number that is not finite (YAML's ``.inf``/``.nan``).

    json.loads accepts nesting up to the interpreter's recursion limit, but everything
    after it (schema validation, redaction, canonical JSON) recurses too and failed with a
    500 well before that; PostgreSQL refuses NUL in text (another 500). Iterative, so any
    depth is safe to look at.
    """
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            problem = _refused_text(item)
            if problem:
                raise bad_body(f"the {what} contains {problem}")
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                raise bad_body(f"the {what} contains a number that is not finite (NaN or Infinity)")
            continue
        children: Iterable
        if isinstance(item, dict):
            for key in item:
                problem = _refused_text(key) if isinstance(key, str) else None
                if problem:
                    raise bad_body(f"the {what} contains {problem} in a key")
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            raise bad_body(f"the {what} is nested more than {max_depth} levels deep")
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list, str, float)))


def json_object(req: falcon.Request, *, empty: dict | None = None, what: str = "request body") -> dict:
    """The body as a JSON object (415 for other media types; 400 when not an object)."""
    kind = media_type(req)
    if kind and kind not in JSON_TYPES and not kind.endswith("+json"):
        raise unsupported_media_type(kind)
    value = parse_json(read_body(req), empty=empty, what=what)
    if not isinstance(value, dict):
        raise bad_body(f"the {what} must be a JSON object")
    return value


def spec_body(req: falcon.Request, kind: str):
    """A spec body (``Workflow``/``Executor``): a dict for JSON, a loaded document for YAML.

    YAML goes through the spec loader, so anchors, aliases, tags, duplicate keys and the
    256 KiB spec limit are refused exactly as for files (422 with line:column).
    """
    content_type = media_type(req)
    raw = read_body(req)
    if content_type in YAML_TYPES:
        from flowker.validation.loader import load_spec_text

        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise bad_body("the request body is not valid UTF-8") from None
        document = load_spec_text(text, "<request>", expected_kind=kind, from_file=False)
        refuse_hostile_values(document.body, MAX_JSON_DEPTH)  # YAML "\0" escapes are NUL too
        return document
    if content_type and content_type not in JSON_TYPES and not content_type.endswith("+json"):
        raise unsupported_media_type(content_type)
    # Specs nest no deeper than YAML spec files may (flowker.validation.safe_yaml.MAX_DEPTH).
    from flowker.validation.safe_yaml import MAX_DEPTH

    value = parse_json(raw, max_depth=MAX_DEPTH)
    if not isinstance(value, dict):
        raise bad_body("the request body must be a JSON object")
    return value
