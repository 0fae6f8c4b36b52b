"""Primary keys drawn before a bulk insert, so that rows can refer to each other in one pass."""

from __future__ import annotations

from sqlalchemy import Connection, Table, func, select, text


def allocate_ids(conn: Connection, table: Table, n: int) -> list[int]:
    """``n`` new primary keys of ``table``, in increasing order, for a plain executemany.

    (An INSERT ... RETURNING that keeps the parameter order runs row by row on SQLite: ten
    times slower.) PostgreSQL draws them from the column's sequence (safe with concurrent
    writers); SQLite continues after the largest id, which is safe because the cloud has
    one writer and SQLite one write transaction at a time.
    """
    if conn.dialect.name == "postgresql":
        rows = conn.execute(
            text("SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"),
            {"t": table.name, "n": n},
        ).scalars()
        return sorted(int(i) for i in rows)
    top = conn.execute(select(func.max(table.c.id))).scalar()
    start = int(top or 0) + 1
    return list(range(start, start + n))
