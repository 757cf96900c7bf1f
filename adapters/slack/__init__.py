"""Folio on Slack: `SlackAdapter` (Bolt, Socket Mode or HTTP) and its `SlackSettings`.

Importing this package does not import slack_bolt or slack_sdk; `SlackAdapter.start()` does.
"""

from adapters.slack.adapter import SlackAdapter
from adapters.slack.settings import SlackCommands, SlackSettings

__all__ = ["SlackAdapter", "SlackCommands", "SlackSettings"]
