"""Chat platforms. Each lives in its own folder and implements `adapters.base.Adapter`."""
