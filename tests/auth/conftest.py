"""Real identity providers for the auth tests, started on 127.0.0.1 on free ports.

* ``oidc_provider`` / ``oidc_provider_short``: the npm package ``oidc-provider``
  (OpenID-certified) with a ``client_secret_basic`` and a ``client_secret_post`` client,
  the client-credentials grant, introspection, revocation and resource indicators;
  tokens live 1 hour / 2 seconds.
* ``people_provider``: ``oidc-provider`` again, signing people's JWT access tokens for
  Flowker's audience with a ``roles`` claim (password grant; people_provider.mjs), for
  the bearer sign-in tests; its stats count JWKS downloads too.
* ``user_provider`` / ``user_provider_short``: ``oauth2-mock-server`` (password and
  refresh-token grants), made strict (client secret, user password, single-use refresh
  tokens) by the launcher; 1 hour / 2 seconds.

Both speak HTTPS with a certificate for 127.0.0.1 signed by a throwaway CA made here;
Flowker trusts it through the session ``AuthContext.new_session`` returns (the real
SSRF-guarded session with ``verify`` set to that CA). Each launcher prints its issuer,
counts token requests (``GET /__stats``), and exits when its stdin closes; the fixture
kills it at teardown in any case. ``npm ci`` runs first when node_modules is missing.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
import selectors
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from flowker.auth.base import AuthContext
from flowker.auth.token_cache import TokenCache
from flowker.security.redaction import Redactor
from flowker.settings import Settings

SERVERS_DIR = Path(__file__).resolve().parents[1] / "servers"
START_TIMEOUT_SECONDS = 30.0
NPM_TIMEOUT_SECONDS = 300


# --------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class TLSFiles:
    ca: str
    cert: str
    key: str


def _make_tls_files(folder: Path) -> TLSFiles:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Flowker test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = TLSFiles(ca=str(folder / "ca.pem"), cert=str(folder / "cert.pem"), key=str(folder / "key.pem"))
    Path(paths.ca).write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    Path(paths.cert).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    Path(paths.key).write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> TLSFiles:
    return _make_tls_files(tmp_path_factory.mktemp("tls"))


# --------------------------------------------------------------------------- Node launchers


@pytest.fixture(scope="session")
def node_servers() -> Path:
    """tests/servers with its npm packages installed (``npm ci`` when missing)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("Node.js 20+ and npm are needed for the OIDC provider tests (node/npm not on PATH)")
    if (
        not (SERVERS_DIR / "node_modules" / "oidc-provider").is_dir()
        or not (SERVERS_DIR / "node_modules" / "oauth2-mock-server").is_dir()
    ):
        result = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=SERVERS_DIR,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT_SECONDS,
        )
        if result.returncode != 0:
            pytest.fail(f"npm ci in {SERVERS_DIR} failed:\n{result.stderr[-2000:]}")
    return SERVERS_DIR


@dataclass
class NodeProvider:
    """One provider process: its issuer, the CA to trust it with, its request counters."""

    script: str
    config: dict
    workdir: Path
    ca: str
    issuer: str = ""
    process: subprocess.Popen | None = None
    secrets: dict = field(default_factory=dict)

    def start(self) -> "NodeProvider":
        name = Path(self.script).stem + "-" + secrets.token_hex(4)
        config_path = self.workdir / f"{name}.json"
        config_path.write_text(json.dumps(self.config))
        self._stderr_path = self.workdir / f"{name}.stderr"
        with open(self._stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                ["node", str(SERVERS_DIR / self.script), str(config_path)],
                cwd=SERVERS_DIR,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env={**os.environ, "NODE_ENV": "test"},
            )
        try:
            self.issuer = json.loads(self._first_line())["issuer"]
            self._wait_for_discovery()
        except BaseException:
            self.stop()
            raise
        return self

    def _first_line(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        buffer = b""
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            while b"\n" not in buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.process.poll() is not None:
                    raise RuntimeError(f"{self.script} did not start: {self._stderr()}")
                if selector.select(timeout=min(remaining, 0.5)):
                    chunk = os.read(self.process.stdout.fileno(), 4096)
                    if not chunk:
                        raise RuntimeError(f"{self.script} exited: {self._stderr()}")
                    buffer += chunk
        return buffer.split(b"\n", 1)[0].decode()

    def _wait_for_discovery(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            try:
                response = requests.get(self.issuer + "/.well-known/openid-configuration", verify=self.ca, timeout=2)
                if response.status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.script} never served discovery: {self._stderr()}")
            time.sleep(0.1)

    def _stderr(self) -> str:
        try:
            return self._stderr_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no stderr)"

    def stats(self) -> dict:
        return requests.get(self.issuer + "/__stats", verify=self.ca, timeout=5).json()

    def token_requests(self) -> int:
        return self.stats()["token"]

    def reset(self) -> None:
        requests.post(self.issuer + "/__reset", verify=self.ca, timeout=5).raise_for_status()

    def stop(self) -> None:
        if self.process is None:
            return
        try:
            self.process.stdin.close()  # the launcher exits when its stdin closes
            self.process.wait(timeout=5)
        except (subprocess.TimeoutExpired, OSError):
            self.process.kill()
            self.process.wait(timeout=5)
        finally:
            self.process.stdout.close()
            self.process = None


def _oidc_provider(node_servers, tls_files, tmp_path_factory, ttl: int):
    client_secrets = {"cc-basic": "basic-" + secrets.token_urlsafe(24), "cc-post": "post-" + secrets.token_urlsafe(24)}
    config = {
        "certFile": tls_files.cert,
        "keyFile": tls_files.key,
        "ttlSeconds": ttl,
        "clients": [
            {
                "client_id": "cc-basic",
                "client_secret": client_secrets["cc-basic"],
                "token_endpoint_auth_method": "client_secret_basic",
                "scope": "read write",
            },
            {
                "client_id": "cc-post",
                "client_secret": client_secrets["cc-post"],
                "token_endpoint_auth_method": "client_secret_post",
                "scope": "read write",
            },
        ],
        "resources": {"https://api.example.test": "read write"},
    }
    provider = NodeProvider(
        "oidc_provider.mjs", config, tmp_path_factory.mktemp("oidc"), tls_files.ca, secrets=client_secrets
    )
    return provider.start()


def _user_provider(node_servers, tls_files, tmp_path_factory, ttl: int):
    values = {"flowker-web": "web-" + secrets.token_urlsafe(24), "alice": "pw-" + secrets.token_urlsafe(18)}
    config = {
        "certFile": tls_files.cert,
        "keyFile": tls_files.key,
        "ttlSeconds": ttl,
        "clients": {"flowker-web": values["flowker-web"], "public-cli": ""},
        "users": {"alice": values["alice"]},
    }
    provider = NodeProvider("user_provider.mjs", config, tmp_path_factory.mktemp("users"), tls_files.ca, secrets=values)
    return provider.start()


PEOPLE_AUDIENCE = "https://flowker.example.test"
PEOPLE = {
    "ada": ["flowker-admins"],
    "olu": ["ops", "unrelated"],
    "vic": "flowker-viewers",  # a single string, as some providers send it
    "nia": ["marketing"],  # no claim value the role map knows
}


@dataclass
class PeopleProvider(NodeProvider):
    """people_provider.mjs: its audience, people's tokens, sessions trusting its CA."""

    audience: str = PEOPLE_AUDIENCE

    def token(self, username: str) -> str:
        """A JWT access token the provider signs for ``username`` (password grant)."""
        response = requests.post(
            self.issuer + "/token",
            data={"grant_type": "password", "username": username, "password": self.secrets[username]},
            auth=("flowker-console", self.secrets["client"]),
            verify=self.ca,
            timeout=10,
        )
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def sessions(self, settings: Settings | None = None):
        """Flowker's guarded session factory (``settings``' SSRF rules) trusting the test CA."""
        return guarded_session_factory(self.ca, settings)


def _people_provider(node_servers, tls_files, tmp_path_factory):
    values = {"client": "people-" + secrets.token_urlsafe(24)}
    values.update({name: "pw-" + secrets.token_urlsafe(18) for name in PEOPLE})
    config = {
        "certFile": tls_files.cert,
        "keyFile": tls_files.key,
        "ttlSeconds": 3600,
        "audience": PEOPLE_AUDIENCE,
        "clientId": "flowker-console",
        "clientSecret": values["client"],
        "users": {name: {"password": values[name], "roles": roles} for name, roles in PEOPLE.items()},
    }
    provider = PeopleProvider(
        "people_provider.mjs", config, tmp_path_factory.mktemp("people"), tls_files.ca, secrets=values
    )
    return provider.start()


@pytest.fixture(scope="session")
def people_provider_session(node_servers, tls_files, tmp_path_factory):
    provider = _people_provider(node_servers, tls_files, tmp_path_factory)
    yield provider
    provider.stop()


@pytest.fixture
def people_provider(people_provider_session):
    people_provider_session.reset()
    return people_provider_session


@pytest.fixture(scope="session")
def oidc_provider_session(node_servers, tls_files, tmp_path_factory):
    provider = _oidc_provider(node_servers, tls_files, tmp_path_factory, ttl=3600)
    yield provider
    provider.stop()


@pytest.fixture(scope="session")
def oidc_provider_short_session(node_servers, tls_files, tmp_path_factory):
    provider = _oidc_provider(node_servers, tls_files, tmp_path_factory, ttl=2)
    yield provider
    provider.stop()


@pytest.fixture(scope="session")
def user_provider_session(node_servers, tls_files, tmp_path_factory):
    provider = _user_provider(node_servers, tls_files, tmp_path_factory, ttl=3600)
    yield provider
    provider.stop()


@pytest.fixture(scope="session")
def user_provider_short_session(node_servers, tls_files, tmp_path_factory):
    provider = _user_provider(node_servers, tls_files, tmp_path_factory, ttl=2)
    yield provider
    provider.stop()


# Per test: the same process, counters zeroed.
@pytest.fixture
def oidc_provider(oidc_provider_session):
    oidc_provider_session.reset()
    return oidc_provider_session


@pytest.fixture
def oidc_provider_short(oidc_provider_short_session):
    oidc_provider_short_session.reset()
    return oidc_provider_short_session


@pytest.fixture
def user_provider(user_provider_session):
    user_provider_session.reset()
    return user_provider_session


@pytest.fixture
def user_provider_short(user_provider_short_session):
    user_provider_short_session.reset()
    return user_provider_short_session


# --------------------------------------------------------------------------- Flowker side


@pytest.fixture
def redactor() -> Redactor:
    return Redactor()


@pytest.fixture
def token_cache() -> TokenCache:
    return TokenCache()


def guarded_session_factory(ca: str, settings: Settings | None = None):
    """Flowker's real SSRF-guarded session, trusting the test CA."""
    from flowker.security.http import new_session
    from flowker.security.ssrf import AddressPolicy

    policy = AddressPolicy.from_settings(settings or Settings())

    def factory() -> requests.Session:
        session = new_session(policy, max_redirects=0)
        session.verify = ca
        return session

    return factory


@pytest.fixture
def session_factory(tls_files):
    """``new_session`` for an AuthContext: the guarded session trusting the test CA."""
    return guarded_session_factory(tls_files.ca)


@pytest.fixture
def auth_context(session_factory, token_cache, redactor) -> AuthContext:
    return AuthContext(
        settings=Settings(),
        new_session=session_factory,
        register_secret=redactor.add_secret,
        token_cache=token_cache,
        redactor=redactor,
    )


@pytest.fixture
def plain_session():
    session = requests.Session()
    session.trust_env = False
    yield session
    session.close()
