"""A new platform is one folder: `bot.app` finds it in `adapters/` and names no platform."""

from __future__ import annotations

import ast
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import adapters  # noqa: E402
import config  # noqa: E402
from adapters.registry import discover  # noqa: E402
from bot.app import build_adapters, configured_platforms, load_settings  # noqa: E402
from config.errors import ConfigError  # noqa: E402
from config.settings import Settings  # noqa: E402

PLATFORM_PY = '''
from pydantic import Field, SecretStr

from adapters.registry import Platform
from config.sections import SectionSettings, env_secret


class PigeonSettings(SectionSettings):
    loft: str = "roof"
    birds: int = Field(default=2, ge=1)
    token: SecretStr | None = env_secret("PIGEON_TOKEN")


class Pigeon:
    platform = "pigeon"

    def __init__(self, core, settings):
        self.core, self.settings = core, settings
        self.section = settings.section("pigeon", PigeonSettings)


def platform():
    return Platform(
        "pigeon", "chat", "Carrier pigeon",
        lambda s: s.section("pigeon", PigeonSettings).token is not None, Pigeon, PigeonSettings,
    )
'''


def test_every_platform_folder_is_found_with_its_role() -> None:
    roles = {p.name: p.role for p in discover()}
    assert roles == {"console": "fallback", "discord": "chat", "slack": "chat", "web": "beside"}


def test_the_core_settings_name_no_platform() -> None:
    """Every platform's section and secrets come from its folder, none from config/."""
    names = [p.name for p in discover()]
    for field in Settings.model_fields:
        assert not any(field == n or field.startswith(f"{n}_") for n in names), field
    for module in Path(config.__file__).parent.glob("*.py"):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        imported = [
            alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
            for alias in node.names
        ] + [
            node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
        ]
        assert not [m for m in imported if m.split(".")[0] in {"adapters", "bot", *names}], module


@pytest.fixture
def pigeon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A new platform: one folder, its own settings section and secret, nothing edited."""
    package = tmp_path / "pigeon"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "platform.py").write_text(PLATFORM_PY)
    monkeypatch.setattr(adapters, "__path__", [*adapters.__path__, str(tmp_path)])
    for name in ("DISCORD_BOT_TOKEN", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "PIGEON_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith("FOLIO_"):
            monkeypatch.delenv(name)
    yield tmp_path
    sys.modules.pop("adapters.pigeon.platform", None)
    sys.modules.pop("adapters.pigeon", None)


def _config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    config = tmp_path / "folio.toml"
    config.write_text(text)
    monkeypatch.setenv("FOLIO_CONFIG", str(config))


def test_a_new_platform_folder_brings_its_settings_and_secret_and_the_app_builds_it(
    pigeon: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _config(pigeon, monkeypatch, '[pigeon]\nloft = "barn"\n\n[discord]\nmax_attachment_mb = 5\n')
    settings = load_settings(data_dir=pigeon / "data")
    assert configured_platforms(settings) == []  # no secret in the environment: not configured
    monkeypatch.setenv("PIGEON_TOKEN", "coo-SENTINEL-coo")
    monkeypatch.setenv("FOLIO_PIGEON__BIRDS", "7")
    settings = load_settings(data_dir=pigeon / "data")
    assert configured_platforms(settings) == ["pigeon"]
    core = object()
    [adapter] = build_adapters(settings, core, ["pigeon"])  # type: ignore[arg-type]
    assert adapter.platform == "pigeon" and adapter.core is core and adapter.settings is settings
    section = adapter.section
    assert (section.loft, section.birds) == ("barn", 7)  # from the file and the environment
    assert section.token.get_secret_value() == "coo-SENTINEL-coo"
    for text in (repr(settings), str(settings), settings.model_dump_json()):
        assert "coo-SENTINEL-coo" not in text
    assert settings.model_dump()["pigeon"] == {"loft": "barn", "birds": 7}


@pytest.mark.parametrize(
    ("toml", "reason"),
    [
        ('[pigeon]\nlofts = "barn"\n', "pigeon.lofts: Extra inputs are not permitted"),
        ("[pigeon]\nbirds = 0\n", "pigeon.birds: Input should be greater than or equal to 1"),
        ('[pigeon]\ntoken = "coo"\n', "must not contain secrets: pigeon.token (set PIGEON_TOKEN"),
        ('pigeon_token = "coo"\n', "must not contain secrets: pigeon_token (set PIGEON_TOKEN"),
    ],
)
def test_a_new_platforms_section_is_validated_at_start_in_one_line(
    pigeon: Path, monkeypatch: pytest.MonkeyPatch, toml: str, reason: str
) -> None:
    _config(pigeon, monkeypatch, toml)
    with pytest.raises(ConfigError) as caught:
        load_settings(data_dir=pigeon / "data")
    message = str(caught.value)
    assert reason in message and "\n" not in message and '"coo"' not in message


def test_a_section_nobody_declares_is_refused(
    pigeon: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sys.modules.pop("adapters.pigeon.platform", None)
    (pigeon / "pigeon" / "platform.py").unlink()  # the folder is gone: its section is unknown
    _config(pigeon, monkeypatch, '[pigeon]\nloft = "barn"\n')
    with pytest.raises(ConfigError, match="pigeon: Extra inputs are not permitted"):
        load_settings(data_dir=pigeon / "data")


def _read_in_child(settings: Settings) -> tuple[str, float, str | None]:
    token = settings.discord.token  # type: ignore[attr-defined]
    return (str(settings.data_dir), settings.discord.max_attachment_mb,  # type: ignore[attr-defined]
            token.get_secret_value() if token else None)


def test_settings_with_platform_sections_reach_a_spawned_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`folio bench` runs its phases in spawned children: the settings, whose class gets the
    platforms' sections at start, must arrive there whole, secrets included."""
    import multiprocessing

    monkeypatch.setenv("DISCORD_BOT_TOKEN", "child-token")
    settings = load_settings(data_dir=tmp_path, discord={"max_attachment_mb": 7.5})
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(_read_in_child, (settings,)) == (str(tmp_path), 7.5, "child-token")
