"""Settings sections declared outside `config/`: each platform folder brings its own.

A platform's folder (`adapters/<name>/settings.py`) defines a `SectionSettings` subclass; the
composition root passes the discovered ones to `config.settings.load_settings`, which validates
them with the rest at start, as `[<name>]` in the TOML file and `FOLIO_<NAME>__<KEY>` in the
environment. So `config/` names no platform, and a new platform is one folder.

A section's secrets are fields made with `env_secret("ENV_NAME")`: read only from that
environment variable, refused in the TOML file, and never dumped or printed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

_SECRET_ENV = "folio_secret_env"  # the field's json_schema_extra key naming its variable


class SectionSettings(BaseModel):
    """A platform's section: an unknown key or a bad value is an error at start, like elsewhere.
    Its defaults must be valid (the section is there, with them, when a file leaves it out)."""

    model_config = ConfigDict(extra="forbid")


def env_secret(env: str, description: str = "") -> Any:
    """A secret field of a section, read only from the environment variable `env`."""
    return Field(
        default=None,
        exclude=True,
        description=description or f"Only from the environment: {env}.",
        json_schema_extra={_SECRET_ENV: env},
    )


def secret_fields(model: type[BaseModel]) -> dict[str, str]:
    """The section's secret fields and the environment variable each is read from."""
    found = {}
    for name, field in model.model_fields.items():
        extra = field.json_schema_extra
        if isinstance(extra, dict) and isinstance(extra.get(_SECRET_ENV), str):
            found[name] = str(extra[_SECRET_ENV])
    return found


def read_secrets(model: type[BaseModel], environ: Mapping[str, str]) -> dict[str, SecretStr]:
    """The section's secrets that are set (non-empty) in `environ`."""
    return {
        field: SecretStr(environ[env])
        for field, env in secret_fields(model).items()
        if environ.get(env)
    }
