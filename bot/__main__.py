"""`python -m bot`: the same entry point as `folio` (no sub-command runs the bot)."""

import sys

from bot.cli import main

sys.exit(main())
