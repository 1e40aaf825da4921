"""Schemathesis hooks for the e2e run (loaded through SCHEMATHESIS_HOOKS).

``refusals_are_documented``: a request the document's schemas admit may still be refused
for a rule no JSON Schema can state (a cursor from another list, ``startTime`` after
``endTime``, a lifecycle state, a graph rule of a workflow). Each such 400/422 must carry
an FLK code the document lists for that operation and status (``x-flowker-codes``).
"""

from __future__ import annotations

import schemathesis


@schemathesis.check
def refusals_are_documented(ctx, response, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code not in (400, 422):
        return
    responses = case.operation.definition.raw.get("responses", {})
    documented = responses.get(str(response.status_code), {}).get("x-flowker-codes", [])
    try:
        code = response.json().get("code")
    except (ValueError, AttributeError):
        code = None
    if code not in documented:
        raise AssertionError(
            f"a schema-valid request got {response.status_code} {code}, which the document does not list "
            f"for this operation (x-flowker-codes: {documented or 'none'}): {response.text[:300]}"
        )
