"""Full-text search of descriptions: the engine-specific objects and queries.

The searchable document of a description is its summary, its congestion level and the text of
its incidents (kind and description). SQLAlchemy's model cannot express these objects, so
migration ``0002`` creates them and the schema comparison leaves them out
(:func:`include_object`):

- SQLite: an FTS5 table ``descriptions_fts`` (contentless; Porter stemming over unicode61
  tokens; rowid = ``descriptions.id``) kept in step by triggers on insert, update and delete
  (retention's deletes included). Ranked by ``bm25``; score = -bm25 (higher is better).
- PostgreSQL: a GIN index ``ix_descriptions_fulltext`` on the ``english`` ``tsvector`` of the
  same document, queried with ``plainto_tsquery`` and ranked by ``ts_rank``.

Both match descriptions holding every word of the query (words are letters and digits; other
characters separate them), with English stemming.
"""

from __future__ import annotations

import re
from typing import Any, Final

FTS_TABLE: Final = "descriptions_fts"
PG_INDEX: Final = "ix_descriptions_fulltext"
PG_DOCUMENT: Final = (
    "to_tsvector('english'::regconfig, summary)"
    " || to_tsvector('english'::regconfig, coalesce(body::jsonb ->> 'congestion', ''))"
    " || jsonb_to_tsvector('english'::regconfig,"
    " coalesce(body::jsonb -> 'incidents', '[]'::jsonb), '[\"string\"]'::jsonb)"
)
"""The indexed expression; queries must repeat it exactly for PostgreSQL to use the index."""
PG_QUERY: Final = "plainto_tsquery('english'::regconfig, :fts_query)"
MAX_TERMS: Final = 32
MAX_TERM_CHARS: Final = 64
_WORD = re.compile(r"[^\W_]+")


def terms(text: str) -> list[str]:
    """The words of a query: letters and digits, lower-cased, at most 32 of 64 characters."""
    return [w[:MAX_TERM_CHARS].lower() for w in _WORD.findall(text)][:MAX_TERMS]


def sqlite_match(words: list[str]) -> str:
    """An FTS5 query matching rows with every word (each quoted: no FTS5 syntax leaks in)."""
    return " ".join(f'"{w}"' for w in words)


def is_fulltext_object(name: str | None, type_: str) -> bool:
    """Whether a reflected table or index is one of the full-text objects above."""
    if not name:
        return False
    if type_ == "table":
        return name == FTS_TABLE or name.startswith(FTS_TABLE + "_")
    return type_ == "index" and name == PG_INDEX


def include_object(
    _obj: Any, name: str | None, type_: str, _reflected: bool, _compare_to: Any
) -> bool:
    """Alembic's ``include_object`` hook: compare everything but the full-text objects."""
    return not is_fulltext_object(name, type_)
