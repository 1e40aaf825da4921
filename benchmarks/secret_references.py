"""Cost of resolving one secret reference at call time, with the confinement checks
(DESIGN §6): ``{$file}`` (real path, allowed folders, Flowker's own files by path and
inode, the opened descriptor checked again) and ``{$env}`` (the allow-list globs).

    .venv/bin/python benchmarks/secret_references.py [--resolutions 20000]

Prints microseconds per resolution (median of 5 rounds) and the load average. Every
executor call resolves its auth config's references once, before the HTTP request.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time


def measure(resolver, config: dict, count: int) -> float:
    rounds = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(count):
            resolver.resolve(config)
        rounds.append((time.perf_counter() - started) / count * 1e6)
    return statistics.median(rounds)


def main() -> None:
    from flowker.security.redaction import Redactor
    from flowker.security.secrets import SecretResolver
    from flowker.settings import Settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, default=20000, help="resolutions per round")
    count = parser.parse_args().resolutions
    with tempfile.TemporaryDirectory() as root:
        secrets_dir = os.path.join(root, "secrets")
        os.mkdir(secrets_dir)
        with open(os.path.join(secrets_dir, "key"), "w") as handle:
            handle.write("partner-key-123456\n")
        settings = Settings.from_mapping(
            {
                "database_url": f"sqlite:///{root}/flowker.db",
                "secret_file_dirs": secrets_dir,
                "secret_env_allow": "PARTNER_*,LEDGER_*",
            }
        )
        settings = settings.replace(
            config_file=f"{root}/flowker.yaml", tls_keyfile=f"{root}/tls.key", tls_certfile=f"{root}/tls.crt"
        )
        resolver = SecretResolver.from_settings(
            settings, environ={"PARTNER_TOKEN": "partner-token-123456"}, register=Redactor().add_secret
        )
        file_us = measure(resolver, {"key": {"$file": os.path.join(secrets_dir, "key")}}, count)
        env_us = measure(resolver, {"key": {"$env": "PARTNER_TOKEN"}}, count)
    print(f"$file reference: {file_us:.1f} us per resolution")
    print(f"$env reference:  {env_us:.1f} us per resolution")
    print(f"load average: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")


if __name__ == "__main__":
    main()
