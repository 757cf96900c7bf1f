"""Folio's bot core: jobs, the queue, the worker, conversation history, the CLI and app wiring."""
