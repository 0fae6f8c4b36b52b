"""The query API of ``semcom cloud serve``: catalog reads, similarity search, health, metrics.

Wire it in the composition root::

    app.include_router(build_api_router(ApiDeps(...)))
    install_error_handlers(app)

Modules: ``routes`` (HTTP surface), ``service`` (what each query does), ``schemas`` (request
and response models: the OpenAPI documentation), ``params`` (ids and times), ``auth`` (bearer
tokens), ``errors`` (error tree and handlers), ``metrics``, ``images``, ``deps``.
"""
