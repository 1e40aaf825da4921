"""What the auth tests share (imported by name: this folder is on sys.path through its
conftest): Flowker's guarded session trusting the test CA, the people the people
provider knows, and how to get their tokens."""

from __future__ import annotations

import requests

from flowker.settings import Settings

PEOPLE_AUDIENCE = "https://flowker.example.test"
PEOPLE = {
    "ada": ["flowker-admins"],
    "olu": ["ops", "unrelated"],
    "vic": "flowker-viewers",  # a single string, as some providers send it
    "nia": ["marketing"],  # no claim value the role map knows
}


def people_token(provider, username: str) -> str:
    """A JWT access token the provider signs for ``username`` (password grant)."""
    response = requests.post(
        provider.issuer + "/token",
        data={"grant_type": "password", "username": username, "password": provider.secrets[username]},
        auth=("flowker-console", provider.secrets["client"]),
        verify=provider.ca,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


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
