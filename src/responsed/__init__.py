"""responsed: a self-hosted, stateful server for the OpenAI Responses API."""

__version__ = "0.1.0"
