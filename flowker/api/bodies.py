"""Reading request bodies: capped, then parsed as JSON or (for specs) YAML.

The body is read at most ``max_body_bytes + 1`` bytes at a time, so a request without
``Content-Length`` (chunked) is refused with 413 as soon as it passes the limit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import falcon

from flowker.api.errors import BODY_TOO_LARGE, bad_body, too_large, unsupported_media_type

YAML_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
JSON_TYPES = frozenset({"application/json", "text/json"})
READ_CHUNK = 65536
# Objects and arrays inside one another: run inputs and webhook bodies may nest this deep.
MAX_JSON_DEPTH = 64


def read_body(req: falcon.Request) -> bytes:
    limit = getattr(req.context, "max_body_bytes", 1048576)
    code = getattr(req.context, "body_too_large_code", BODY_TOO_LARGE)
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
    return bool(req.env.get("wsgi.input_terminated")) or "chunked" in (req.get_header("Transfer-Encoding") or "").lower()


def media_type(req: falcon.Request) -> str:
    return (req.content_type or "").split(";", 1)[0].strip().lower()


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes, *, empty=None, what: str = "request body", max_depth: int = MAX_JSON_DEPTH):
    if not raw.strip():
        if empty is not None:
            return empty
        raise bad_body(f"the {what} is empty: send a JSON object")
    try:
        value = json.loads(raw.decode("utf-8-sig"), parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise bad_body(f"the {what} is not valid UTF-8") from None
    except ValueError as exc:
        # json's messages give the position only, never echo content.
        raise bad_body(f"the {what} is not valid JSON: {str(exc)[:200]}") from None
    except RecursionError:
        raise bad_body(f"the {what} is nested too deeply") from None
    refuse_hostile_values(value, max_depth, what)
    return value


def refuse_hostile_values(value, max_depth: int, what: str = "request body") -> None:
    """400 for nesting deeper than ``max_depth`` or a NUL character in any key or string.

    json.loads accepts nesting up to the interpreter's recursion limit, but everything
    after it (schema validation, redaction, canonical JSON) recurses too and failed with a
    500 well before that; PostgreSQL refuses NUL in text (another 500). Iterative, so any
    depth is safe to look at.
    """
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise bad_body(f"the {what} contains a NUL character (\\u0000)")
            continue
        if isinstance(item, dict):
            if any(isinstance(key, str) and "\x00" in key for key in item):
                raise bad_body(f"the {what} contains a NUL character (\\u0000)")
            children: Iterable = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            raise bad_body(f"the {what} is nested more than {max_depth} levels deep")
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list, str)))


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
        from flowker.spec.loader import load_spec_text

        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise bad_body("the request body is not valid UTF-8") from None
        document = load_spec_text(text, "<request>", expected_kind=kind, from_file=False)
        refuse_hostile_values(document.body, MAX_JSON_DEPTH)  # YAML "\0" escapes are NUL too
        return document
    if content_type and content_type not in JSON_TYPES and not content_type.endswith("+json"):
        raise unsupported_media_type(content_type)
    # Specs nest no deeper than YAML spec files may (flowker.spec.safe_yaml.MAX_DEPTH).
    from flowker.spec.safe_yaml import MAX_DEPTH

    value = parse_json(raw, max_depth=MAX_DEPTH)
    if not isinstance(value, dict):
        raise bad_body("the request body must be a JSON object")
    return value
