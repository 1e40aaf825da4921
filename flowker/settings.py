"""Settings, read once into an immutable object and passed down.

Sources, later ones winning: defaults, a YAML bootstrap file (``--config`` or
``FLOWKER_CONFIG``; keys are the variable names lower-cased without the prefix),
then ``FLOWKER_*`` environment variables. Nothing here opens a connection.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
from dataclasses import dataclass, field
from typing import Any, Mapping

from flowker.access.principal import Role
from flowker.errors import ConfigurationError

ENV_PREFIX = "FLOWKER_"
LOG_FORMATS = ("json", "text")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_SWITCH = {"on": True, "true": True, "1": True, "yes": True, "off": False, "false": False, "0": False, "no": False}
# Production API keys are at least this long (DESIGN §6): guessing one must be hopeless.
MIN_PRODUCTION_KEY_LENGTH = 32
ROLE_NAMES = frozenset(role.value for role in Role)


def _split_csv(value) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(str(v).strip() for v in value if str(v).strip())
    return tuple(part.strip() for part in str(value).split(",") if part.strip())


@dataclass(frozen=True)
class ApiKey:
    """One accepted API key. ``name`` is what the audit trail shows, never ``key``;
    ``role`` what it may do (flowker.access.Role; admin when the entry names none)."""

    name: str
    key: str = field(repr=False)
    role: Role = Role.ADMIN


def _parse_api_keys(value) -> tuple[ApiKey, ...]:
    import hashlib

    keys = []
    for item in _split_csv(value):
        name, sep, key = item.partition(":")
        role = Role.ADMIN
        if not sep:
            key = name
            # Unnamed keys are identified by a fingerprint so the key itself never leaks.
            name = "key-" + hashlib.sha256(key.encode()).hexdigest()[:12]
        else:
            # name:key:role; a key may itself hold ":", so only a last part that is a
            # role name is taken as the role.
            head, colon, last = key.rpartition(":")
            if colon and last.strip().lower() in ROLE_NAMES:
                key, role = head, Role(last.strip().lower())
        if not key:
            raise ConfigurationError("FLOWKER_API_KEYS has an entry with an empty key")
        keys.append(ApiKey(name=name.strip(), key=key.strip(), role=role))
    # The audit actor is the key's name: two keys with one name would be indistinguishable.
    names = [k.name for k in keys]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigurationError(f"FLOWKER_API_KEYS names {', '.join(duplicates)} more than once")
    return tuple(keys)


def parse_role_map(text: str | None) -> tuple[tuple[str, str], ...]:
    """``FLOWKER_OIDC_ROLE_MAP``: comma-separated ``claim-value=role`` pairs. The role is
    checked by the caller (the roles are access control's); ValueError names a bad pair."""
    pairs: list[tuple[str, str]] = []
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        claim_value, sep, role = item.rpartition("=")
        if not sep or not claim_value.strip() or not role.strip():
            raise ValueError(f"{item!r} is not claim-value=role")
        pairs.append((claim_value.strip(), role.strip()))
    return tuple(pairs)


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///flowker.db"
    api_keys: tuple[ApiKey, ...] = ()
    env: str = "development"
    secret_keys: tuple[str, ...] = field(default=(), repr=False)
    allow_private_networks: tuple[str, ...] = ()
    cors_allowed_origins: tuple[str, ...] = ()
    trusted_proxies: tuple[str, ...] = ()
    retry_base_seconds: float = 1.0
    retry_max_attempts: int = 5
    cb_failure_threshold: int = 5
    cb_recovery_seconds: float = 30.0
    cb_half_open_calls: int = 1  # trial calls let through, fleet-wide, once the recovery time has passed
    execution_timeout_seconds: float = 300.0
    # How long a running execution's owner may stay silent (its heartbeat renews the lease
    # every third of this) before another process's recovery may fail it as interrupted.
    execution_lease_seconds: float = 60.0
    max_body_bytes: int = 1048576
    disabled_plugins: tuple[str, ...] = ()
    audit_signing_key: str | None = field(default=None, repr=False)
    audit_checkpoint_interval: int = 1000
    # Where {$file} references may resolve, and the globs {$env} names must match (None:
    # the environment's default, see secret_env_patterns).
    secret_file_dirs: tuple[str, ...] = ("/run/secrets",)
    secret_env_allow: tuple[str, ...] | None = None
    # Expressions (DESIGN 6): CPU seconds per execution; the cap on each stored output.
    expression_cpu_seconds: float = 1.0
    max_output_bytes: int = 1048576
    # Where signed checkpoints are also sent: file:///DIR or an http(s):// witness service.
    audit_witness: str | None = None
    # People signing in with an OpenID provider (DESIGN §13): off while oidc_issuer is None.
    # oidc_role_map is ((claim value, role), ...) from "claim-value=role,...".
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_roles_claim: str = "roles"
    oidc_role_map: tuple[tuple[str, str], ...] = ()
    # The web console's client id at that provider (authorization code + PKCE, a public
    # client): the console offers "sign in with the provider" only when it is set.
    ui_oidc_client_id: str | None = None
    # Logs (DESIGN 14): "json" or "text" (None: json in production, text in development),
    # and the standard level name of the root logger.
    log_format: str | None = None
    log_level: str = "INFO"
    # Prometheus metrics (DESIGN 14); off (FLOWKER_METRICS=off) for a benchmark without them.
    metrics: bool = True
    # True when no FLOWKER_API_KEYS were given and one was generated for development.
    api_key_generated: bool = False
    # Files Flowker itself reads, which no secret reference may: the bootstrap file
    # (set by load) and serve's TLS pair. Not settings: never read from the mapping.
    config_file: str | None = None
    tls_certfile: str | None = None
    tls_keyfile: str | None = None
    # The standard OTEL_* variables (traces, DESIGN §14; flowker.tracing): not FLOWKER_*
    # settings, never from the bootstrap file. Not shown: OTLP headers may hold a token.
    otel_environment: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def effective_log_format(self) -> str:
        if self.log_format is not None:
            return self.log_format
        return "json" if self.production else "text"

    @property
    def secret_env_patterns(self) -> tuple[str, ...] | None:
        """The globs ``{$env}`` names must match; None: any (development's default).
        ``FLOWKER_*`` names are refused whatever this says."""
        if self.secret_env_allow is not None:
            return self.secret_env_allow
        return () if self.production else None

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None, config_file: str | None = None) -> "Settings":
        """Read settings from a bootstrap file and the environment (which wins)."""
        environ = os.environ if environ is None else environ
        raw: dict[str, object] = {}
        config_file = config_file or environ.get(ENV_PREFIX + "CONFIG")
        if config_file:
            raw.update(_read_config_file(config_file))
        for name, value in environ.items():
            if name.startswith(ENV_PREFIX) and name != ENV_PREFIX + "CONFIG":
                raw[name[len(ENV_PREFIX) :].lower()] = value
        settings = cls.from_mapping(raw)
        from flowker.tracing import otel_environment

        settings = settings.replace(otel_environment=otel_environment(environ))
        return settings.replace(config_file=os.path.abspath(config_file)) if config_file else settings

    @classmethod
    def from_mapping(cls, raw: Mapping[str, object]) -> "Settings":
        known = {f.name for f in dataclasses.fields(cls)} | {"secret_key"}
        values: dict[str, Any] = {}  # each converted to its field's type by _convert
        for key, value in raw.items():
            if key not in known:
                continue  # other FLOWKER_* variables (test settings, CONFIG) are not ours
            try:
                values.update(_convert(key, value))
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(f"setting FLOWKER_{key.upper()}: {exc}") from None
        settings = cls(**values)
        return settings._checked()

    def _checked(self) -> "Settings":
        if self.env not in ("development", "production"):
            raise ConfigurationError("FLOWKER_ENV must be 'development' or 'production'")
        if self.production:
            if not self.api_keys:
                raise ConfigurationError("FLOWKER_API_KEYS is required in production")
            if not self.secret_keys:
                raise ConfigurationError("FLOWKER_SECRET_KEY is required in production")
            # Named, never shown: the message must not help anyone guess the key.
            short = [key.name for key in self.api_keys if len(key.key) < MIN_PRODUCTION_KEY_LENGTH]
            if short:
                raise ConfigurationError(
                    f"FLOWKER_API_KEYS: key(s) {', '.join(short)} shorter than {MIN_PRODUCTION_KEY_LENGTH} "
                    "characters; production refuses them (make one with "
                    "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
                )
        self._check_oidc()
        if self.log_format is not None and self.log_format not in LOG_FORMATS:
            raise ConfigurationError(
                f"FLOWKER_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {self.log_format!r}"
            )
        if self.log_level not in LOG_LEVELS:
            raise ConfigurationError(
                f"FLOWKER_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {self.log_level!r}"
            )
        if self.execution_lease_seconds <= 0:
            raise ConfigurationError("FLOWKER_EXECUTION_LEASE_SECONDS must be more than 0")
        if self.expression_cpu_seconds <= 0:
            raise ConfigurationError("FLOWKER_EXPRESSION_CPU_SECONDS must be more than 0")
        for name in (
            "retry_max_attempts",
            "cb_failure_threshold",
            "cb_half_open_calls",
            "max_body_bytes",
            "max_output_bytes",
        ):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"FLOWKER_{name.upper()} must be at least 1")
        return self

    def _check_oidc(self) -> None:
        if self.oidc_issuer is None:
            if self.oidc_audience or self.oidc_role_map:
                raise ConfigurationError("FLOWKER_OIDC_AUDIENCE and FLOWKER_OIDC_ROLE_MAP need FLOWKER_OIDC_ISSUER")
            if self.ui_oidc_client_id:
                raise ConfigurationError("FLOWKER_UI_OIDC_CLIENT_ID needs FLOWKER_OIDC_ISSUER")
            return
        if not self.oidc_issuer.startswith(("https://", "http://")):
            raise ConfigurationError("FLOWKER_OIDC_ISSUER must be the issuer's https:// URL")
        if self.production and not self.oidc_issuer.startswith("https://"):
            raise ConfigurationError("FLOWKER_OIDC_ISSUER must use https:// in production")
        if not self.oidc_audience:
            # Without an audience any token the issuer signs for any application would do.
            raise ConfigurationError("FLOWKER_OIDC_AUDIENCE is required with FLOWKER_OIDC_ISSUER")
        if not self.oidc_roles_claim:
            raise ConfigurationError("FLOWKER_OIDC_ROLES_CLAIM must not be empty")
        if not self.oidc_role_map:
            raise ConfigurationError(
                "FLOWKER_OIDC_ROLE_MAP is required with FLOWKER_OIDC_ISSUER (e.g. flowker-admins=admin,ops=operator)"
            )
        unknown = sorted({role for _, role in self.oidc_role_map if role not in ROLE_NAMES})
        if unknown:
            raise ConfigurationError(
                f"FLOWKER_OIDC_ROLE_MAP names unknown role(s) {', '.join(unknown)}: use "
                + ", ".join(role.value for role in Role)
            )

    def with_generated_api_key(self) -> "Settings":
        """Development convenience: a random key when none is configured."""
        if self.api_keys:
            return self
        return self.replace(api_keys=(ApiKey("generated", secrets.token_urlsafe(24)),), api_key_generated=True)


_NOT_SETTINGS = frozenset({"api_key_generated", "config_file", "tls_certfile", "tls_keyfile", "otel_environment"})


def _convert(key: str, value) -> dict[str, object]:
    if key == "api_keys":
        return {"api_keys": _parse_api_keys(value)}
    if key in ("secret_key", "secret_keys"):
        return {"secret_keys": _split_csv(value)}
    if key in ("allow_private_networks", "cors_allowed_origins", "trusted_proxies", "disabled_plugins"):
        return {key: _split_csv(value)}
    if key in (
        "retry_base_seconds",
        "cb_recovery_seconds",
        "execution_timeout_seconds",
        "execution_lease_seconds",
        "expression_cpu_seconds",
    ):
        number = float(value)
        if number < 0:
            raise ValueError("must not be negative")
        return {key: number}
    if key in (
        "retry_max_attempts",
        "cb_failure_threshold",
        "cb_half_open_calls",
        "max_body_bytes",
        "audit_checkpoint_interval",
        "max_output_bytes",
    ):
        return {key: int(value)}
    if key in _NOT_SETTINGS:
        return {}
    if key == "oidc_role_map":
        return {key: parse_role_map(",".join(value) if isinstance(value, (list, tuple)) else value)}
    if key == "oidc_issuer":
        return {key: str(value).rstrip("/") if value else None}
    if key == "oidc_roles_claim":
        return {key: str(value).strip()}
    if key == "log_format":
        return {key: None if value is None else str(value).strip().lower()}
    if key == "log_level":
        return {key: str(value).strip().upper()}
    if key == "metrics":
        if isinstance(value, bool):
            return {key: value}
        switch = _SWITCH.get(str(value).strip().lower())
        if switch is None:
            raise ValueError("must be on or off")
        return {key: switch}
    if key in ("secret_file_dirs", "secret_env_allow"):
        # Set but empty means none (no $file / no $env reference resolves).
        return {key: _split_csv(value)}
    return {key: None if value is None else str(value)}


def _read_config_file(path: str) -> dict[str, object]:
    import yaml

    try:
        with open(path, "rb") as handle:
            data = yaml.safe_load(handle.read(262144))
    except OSError as exc:
        raise ConfigurationError(f"cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"config file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigurationError(f"config file {path} must be a mapping of setting names")
    return {str(k).lower(): v for k, v in data.items()}
