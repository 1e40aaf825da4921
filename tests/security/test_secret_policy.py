"""The secret reference policy on its own (DESIGN §6): settings and their defaults, the
real-path and inode checks, Flowker's own files, save time against call time."""

from __future__ import annotations

import os

import pytest
from click.testing import CliRunner

from flowker.errors import SecretReferenceRefusedError
from flowker.security.redaction import Redactor
from flowker.security.secret_policy import SecretReferencePolicy
from flowker.security.secrets import SecretResolver
from flowker.settings import Settings


def test_settings_defaults_and_parsing():
    development = Settings.from_mapping({})
    assert development.secret_file_dirs == ("/run/secrets",)
    assert development.secret_env_patterns is None  # any name (but FLOWKER_*)
    production = Settings.from_mapping({"env": "production", "api_keys": "k" * 40, "secret_key": "x"})
    assert production.secret_env_patterns == ()  # none until set
    configured = Settings.load(
        environ={"FLOWKER_SECRET_FILE_DIRS": "/a, /b", "FLOWKER_SECRET_ENV_ALLOW": "APP_*,TOKEN"}
    )
    assert configured.secret_file_dirs == ("/a", "/b") and configured.secret_env_patterns == ("APP_*", "TOKEN")
    nothing = Settings.load(environ={"FLOWKER_SECRET_FILE_DIRS": "", "FLOWKER_SECRET_ENV_ALLOW": ""})
    assert nothing.secret_file_dirs == () and nothing.secret_env_patterns == ()


def test_the_config_file_is_known_and_own_file_paths_cannot_be_set_from_outside(tmp_path):
    config = tmp_path / "flowker.yaml"
    config.write_text("secret_file_dirs: [/srv/secrets]\ntls_keyfile: /elsewhere\n")
    settings = Settings.load(
        environ={"FLOWKER_TLS_KEYFILE": "/x", "FLOWKER_CONFIG_FILE": "/y"}, config_file=str(config)
    )
    assert settings.config_file == str(config) and settings.secret_file_dirs == ("/srv/secrets",)
    assert settings.tls_keyfile is None
    assert Settings.load(environ={"FLOWKER_CONFIG": str(config)}).config_file == str(config)


def test_dirs_are_compared_by_path_components_not_string_prefix(tmp_path):
    allowed = tmp_path / "secrets"
    allowed.mkdir()
    sibling = tmp_path / "secrets-evil"
    sibling.mkdir()
    (sibling / "token").write_text("evil\n")
    policy = SecretReferencePolicy(file_dirs=(str(allowed),))
    assert "must lie under" in policy.file_refusal(str(sibling / "token"), must_exist=True)


def test_a_missing_file_passes_at_save_time_only(tmp_path):
    policy = SecretReferencePolicy(file_dirs=(str(tmp_path),))
    assert policy.file_refusal(str(tmp_path / "later"), must_exist=False) is None
    assert "cannot be read" in policy.file_refusal(str(tmp_path / "later"), must_exist=True)
    assert "must lie under" in policy.file_refusal("/nowhere/later", must_exist=False)


def test_flowkers_own_files_are_refused_even_under_an_allowed_dir(tmp_path):
    database = tmp_path / "flowker.db"
    signing_key = tmp_path / "audit.pem"
    config = tmp_path / "flowker.yaml"
    own = [
        database,
        tmp_path / "flowker.db-wal",
        tmp_path / "flowker.db-shm",
        tmp_path / "flowker.db.secret-key",
        signing_key,
        config,
        tmp_path / "tls.key",
        tmp_path / "tls.crt",
    ]
    for path in own:
        path.write_text("own-file-content\n")
    os.link(database, tmp_path / "hard-link-to-db")
    (tmp_path / "symlink-to-key").symlink_to(tmp_path / "flowker.db.secret-key")
    (tmp_path / "fine").write_text("fine-secret-value\n")
    settings = Settings.from_mapping(
        {
            "database_url": f"sqlite:///{database}",
            "audit_signing_key": str(signing_key),
            "secret_file_dirs": str(tmp_path),
        }
    )
    settings = settings.replace(
        config_file=str(config), tls_keyfile=str(tmp_path / "tls.key"), tls_certfile=str(tmp_path / "tls.crt")
    )
    policy = SecretReferencePolicy.from_settings(settings)
    for path in own + [tmp_path / "hard-link-to-db", tmp_path / "symlink-to-key"]:
        assert "one of Flowker's own files" in policy.file_refusal(str(path), must_exist=False), path
    resolver = SecretResolver.from_settings(settings, environ={}, register=Redactor().add_secret)
    with pytest.raises(SecretReferenceRefusedError) as caught:
        resolver.resolve({"k": {"$file": str(tmp_path / "hard-link-to-db")}})
    assert caught.value.code == "FLK-0007" and "own-file-content" not in caught.value.message
    assert resolver.resolve({"k": {"$file": str(tmp_path / "fine")}}) == {"k": "fine-secret-value"}


def test_pseudo_filesystems_are_refused_even_when_a_dir_allows_them():
    policy = SecretReferencePolicy(file_dirs=("/",))
    for path in ("/proc/self/environ", "/dev/fd/0", "/sys/kernel/hostname"):
        refusal = policy.file_refusal(path, must_exist=True)
        assert refusal and ("pseudo-filesystem" in refusal or "must lie under" in refusal), path


def test_env_globs_and_flowkers_own_variables():
    policy = SecretReferencePolicy(env_allow=("PARTNER_*", "LEDGER_TOKEN"))
    assert policy.env_refusal("PARTNER_KEY") is None and policy.env_refusal("LEDGER_TOKEN") is None
    assert "not allowed by FLOWKER_SECRET_ENV_ALLOW (PARTNER_*, LEDGER_TOKEN)" in policy.env_refusal("partner_key")
    assert "not allowed" in policy.env_refusal("LEDGER_TOKEN_2")
    everything = SecretReferencePolicy(env_allow=("*",))
    assert "Flowker's own setting" in everything.env_refusal("FLOWKER_SECRET_KEY")
    assert "Flowker's own setting" in SecretReferencePolicy().env_refusal("flowker_api_keys")
    assert "(none set)" in SecretReferencePolicy(env_allow=()).env_refusal("HOME")


def test_what_was_opened_is_checked_again(tmp_path, monkeypatch):
    """Should the path check pass and the file change before it is opened (a symlink or
    FIFO swapped in, a folder on the way replaced by a link), the checks on the open
    descriptor still refuse it. The race is made certain by a realpath that resolves
    nothing (what it would have returned a moment before the swap)."""
    allowed = tmp_path / "secrets"
    allowed.mkdir()
    outside_dir = tmp_path / "outside"
    outside_dir.mkdir()
    (outside_dir / "shadow").write_text("outside-secret\n")
    (allowed / "link").symlink_to(outside_dir / "shadow")
    (allowed / "folder").symlink_to(outside_dir)
    os.mkfifo(allowed / "fifo")
    policy = SecretReferencePolicy(file_dirs=(str(allowed),))
    monkeypatch.setattr("flowker.security.secret_policy.os.path.realpath", os.path.abspath)
    for swapped in (allowed / "link", allowed / "folder" / "shadow"):
        with pytest.raises(SecretReferenceRefusedError, match="changed while it was opened") as caught:
            policy.open_file(str(swapped))
        assert "outside-secret" not in caught.value.message
    with pytest.raises(SecretReferenceRefusedError, match="is not a regular file"):
        policy.open_file(str(allowed / "fifo"))  # and does not block waiting for a writer


def test_serve_adds_the_tls_pair_to_the_settings(tmp_path, monkeypatch):
    """``flowker serve --certfile/--keyfile``: the settings every worker gets name them."""
    import flowker.api.gunicorn_app as gunicorn_app
    import flowker.cli.serve as serve_module
    from flowker.cli import cli

    seen = {}

    class Recorder:
        def __init__(self, settings, options, registry=None):
            seen["settings"] = settings

        def run(self):
            pass

    monkeypatch.setattr(gunicorn_app, "FlowkerApplication", Recorder)
    monkeypatch.setattr(serve_module, "prepare_database", lambda *args, **kwargs: None)
    (tmp_path / "tls.crt").write_text("cert")
    (tmp_path / "tls.key").write_text("key")
    result = CliRunner().invoke(
        cli,
        [
            "serve",
            "--db",
            f"sqlite:///{tmp_path}/f.db",
            "--certfile",
            str(tmp_path / "tls.crt"),
            "--keyfile",
            str(tmp_path / "tls.key"),
        ],
        env={"FLOWKER_API_KEYS": "k:" + "x" * 32},
    )
    assert result.exit_code == 0, result.output
    assert seen["settings"].tls_certfile == str(tmp_path / "tls.crt")
    assert seen["settings"].tls_keyfile == str(tmp_path / "tls.key")
    policy = SecretReferencePolicy.from_settings(seen["settings"].replace(secret_file_dirs=(str(tmp_path),)))
    assert "one of Flowker's own files" in policy.file_refusal(str(tmp_path / "tls.key"), must_exist=True)


def test_malformed_references_are_refused_when_saved():
    from flowker.security.secret_policy import reference_refusals

    config = {
        "a": {"$file": ""},
        "b": {"$file": "/run/secrets/x\0y"},
        "c": {"$env": "BAD NAME"},
        "d": {"$env": 7},
        "e": [{"$file": "/run/secrets/fine"}],
    }
    refusals = dict(reference_refusals(config, SecretReferencePolicy()))
    assert refusals == {
        ("a", "$file"): "$file must name a file",
        ("b", "$file"): "$file must name a file",
        ("c", "$env"): "$env must name an environment variable",
        ("d", "$env"): "$env must name an environment variable",
    }
