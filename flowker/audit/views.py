"""Audit entries and checkpoints as the REST API and exports show them."""

from __future__ import annotations

import json

from flowker.audit import checkpoints as cp


def entry_to_dict(entry) -> dict:
    """The REST item for an entry (an AuditEntry or any object with its attributes).

    Built from the hashed document, so what the API shows is what the chain vouches for.
    """
    document = json.loads(entry.canonical)
    fields, payload = document["entry"], document["payload"]
    actor = fields["actor"]
    return {
        "eventId": fields["eventId"],
        "sequence": fields["sequence"],
        "eventType": fields["eventType"],
        "action": fields["action"],
        "result": fields["result"],
        "resourceId": fields["resourceId"],
        "resourceType": fields["resourceType"],
        "actor": {"type": actor["type"], "id": actor["id"], "ipAddress": actor["ipAddress"]},
        "context": payload["context"],
        "metadata": payload["metadata"],
        "timestamp": fields["timestamp"],
        "hash": entry.hash,
        "previousHash": entry.previous_hash,
    }


def checkpoint_to_dict(checkpoint) -> dict:
    return cp.Checkpoint(
        checkpoint.sequence,
        checkpoint.head_hash,
        checkpoint.key_id,
        checkpoint.created_at,
        checkpoint.statement,
        checkpoint.signature,
        checkpoint.previous_checkpoint_hash,
        checkpoint.entry_count,
    ).to_dict()
