"""The generation server runs the same llama.cpp as the embedded model, so it gets the same
protection: `python -m rag.llama_server` loads every model without the extra weight buffer types
(AMX, which segfaults on some Xeons, and CPU_REPACK), and still answers a long prompt."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from scale_llama_server import LlamaServer

from rag.cpu import read_cpu_info
from rag.model_check import parse_load_log

pytestmark = pytest.mark.slow

LONG_QUESTION = " ".join(
    f"Passage {n}: the harbour office opens at nine and closes at five on weekdays." for n in
    range(1, 31)
) + " When does the harbour office close?"


def chat(base_url: str, content: str, max_tokens: int) -> dict[str, object]:
    body = json.dumps({
        "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens,
        "temperature": 0,
    }).encode()
    request = urllib.request.Request(base_url + "/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        reply: dict[str, object] = json.load(response)
    return reply


@pytest.mark.parametrize("extra", [False, True], ids=["default", "extra-buffers"])
def test_the_server_wrapper_keeps_weights_out_of_extra_buffers(tmp_path: Path, extra: bool) -> None:
    args = ("--verbose", "True", *(("--extra-buffers",) if extra else ()))
    server = LlamaServer(tmp_path / "server.log", extra_args=args).start()
    reply: dict[str, object] | None = None
    try:
        reply = chat(server.base_url, LONG_QUESTION, 16)
    except ConnectionError:  # the server died mid-answer (RemoteDisconnected)
        if not (extra and read_cpu_info().has_amx):
            raise
    finally:
        server.stop()
    log = (tmp_path / "server.log").read_text(errors="replace")
    buffers, extra_types = parse_load_log(log)
    assert buffers, log[-2000:]  # the load log was read: the weights went somewhere
    if extra:
        # llama.cpp's default tries its extra buffer types (CPU_REPACK in every build that
        # scripts/setup makes, AMX on Xeons that have it): the switch really decides.
        assert extra_types, log[-2000:]
    else:
        assert extra_types == [], extra_types
        assert not any("AMX" in name.upper() for name in buffers)
    if reply is None:  # on AMX the extra buffers segfault: the crash the default avoids
        assert any("AMX" in name.upper() for name in extra_types), extra_types
        return
    usage = reply["usage"]
    assert isinstance(usage, dict) and usage["prompt_tokens"] >= 400
    choices = reply["choices"]
    assert isinstance(choices, list) and choices[0]["message"]["content"].strip()
