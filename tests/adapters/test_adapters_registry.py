"""A new platform is one folder: `bot.app` finds it in `adapters/` and names no platform."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import adapters  # noqa: E402
from adapters.registry import discover  # noqa: E402
from bot.app import build_adapters, configured_platforms  # noqa: E402
from config.settings import load_settings  # noqa: E402

PLATFORM_PY = '''
from adapters.registry import Platform


class Pigeon:
    platform = "pigeon"

    def __init__(self, core, settings):
        self.core, self.settings = core, settings


def platform():
    return Platform("pigeon", "chat", "Carrier pigeon", lambda s: True, Pigeon)
'''


def test_every_platform_folder_is_found_with_its_role() -> None:
    roles = {p.name: p.role for p in discover()}
    assert roles == {"console": "fallback", "discord": "chat", "slack": "chat", "web": "beside"}


def test_a_folder_with_a_platform_module_is_a_platform_the_app_builds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "pigeon"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "platform.py").write_text(PLATFORM_PY)
    monkeypatch.setattr(adapters, "__path__", [*adapters.__path__, str(tmp_path)])
    for name in ("DISCORD_BOT_TOKEN", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings(data_dir=tmp_path / "data")
    assert configured_platforms(settings) == ["pigeon"]
    core = object()
    [adapter] = build_adapters(settings, core, ["pigeon"])  # type: ignore[arg-type]
    assert adapter.platform == "pigeon" and adapter.core is core and adapter.settings is settings
    sys.modules.pop("adapters.pigeon.platform", None)
    sys.modules.pop("adapters.pigeon", None)

