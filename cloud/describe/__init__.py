"""The describer: structured traffic descriptions of a camera and time window.

A multimodal LLM behind any OpenAI-compatible endpoint (``llm``) or, with no endpoint
configured, rules over the metadata (``rules``) fill the same structured output (``schema``)
from what the catalog holds about the window (``context``). Work is persisted as jobs in the
catalog (``jobs``), enqueued per closed window and on notable events (``scheduler``) and run
by an asyncio worker (``runner``); results are stored and full-text searchable (``store``,
``fts``). Importing this package imports nothing heavy: ``openai`` is loaded by ``llm`` only.
"""
