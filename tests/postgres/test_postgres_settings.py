"""`store.backend = "postgres"`: the URL only from the environment, checked without echoing it,
and what each setting becomes; an unreachable database is one line from the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from reliability_env import clean_env

from bot.app import load_settings
from config.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_the_postgres_backend_needs_a_url_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("FOLIO_DATABASE_URL", "DATABASE_URL", "FOLIO_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FOLIO_STORE__BACKEND", "postgres")
    with pytest.raises(ConfigError, match="needs the database URL in FOLIO_DATABASE_URL"):
        load_settings()
    monkeypatch.setenv("DATABASE_URL", "postgresql://folio:pw-from-paas@10.0.0.7:5433/folio")
    settings = load_settings()
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value().endswith(":5433/folio")
    assert "pw-from-paas" not in repr(settings)
    monkeypatch.setenv("FOLIO_DATABASE_URL", "mysql://root:pw-typo@db/folio")
    with pytest.raises(ConfigError) as bad:
        load_settings()
    assert "postgresql://" in bad.value.message and "pw-typo" not in bad.value.message
    config = tmp_path / "folio.toml"
    config.write_text('[store]\nbackend = "postgres"\ndatabase_url = "postgresql://x@y/z"\n')
    monkeypatch.setenv("FOLIO_CONFIG", str(config))
    with pytest.raises(ConfigError, match="must not contain secrets: database_url"):
        load_settings()


def test_an_unreachable_database_is_one_line_without_the_password(tmp_path: Path) -> None:
    env = clean_env() | {
        "FOLIO_STORE__BACKEND": "postgres",
        "FOLIO_DATABASE_URL": "postgresql://folio:sekret-pw@127.0.0.1:1/folio",
        "FOLIO_STORE__CONNECT_TIMEOUT_S": "1",
        "FOLIO_STORE__POOL_TIMEOUT_S": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "bot", "--data-dir", str(tmp_path), "docs"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "The database at 127.0.0.1:1/folio is unreachable" in lines[0]
    assert "sekret" not in done.stderr
