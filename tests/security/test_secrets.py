"""Secret references, Fernet encryption at rest, masking, rotation and the rotate command."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet

from flowker.errors import ConfigurationError
from flowker.security.redaction import Redactor
from flowker.security.secret_policy import SecretReferencePolicy
from flowker.security.secrets import (
    SecretBox,
    SecretKeyError,
    SecretResolver,
    SecretUnavailableError,
    mask_fields,
    resolve_secrets,
)
from flowker.settings import Settings

resolve_secrets_in = resolve_secrets  # the module's function, where a test shadows the name

SECRET_PATHS = ["authentication.config.token", "authentication.config.client_secret", "authentication.config.password"]


def executor_config(**auth_config):
    return {
        "name": "fraud-check",
        "baseUrl": "https://tracer.example.test",
        "authentication": {"type": "oidc_user", "config": {"client_id": "app", **auth_config}},
    }


# --------------------------------------------------------------------------- references


def test_env_and_file_references_are_resolved_at_call_time(tmp_path):
    secret_file = tmp_path / "client-secret"
    secret_file.write_text("file-secret-value\n")
    policy = SecretReferencePolicy(file_dirs=(str(tmp_path),))
    config = executor_config(
        token={"$env": "TRACER_TOKEN"}, client_secret={"$file": str(secret_file)}, scopes=["openid"]
    )
    registered = []
    resolved = resolve_secrets(config, {"TRACER_TOKEN": "env-secret-value"}, register=registered.append, policy=policy)
    assert resolved["authentication"]["config"]["token"] == "env-secret-value"
    assert resolved["authentication"]["config"]["client_secret"] == "file-secret-value"
    assert resolved["authentication"]["config"]["scopes"] == ["openid"]
    assert config["authentication"]["config"]["token"] == {"$env": "TRACER_TOKEN"}  # a copy
    assert registered == ["env-secret-value", "file-secret-value"]
    # Call time: a changed file is read again on the next resolution.
    secret_file.write_text("rotated-file-secret")
    assert (
        resolve_secrets(config, {"TRACER_TOKEN": "x" * 8}, policy=policy)["authentication"]["config"]["client_secret"]
        == "rotated-file-secret"
    )


def test_environment_defaults_to_the_process_environment(monkeypatch):
    monkeypatch.setenv("FLOWKER_TEST_SECRET_X", "from-process-env")
    monkeypatch.setenv("SECRET_FOR_TEST", "from-process-env")
    assert resolve_secrets({"token": {"$env": "SECRET_FOR_TEST"}}) == {"token": "from-process-env"}


@pytest.mark.parametrize(
    "reference,environ,message",
    [
        ({"$env": "MISSING_VAR"}, {}, "environment variable MISSING_VAR is not set"),
        ({"$env": "EMPTY_VAR"}, {"EMPTY_VAR": ""}, "environment variable EMPTY_VAR is empty"),
        ({"$env": "BAD NAME"}, {}, "$env must name an environment variable"),
        ({"$env": "FLOWKER_SECRET_KEY"}, {"FLOWKER_SECRET_KEY": "the-master-key"}, "Flowker's own setting"),
        ({"$env": "flowker_api_keys"}, {"flowker_api_keys": "the-api-key"}, "Flowker's own setting"),
        ({"$file": "/run/secrets/nonexistent/secret"}, {}, "$file /run/secrets/nonexistent/secret cannot be read"),
        ({"$file": "/nonexistent/secret"}, {}, "$file /nonexistent/secret must lie under FLOWKER_SECRET_FILE_DIRS"),
        ({"$file": "/proc/self/environ"}, {}, "$file /proc/self/environ must lie under FLOWKER_SECRET_FILE_DIRS"),
        ({"$file": ""}, {}, "$file must name a file"),
    ],
)
def test_resolution_errors_name_the_reference_never_a_value(reference, environ, message):
    with pytest.raises(SecretUnavailableError) as caught:
        resolve_secrets(executor_config(token=reference), environ)
    assert message in caught.value.message
    assert caught.value.message.startswith("authentication.config.token: ")
    for value in environ.values():
        if value:
            assert value not in caught.value.message
    assert isinstance(caught.value, ConfigurationError) and caught.value.exit_code == 2


def test_secret_files_are_capped_regular_utf8_files(tmp_path):
    def resolve_secrets(config):
        return resolve_secrets_in(config, policy=SecretReferencePolicy(file_dirs=(str(tmp_path), "/proc")))

    big = tmp_path / "big"
    big.write_bytes(b"a" * 70_000)
    with pytest.raises(SecretUnavailableError, match="larger than 65536 bytes"):
        resolve_secrets({"k": {"$file": str(big)}})
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe-not-utf8")
    with pytest.raises(SecretUnavailableError, match="not UTF-8") as caught:
        resolve_secrets({"k": {"$file": str(binary)}})
    assert "not-utf8" not in caught.value.message
    with pytest.raises(SecretUnavailableError, match="not a regular file"):
        resolve_secrets({"k": {"$file": str(tmp_path)}})
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(SecretUnavailableError, match="not a regular file"):
        resolve_secrets({"k": {"$file": str(fifo)}})  # must not block waiting for a writer
    link = tmp_path / "link"
    link.symlink_to("/proc/self/environ")
    with pytest.raises(SecretUnavailableError, match="kernel pseudo-filesystem"):
        resolve_secrets({"k": {"$file": str(link)}})


def test_resolver_from_settings_protects_flowkers_own_files(tmp_path):
    database = tmp_path / "flowker.db"
    database.write_bytes(b"SQLite format 3\0")
    key_file = tmp_path / "audit.pem"
    key_file.write_text("-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n")
    settings = Settings.from_mapping(
        {"database_url": f"sqlite:///{database}", "audit_signing_key": str(key_file), "secret_file_dirs": str(tmp_path)}
    )
    resolver = SecretResolver.from_settings(settings, environ={}, register=Redactor().add_secret)
    for path in (database, key_file):
        with pytest.raises(SecretUnavailableError, match="one of Flowker's own files"):
            resolver.resolve({"k": {"$file": str(path)}})


def test_resolver_registers_with_the_redactor():
    redactor = Redactor()
    resolver = SecretResolver(environ={"T": "registered-secret-1"}, register=redactor.add_secret)
    resolver.resolve({"token": {"$env": "T"}})
    assert redactor.scrub_text("x registered-secret-1 y") == "x **** y"


# --------------------------------------------------------------------------- encryption


def test_encrypt_fields_stores_tokens_and_decrypt_fields_restores():
    box = SecretBox([Fernet.generate_key().decode()])
    config = executor_config(token="literal-token-value-1", client_secret={"$env": "CS"}, password=None)
    stored = box.encrypt_fields(config, SECRET_PATHS)
    cfg = stored["authentication"]["config"]
    assert set(cfg["token"]) == {"$encrypted"} and "literal-token-value-1" not in json.dumps(stored)
    assert cfg["client_secret"] == {"$env": "CS"} and cfg["password"] is None
    assert box.encrypt_fields(stored, SECRET_PATHS) == stored  # idempotent
    assert box.decrypt_fields(stored, SECRET_PATHS) == config
    assert box.decrypt_fields(stored) == config
    resolved = resolve_secrets(stored, {"CS": "cs-value"}, box=box)
    assert resolved["authentication"]["config"]["token"] == "literal-token-value-1"
    with pytest.raises(SecretKeyError, match="no secret key"):
        resolve_secrets(stored, {"CS": "cs-value"})


def test_wildcard_paths():
    box = SecretBox([Fernet.generate_key().decode()])
    config = {"items": [{"secret": "s-one-value"}, {"secret": "s-two-value"}], "extra": {"a": "x1", "b": "x2"}}
    stored = box.encrypt_fields(config, ["items.*.secret", ("extra", "*")])
    assert all(set(item["secret"]) == {"$encrypted"} for item in stored["items"])
    assert all(set(v) == {"$encrypted"} for v in stored["extra"].values())
    assert box.decrypt_fields(stored) == config


def test_mask_fields_for_get_output():
    box = SecretBox([Fernet.generate_key().decode()])
    config = executor_config(token="literal-token-value-1", client_secret={"$env": "CS"}, password="short")
    stored = box.encrypt_fields(config, SECRET_PATHS)
    masked = mask_fields(stored, SECRET_PATHS, box=box)["authentication"]["config"]
    assert masked == {"client_id": "app", "token": "****ue-1", "client_secret": {"$env": "CS"}, "password": "****"}
    assert mask_fields(stored, SECRET_PATHS)["authentication"]["config"]["token"] == "****"  # no box: no peeking
    assert mask_fields(config, SECRET_PATHS)["authentication"]["config"]["token"] == "****ue-1"


def test_rotation_old_and_new_keys_both_decrypt_and_rotate_uses_newest():
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    old_box = SecretBox([old])
    token = old_box.encrypt("rotating-secret")
    during = SecretBox([new, old])
    assert during.decrypt(token) == "rotating-secret"
    assert during.decrypt(during.encrypt("fresh")) == "fresh"
    rotated = during.rotate(token)
    assert SecretBox([new]).decrypt(rotated) == "rotating-secret"
    with pytest.raises(SecretKeyError):
        old_box.decrypt(rotated)
    with pytest.raises(SecretKeyError, match="cannot be decrypted") as caught:
        SecretBox([new]).decrypt(token)
    assert "rotating-secret" not in caught.value.message
    config, count = during.rotate_fields({"a": {"$encrypted": token}, "b": [{"$encrypted": old_box.encrypt("x")}]})
    assert count == 2 and SecretBox([new]).decrypt_fields(config) == {"a": "rotating-secret", "b": ["x"]}


def test_bad_keys_are_configuration_errors_without_the_key():
    with pytest.raises(SecretKeyError, match="key #2 is not a Fernet key") as caught:
        SecretBox([Fernet.generate_key().decode(), "not-a-key-but-secret"])
    assert "not-a-key-but-secret" not in caught.value.message
    with pytest.raises(SecretKeyError):
        SecretBox([])


def test_development_key_file_is_created_once_with_owner_only_permissions(tmp_path):
    settings = Settings.from_mapping({"database_url": f"sqlite:///{tmp_path}/flowker.db"})
    box = SecretBox.from_settings(settings)
    key_file = tmp_path / "flowker.db.secret-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    token = box.encrypt("dev-secret")
    assert SecretBox.from_settings(settings).decrypt(token) == "dev-secret"  # same key reused
    assert [p.name for p in tmp_path.iterdir()] == ["flowker.db.secret-key"]  # no temporary left behind
    key_file.chmod(0o644)
    with pytest.raises(SecretKeyError, match="chmod 600"):
        SecretBox.from_settings(settings)


def test_development_without_sqlite_has_no_box_and_production_needs_a_key(tmp_path):
    assert SecretBox.from_settings(Settings.from_mapping({"database_url": "postgresql://u@127.0.0.1/db"})) is None
    assert (
        SecretBox.from_settings(
            Settings.from_mapping({"database_url": f"sqlite:///{tmp_path}/x.db"}), create_key_file=False
        )
        is None
    )
    key = Fernet.generate_key().decode()
    production = Settings.from_mapping({"env": "production", "api_keys": "k" * 32, "secret_key": key})
    assert SecretBox.from_settings(production).decrypt(SecretBox([key]).encrypt("p")) == "p"
    with pytest.raises(SecretKeyError):
        SecretBox.from_settings(production.replace(secret_keys=()))


# --------------------------------------------------------------------------- flowker secrets rotate


def _store_executors(database_url: str, specs: list[dict]) -> None:
    from flowker.storage.database import bind_database
    from flowker.storage.migrations import upgrade
    from flowker.storage.models import Executor

    database = bind_database(database_url)
    upgrade(database)
    with database.connection_context():
        for index, spec in enumerate(specs):
            Executor.create(
                name=f"executor-{index}", base_url="https://tracer.example.test", spec=spec, spec_hash="0" * 64
            )
    getattr(database, "close_all", lambda: None)()


def _read_specs(database_url: str) -> list[dict]:
    from flowker.storage.database import bind_database
    from flowker.storage.models import Executor

    database = bind_database(database_url)
    with database.connection_context():
        specs = [e.spec for e in Executor.select().order_by(Executor.name)]
    getattr(database, "close_all", lambda: None)()
    return specs


def _flowker(*args, env_extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWKER_")}
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-m", "flowker", *args], capture_output=True, text=True, env=env, timeout=60, cwd=os.getcwd()
    )


def test_secrets_rotate_command_reencrypts_with_the_newest_key(database_url):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    old_box = SecretBox([old])
    plaintexts = ["rotate-me-one-1234", "rotate-me-two-5678", "rotate-me-three-90"]
    specs = [
        old_box.encrypt_fields(executor_config(token=plaintexts[0], client_secret=plaintexts[1]), SECRET_PATHS),
        old_box.encrypt_fields(executor_config(password=plaintexts[2], token={"$env": "T"}), SECRET_PATHS),
        executor_config(token={"$env": "T"}),  # nothing encrypted: left alone
    ]
    _store_executors(database_url, specs)

    result = _flowker("secrets", "rotate", "--db", database_url, env_extra={"FLOWKER_SECRET_KEY": f"{new},{old}"})

    assert result.returncode == 0, result.stderr
    assert "re-encrypted 3 secret(s) in 2 executor(s)" in result.stdout
    for text in plaintexts:
        assert text not in result.stdout + result.stderr
    stored = _read_specs(database_url)
    new_only = SecretBox([new])
    assert new_only.decrypt_fields(stored[0])["authentication"]["config"]["token"] == plaintexts[0]
    assert new_only.decrypt_fields(stored[1])["authentication"]["config"]["password"] == plaintexts[2]
    assert stored[2] == specs[2]
    with pytest.raises(SecretKeyError):
        old_box.decrypt_fields(stored[0])


def test_secrets_rotate_is_all_or_nothing(database_url):
    old, new, lost = (Fernet.generate_key().decode() for _ in range(3))
    specs = [
        SecretBox([old]).encrypt_fields(executor_config(token="kept-secret-value-1"), SECRET_PATHS),
        SecretBox([lost]).encrypt_fields(executor_config(token="orphan-secret-val-2"), SECRET_PATHS),
    ]
    _store_executors(database_url, specs)

    result = _flowker("secrets", "rotate", "--db", database_url, env_extra={"FLOWKER_SECRET_KEY": f"{new},{old}"})

    assert result.returncode == 2
    assert "executor 'executor-1'" in result.stderr and "cannot be decrypted" in result.stderr
    assert "orphan-secret-val-2" not in result.stderr
    assert _read_specs(database_url) == specs  # the first executor was not changed either


def test_secrets_rotate_without_a_key_is_a_usage_error(tmp_path):
    result = _flowker("secrets", "rotate", "--db", f"sqlite:///{tmp_path}/none.db", env_extra={})
    assert result.returncode == 2 and "FLOWKER_SECRET_KEY" in result.stderr
    assert not (tmp_path / "none.db.secret-key").exists()


def test_development_key_file_stays_readable_after_a_real_key_is_set(tmp_path):
    database_url = f"sqlite:///{tmp_path}/flowker.db"
    dev_box = SecretBox.from_settings(Settings.from_mapping({"database_url": database_url}))
    token = dev_box.encrypt("stored-in-development")
    new = Fernet.generate_key().decode()
    with_key = SecretBox.from_settings(Settings.from_mapping({"database_url": database_url, "secret_key": new}))
    assert with_key.key_count == 2 and with_key.decrypt(token) == "stored-in-development"
    assert SecretBox([new]).decrypt(with_key.rotate(token)) == "stored-in-development"
    production = Settings.from_mapping(
        {"env": "production", "api_keys": "k" * 32, "secret_key": new, "database_url": database_url}
    )
    assert SecretBox.from_settings(production).key_count == 1
