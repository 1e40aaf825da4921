"""Cost of the two credentials that are checked by signature rather than looked up (DESIGN
§13), through the whole Falcon app in this process, on a SQLite file:

* a person's bearer JWT (RS256, checked against cached JWKS keys) against an API key from
  FLOWKER_API_KEYS, on ``GET /v1/workflows?limit=1``;
* a signed webhook call (Standard Webhooks signature, plus the replay ledger's insert)
  against the same webhook called with an API key, on ``POST /v1/webhooks/bench``, whose
  workflow is a single ``set_output`` action.

    .venv/bin/python benchmarks/signed_requests.py [--requests 1000]

The issuer is a local plain-HTTP server on 127.0.0.1 (admitted with the development switch
OAUTHLIB_INSECURE_TRANSPORT=1, which the script sets) serving a discovery document and a JWKS
(fetched once; every request after that is local work). Prints medians of 5 rounds in
microseconds per request and the ratios, then the checks alone: a bearer token's first
use, its later uses (remembered by hash) and one Standard Webhooks signature check.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

ENV_KEY = "bench-env-key-0123456789abcdef0123456789"
AUDIENCE = "https://flowker.bench"
WEBHOOK_SECRET = "whsec_" + "YmVuY2htYXJrLXNpZ25pbmctc2VjcmV0LTAxMjM0NQ=="
WORKFLOW = {
    "name": "bench",
    "nodes": [
        {
            "id": "start",
            "type": "trigger",
            "data": {
                "triggerType": "webhook",
                "path": "/bench",
                "method": "POST",
                "auth": {
                    "type": "signature",
                    "scheme": "standard-webhooks",
                    "secret": {"$env": "BENCH_SIGNING_SECRET"},
                },
            },
        },
        {"id": "out", "type": "action", "data": {"actionType": "set_output", "output": {"ok": True}}},
    ],
    "edges": [{"source": "start", "target": "out"}],
}


def rounds(call, count: int) -> float:
    results = []
    for _ in range(5):
        started = time.perf_counter()
        for index in range(count):
            call(index)
        results.append((time.perf_counter() - started) / count * 1e6)
    return statistics.median(results)


def issuer_server():
    """A discovery document and a JWKS on 127.0.0.1; the private key to sign with."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    from flowker.local_server import LocalHTTPServer

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    public.update(kid="bench-1", use="sig", alg="RS256")
    holder: dict = {}

    def handler(request):
        if request.path == "/.well-known/openid-configuration":
            return 200, {}, {"issuer": holder["url"], "jwks_uri": holder["url"] + "/jwks"}
        if request.path == "/jwks":
            return 200, {}, {"keys": [public]}
        return 404, {}, {}

    server = LocalHTTPServer(handler)
    return server, holder, key


def run(count: int) -> str:
    import falcon.testing
    import jwt

    from flowker.api.app import create_app
    from flowker.api.bearer import people_authenticator
    from flowker.security.webhook_signatures import SignatureCheck, sign_standard_webhooks, verify_delivery
    from flowker.settings import Settings
    from flowker.storage.database import bind_database, close_database
    from flowker.storage.migrations import upgrade

    os.environ["BENCH_SIGNING_SECRET"] = WEBHOOK_SECRET
    # The local issuer speaks plain HTTP: the development switch that admits it.
    os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"
    server, holder, key = issuer_server()
    with server, tempfile.TemporaryDirectory() as folder:
        holder["url"] = server.url.rstrip("/")
        database_url = f"sqlite:///{folder}/bench.db"
        database = bind_database(database_url)
        upgrade(database)
        settings = Settings.from_mapping(
            {
                "database_url": database_url,
                "api_keys": f"bench:{ENV_KEY}",
                "oidc_issuer": holder["url"],
                "oidc_audience": AUDIENCE,
                "oidc_role_map": "bench-admins=admin",
            }
        )
        app = create_app(settings)
        try:
            client = falcon.testing.TestClient(app)
            keyed = {"X-API-Key": ENV_KEY}
            created = client.simulate_post("/v1/workflows", json=WORKFLOW, headers=keyed).json["workflowId"]
            client.simulate_post(f"/v1/workflows/{created}/activate", headers=keyed)
            now = int(time.time())
            claims = {"iss": holder["url"], "aud": AUDIENCE, "sub": "ada", "exp": now + 3600, "roles": ["bench-admins"]}
            bearer = {
                "Authorization": "Bearer " + jwt.encode(claims, key, algorithm="RS256", headers={"kid": "bench-1"})
            }

            def read(headers):
                def call(_index):
                    response = client.simulate_get("/v1/workflows", params={"limit": "1"}, headers=headers)
                    if response.status_code != 200:
                        raise SystemExit(f"unexpected {response.status_code}: {response.text}")

                return call

            read(bearer)(0)  # the JWKS is fetched here, once
            read_key = rounds(read(keyed), count)
            read_bearer = rounds(read(bearer), count)

            body = b'{"amount": 1}'
            run_id = [0]

            def keyed_webhook(_index):
                response = client.simulate_post("/v1/webhooks/bench", body=body, headers=keyed)
                if response.status_code != 201:
                    raise SystemExit(f"unexpected {response.status_code}: {response.text}")

            def signed_webhook(_index):
                run_id[0] += 1
                message_id = f"msg_{run_id[0]}"
                stamp = int(time.time())
                headers = {
                    "webhook-id": message_id,
                    "webhook-timestamp": str(stamp),
                    "webhook-signature": sign_standard_webhooks(WEBHOOK_SECRET, message_id, stamp, body),
                }
                response = client.simulate_post("/v1/webhooks/bench", body=body, headers=headers)
                if response.status_code != 201:
                    raise SystemExit(f"unexpected {response.status_code}: {response.text}")

            hooks = max(count // 5, 20)
            webhook_key = rounds(keyed_webhook, hooks)
            webhook_signed = rounds(signed_webhook, hooks)

            # The checks alone: a token's first use (parse, RS256 signature, claims) and its
            # later uses (remembered by hash); one Standard Webhooks signature check.
            authenticator = people_authenticator(settings, app.state.address_policy)
            assert authenticator is not None
            tokens = [
                jwt.encode({**claims, "jti": str(index)}, key, algorithm="RS256", headers={"kid": "bench-1"})
                for index in range(5 * count + 1)
            ]
            authenticator(tokens[-1])  # fetch the keys
            fresh = iter(tokens)  # a token not seen before on every call, in every round
            first_use = rounds(lambda _index: authenticator.verifier.verify(next(fresh)), count)
            later_use = rounds(lambda index: authenticator.verifier.verify(tokens[0]), count)
            stamp = int(time.time())
            signed_headers = {
                "webhook-id": "msg_x",
                "webhook-timestamp": str(stamp),
                "webhook-signature": sign_standard_webhooks(WEBHOOK_SECRET, "msg_x", stamp, body),
            }
            check = SignatureCheck("standard-webhooks", WEBHOOK_SECRET)
            signature_check = rounds(lambda index: verify_delivery(check, signed_headers, body, time.time()), count)
        finally:
            app.state.close()
            close_database(database)
    return "\n".join(
        [
            f"GET /v1/workflows, API key:            {read_key:8.0f} µs",
            f"GET /v1/workflows, bearer JWT (RS256): {read_bearer:8.0f} µs  ({read_bearer / read_key:.2f}x)",
            f"POST webhook, API key:                 {webhook_key:8.0f} µs",
            f"POST webhook, signed + replay ledger:  {webhook_signed:8.0f} µs  ({webhook_signed / webhook_key:.2f}x)",
            f"bearer token check, first use:         {first_use:8.0f} µs",
            f"bearer token check, later uses:        {later_use:8.1f} µs",
            f"standard-webhooks signature check:     {signature_check:8.1f} µs",
            f"load average: {os.getloadavg()[0]:.1f}",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    print(run(parser.parse_args().requests))


if __name__ == "__main__":
    main()
