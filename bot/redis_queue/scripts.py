"""The queue's Lua scripts, read from the .lua files beside this module (package data).

Every script gets the key prefix as ARGV[1]. Ids are decimal strings; times are ms integers
internally and seconds (floats) in the job hash, as `Job` has them. `common.lua` (the key names
and the helpers several scripts share) is put in front of each one, since a Redis script cannot
include another.
"""

from __future__ import annotations

import functools
from importlib import resources

SCRIPTS = (
    "put", "claim", "complete", "cancel_pending", "requeue", "heartbeat", "recover", "has_work",
    "undelivered", "mark_delivered", "raise_seq", "remember_reply",
)


def _read(name: str) -> str:
    return resources.files(__package__).joinpath("lua", f"{name}.lua").read_text("utf-8")


@functools.cache
def load_scripts() -> dict[str, str]:
    """Each script's full source (common.lua first), by name."""
    common = _read("common")
    return {name: common + _read(name) for name in SCRIPTS}
