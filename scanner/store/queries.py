"""Reading results back: filters for `scanner results`, one image for `scanner show`, errors."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from scanner.store import tables
from scanner.store.database import Database
from scanner.verdict import overall


@dataclass
class ResultFilter:
    label: str | None = None
    detector: str | None = None
    min_score: float | None = None
    path_glob: str | None = None
    since: datetime | None = None
    limit: int | None = None


def glob_to_like(pattern: str) -> str:
    """A shell-style glob (`*`, `?`) as a LIKE pattern with `\\` as the escape character."""
    out = []
    for char in pattern:
        if char in "\\%_":
            out.append("\\" + char)
        elif char == "*":
            out.append("%")
        elif char == "?":
            out.append("_")
        else:
            out.append(char)
    return "".join(out)


def _overall_by_sha(conn, shas: set[str]) -> dict:
    v = tables.verdicts
    found: dict[str, list] = {sha: [] for sha in shas}
    sha_list = sorted(shas)
    for start in range(0, len(sha_list), 500):
        query = select(v.c.sha256, v.c.detector, v.c.label, v.c.score)
        for row in conn.execute(query.where(v.c.sha256.in_(sha_list[start : start + 500]))):
            found[row.sha256].append((row.detector, row.label, row.score))
    return {sha: overall(triples) for sha, triples in found.items()}


def results(db: Database, where: ResultFilter) -> list[dict]:
    """One row per (path, detector) verdict matching `where`, with the image's overall verdict."""
    f, v = tables.files, tables.verdicts
    query = (
        select(
            f.c.path,
            v.c.sha256,
            v.c.detector,
            v.c.detector_version,
            v.c.model_hash,
            v.c.label,
            v.c.score,
            v.c.threshold,
            v.c.reason,
            v.c.scanned_at,
        )
        .join(v, v.c.sha256 == f.c.sha256)
        .where(f.c.status == "ok")
        .order_by(f.c.path, v.c.detector)
    )
    if where.label:
        query = query.where(v.c.label == where.label)
    if where.detector:
        query = query.where(v.c.detector == where.detector)
    if where.min_score is not None:
        query = query.where(v.c.score >= where.min_score)
    if where.path_glob:
        query = query.where(f.c.path.like(glob_to_like(where.path_glob), escape="\\"))
    if where.since:
        query = query.where(v.c.scanned_at >= where.since)
    if where.limit:
        query = query.limit(where.limit)
    with db.read() as conn:
        rows = [dict(row._mapping) for row in conn.execute(query)]
        verdict = _overall_by_sha(conn, {row["sha256"] for row in rows})
    for row in rows:
        row["scanned_at"] = row["scanned_at"].isoformat(timespec="seconds")
        row["overall"] = verdict[row["sha256"]].label
    return rows


def find_image(db: Database, ref: str) -> str | None:
    """The sha256 of the image at path `ref`, or whose sha256 starts with `ref` (unique)."""
    f, i = tables.files, tables.images
    with db.read() as conn:
        sha = conn.execute(select(f.c.sha256).where(f.c.path == ref)).scalar()
        if sha:
            return sha
        if len(ref) >= 6 and all(c in "0123456789abcdef" for c in ref.lower()):
            query = select(i.c.sha256).where(i.c.sha256.like(ref.lower() + "%")).limit(2)
            matches = conn.execute(query).scalars().all()
            if len(matches) == 1:
                return matches[0]
    return None


def image_report(db: Database, sha: str) -> dict | None:
    """Everything known about one image: metadata, paths, verdicts, overall verdict, ELA PNG."""
    i, f, v, e = tables.images, tables.files, tables.verdicts, tables.ela_images
    with db.read() as conn:
        image = conn.execute(select(i).where(i.c.sha256 == sha)).first()
        if image is None:
            return None
        paths = conn.execute(select(f.c.path).where(f.c.sha256 == sha).order_by(f.c.path))
        verdict_rows = conn.execute(select(v).where(v.c.sha256 == sha).order_by(v.c.detector))
        ela = conn.execute(select(e).where(e.c.sha256 == sha)).first()
        report = dict(image._mapping)
        report["paths"] = list(paths.scalars())
        report["verdicts"] = []
        for row in verdict_rows:
            item = dict(row._mapping)
            item["details"] = json.loads(item["details"]) if item["details"] else None
            report["verdicts"].append(item)
    triples = [(r["detector"], r["label"], r["score"]) for r in report["verdicts"]]
    report["overall"] = overall(triples)
    report["ela"] = dict(ela._mapping) if ela else None
    return report


def list_errors(db: Database, kind: str | None = None, limit: int | None = None) -> list[dict]:
    e = tables.errors
    query = select(e).order_by(e.c.path, e.c.detector)
    if kind:
        query = query.where(e.c.kind == kind)
    if limit:
        query = query.limit(limit)
    with db.read() as conn:
        rows = [dict(row._mapping) for row in conn.execute(query)]
    for row in rows:
        row["at"] = row["at"].isoformat(timespec="seconds")
    return rows


def status(db: Database) -> dict:
    """Totals (images, files, verdicts per label, errors, last scan) and the watch daemons."""
    i, f, v, e, w = tables.images, tables.files, tables.verdicts, tables.errors, tables.watchers
    with db.read() as conn:
        labels = dict(conn.execute(select(v.c.label, func.count()).group_by(v.c.label)).all())
        last = conn.execute(select(func.max(f.c.scanned_at))).scalar()
        watchers = [dict(r._mapping) for r in conn.execute(select(w).order_by(w.c.started_at))]
        return {
            "images": conn.execute(select(func.count()).select_from(i)).scalar(),
            "files": conn.execute(select(func.count()).select_from(f)).scalar(),
            "verdicts": labels,
            "errors": conn.execute(select(func.count()).select_from(e)).scalar(),
            "last_scan_at": last,
            "watchers": watchers,
        }
