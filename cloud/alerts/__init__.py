"""Alerts on traffic analytics events: rules, signed webhooks, MQTT, dead letters.

- ``config``: the ``alerts`` section of the cloud configuration (rules, webhooks, mqtt).
- ``rules``: which rules an event matches; quiet periods per (rule, camera, subject).
- ``dispatcher``: :class:`~cloud.alerts.dispatcher.AlertDispatcher`, the asyncio task that
  follows ``analytics_events`` by id (cursor in ``alert_cursors``) and delivers alerts, at
  least once, with an idempotency key; replays dead letters.
- ``delivery``: webhooks (httpx, HMAC-signed: ``signing``) and MQTT (aiomqtt), retried with
  exponential backoff and jitter (tenacity).
- ``store``: the SQL behind it; ``model``: the message; ``metrics``: Prometheus counters.

docs/alerts.md describes the message, the signature scheme and the MQTT topics.
"""
