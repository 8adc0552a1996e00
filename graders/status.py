"""Where each submission stands: the one record of its grading status.

Scores live in nbgrader's gradebook; everything else about a submission's grading lives in
one table, ``sdcourse_grading``, in the SAME database (SQLite by default, PostgreSQL through
nbgrader's ``db_url``), written only by the trusted grading driver:

    assignment, student   the submission
    status                "graded" | "failed" | "no submission" | "pending"
    detail                why it failed / what was noticed (a renamed notebook, a cell killed for time)
    content_hash          hash of what was graded (submission + source + checks), so a re-run
                          grades only what is new or changed
    seconds               wall time of grading it
    updated               when the row was written (UTC, ISO 8601)

``autograde-report.csv`` and the status column of ``grades.csv`` are views of this table.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

TABLE = "sdcourse_grading"
_meta = sa.MetaData()
_table = sa.Table(
    TABLE, _meta,
    sa.Column("assignment", sa.String(128), primary_key=True),
    sa.Column("student", sa.String(128), primary_key=True),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, default=""),
    sa.Column("content_hash", sa.String(64), nullable=False, default=""),
    sa.Column("seconds", sa.Float, nullable=False, default=0.0),
    sa.Column("updated", sa.String(32), nullable=False),
)


@dataclass(frozen=True)
class Status:
    assignment: str
    student: str
    status: str
    detail: str = ""
    content_hash: str = ""
    seconds: float = 0.0
    updated: str = ""

    @property
    def ok(self) -> bool:
        return self.status in ("graded", "no submission")

    def line(self) -> str:
        return self.status + (f": {self.detail}" if self.detail else "")


class StatusStore:
    def __init__(self, db_url: str):
        self.engine = sa.create_engine(db_url, future=True)
        _meta.create_all(self.engine)

    def record(self, assignment: str, student: str, status: str, detail: str = "",
               content_hash: str = "", seconds: float = 0.0) -> Status:
        row = dict(assignment=assignment, student=student, status=status, detail=detail[:4000],
                   content_hash=content_hash, seconds=round(float(seconds), 2),
                   updated=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
        with self.engine.begin() as conn:
            conn.execute(sa.delete(_table).where(_table.c.assignment == assignment,
                                                 _table.c.student == student))
            conn.execute(sa.insert(_table).values(**row))
        return Status(**row)

    def get(self, assignment: str, student: str) -> Status | None:
        with self.engine.connect() as conn:
            r = conn.execute(sa.select(_table).where(_table.c.assignment == assignment,
                                                     _table.c.student == student)).mappings().first()
        return Status(**r) if r else None

    def all(self) -> list[Status]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(_table).order_by(_table.c.student, _table.c.assignment))
            return [Status(**r) for r in rows.mappings()]

    def close(self) -> None:
        self.engine.dispose()
