"""The dashboard: server-rendered pages of what the cloud knows, at ``/`` of ``semcom cloud serve``.

Pages are Jinja2 templates filled by small view functions that read the catalog, the index,
the describer's store and the link monitor through the same services the JSON API uses; a
little script of our own (``static/app.js``) adds the live feed (Server-Sent Events) and
nothing else needs JavaScript. No third-party front-end code, no CDN: everything a page loads
is served by the cloud itself (see ``docs/architecture.md``, "Dashboard").

Sign-in takes an API token (``api_tokens`` of the cloud config) once, in a POST form, and
sets an HttpOnly, SameSite=Strict session cookie; sessions live in the database
(``ui_sessions``) so sign-out ends them everywhere; every state-changing request carries the
session's CSRF token.
"""
