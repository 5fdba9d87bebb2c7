"""Reading results back: images with their overall verdict, verdicts, one image, errors, status.

The overall verdict counts the detectors in use (see scanner/verdict.py): the names a caller
passes, else the database's default set (detectors table, enabled_by_default).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from scanner.paths import to_text
from scanner.store import tables
from scanner.store.database import Database, iso
from scanner.verdict import Overall, overall


@dataclass
class ResultFilter:
    label: str | None = None  # per-detector label (verdict rows only)
    overall: str | None = None  # overall verdict
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


def default_detectors(db: Database) -> set[str]:
    """The detectors whose verdicts vote when none are named: on by default at their last scan."""
    d = tables.detectors
    with db.read() as conn:
        return set(conn.execute(select(d.c.name).where(d.c.enabled_by_default)).scalars())


def known_detectors(db: Database) -> set[str]:
    """Every detector this database has a record or a verdict of."""
    d, v = tables.detectors, tables.verdicts
    with db.read() as conn:
        names = set(conn.execute(select(d.c.name)).scalars())
        return names | set(conn.execute(select(v.c.detector).distinct()).scalars())


def _verdicts_by_sha(conn, shas: Collection[str]) -> dict[str, list[tuple]]:
    v = tables.verdicts
    found: dict[str, list] = {sha: [] for sha in shas}
    sha_list = sorted(shas)
    for start in range(0, len(sha_list), 500):
        query = select(v.c.sha256, v.c.detector, v.c.label, v.c.score)
        for row in conn.execute(query.where(v.c.sha256.in_(sha_list[start : start + 500]))):
            found[row.sha256].append((row.detector, row.label, row.score))
    return found


def _errors_by_path(conn, paths: Collection[str]) -> dict[str, list[dict]]:
    """path -> [{detector, kind, message}, ...] (detector "" for the file itself)."""
    e = tables.errors
    found: dict[str, list[dict]] = {}
    path_list = sorted(paths)
    for start in range(0, len(path_list), 500):
        query = select(e.c.path, e.c.detector, e.c.kind, e.c.message).order_by(e.c.detector)
        for row in conn.execute(query.where(e.c.path.in_(path_list[start : start + 500]))):
            error = {"detector": row.detector, "kind": row.kind, "message": row.message}
            found.setdefault(row.path, []).append(error)
    return found


def _files(where: ResultFilter):
    f = tables.files
    query = select(f.c.path, f.c.sha256, f.c.scanned_at, f.c.status)
    if where.path_glob:
        query = query.where(f.c.path.like(glob_to_like(to_text(where.path_glob)), escape="\\"))
    if where.since:
        query = query.where(f.c.scanned_at >= where.since)
    return query.order_by(f.c.path)


def images(db: Database, where: ResultFilter, in_use: Collection[str] | None = None) -> list[dict]:
    """One row per scanned path: its overall verdict (by the detectors `in_use`, default set if
    None), the highest score, which detectors flagged it, which could judge it, and its error
    rows (a damaged file, a failed detector). A file that could not be scanned is a row with
    overall `error`."""
    in_use = default_detectors(db) if in_use is None else set(in_use)
    with db.read() as conn:
        files = conn.execute(_files(where)).all()
        verdicts = _verdicts_by_sha(conn, {row.sha256 for row in files if row.sha256})
        errors = _errors_by_path(conn, {row.path for row in files})
    rows = []
    for path, sha, scanned_at, status in files:
        if status == "ok":
            result = overall(verdicts[sha], in_use)
        else:
            result = Overall("error", None, (), ())
        if where.overall and result.label != where.overall:
            continue
        if where.min_score is not None and (result.score is None or result.score < where.min_score):
            continue
        rows.append(
            {
                "path": path,
                "overall": result.label,
                "score": result.score,
                "flagged_by": list(result.flagged_by),
                "checked_by": list(result.checked_by),
                "errors": errors.get(path, []),
                "sha256": sha,
                "scanned_at": iso(scanned_at),
            }
        )
        if where.limit and len(rows) >= where.limit:
            break
    return rows


def verdicts(
    db: Database,
    where: ResultFilter,
    detectors: Collection[str] | None = None,
    in_use: Collection[str] | None = None,
) -> list[dict]:
    """One row per (path, detector) verdict of `detectors` (all when None) matching `where`,
    with the image's overall verdict by the detectors `in_use` (default set if None)."""
    in_use = default_detectors(db) if in_use is None else set(in_use)
    f, v = tables.files, tables.verdicts
    query = (
        select(
            f.c.path,
            v.c.detector,
            v.c.label,
            v.c.score,
            v.c.threshold,
            v.c.reason,
            v.c.detector_version,
            v.c.model_hash,
            v.c.settings,
            v.c.sha256,
            v.c.scanned_at,
        )
        .join(v, v.c.sha256 == f.c.sha256)
        .where(f.c.status == "ok")
        .order_by(f.c.path, v.c.detector)
    )
    if where.label:
        query = query.where(v.c.label == where.label)
    if detectors:
        query = query.where(v.c.detector.in_(sorted(detectors)))
    if where.min_score is not None:
        query = query.where(v.c.score >= where.min_score)
    if where.path_glob:
        query = query.where(f.c.path.like(glob_to_like(to_text(where.path_glob)), escape="\\"))
    if where.since:
        query = query.where(v.c.scanned_at >= where.since)
    with db.read() as conn:
        rows = [dict(row._mapping) for row in conn.execute(query)]
        by_sha = _verdicts_by_sha(conn, {row["sha256"] for row in rows})
    out = []
    for row in rows:
        row["scanned_at"] = iso(row["scanned_at"])
        row["settings"] = json.loads(row["settings"]) if row["settings"] else None
        row["overall"] = overall(by_sha[row["sha256"]], in_use).label
        if where.overall and row["overall"] != where.overall:
            continue
        out.append(row)
        if where.limit and len(out) >= where.limit:
            break
    return out


def find_image(db: Database, ref: str) -> str | None:
    """The sha256 of the image at path `ref`, or whose sha256 starts with `ref` (unique)."""
    f, i = tables.files, tables.images
    with db.read() as conn:
        sha = conn.execute(select(f.c.sha256).where(f.c.path == to_text(ref))).scalar()
        if sha:
            return sha
        if len(ref) >= 6 and all(c in "0123456789abcdef" for c in ref.lower()):
            query = select(i.c.sha256).where(i.c.sha256.like(ref.lower() + "%")).limit(2)
            matches = conn.execute(query).scalars().all()
            if len(matches) == 1:
                return matches[0]
    return None


def file_errors(db: Database, path: str) -> list[dict]:
    """[{detector, kind, message}, ...] recorded for the file at `path` (detector "" for the
    file itself): why a file that has no image row could not be scanned."""
    with db.read() as conn:
        return _errors_by_path(conn, [to_text(path)]).get(to_text(path), [])


def image_report(db: Database, sha: str, in_use: Collection[str] | None = None) -> dict | None:
    """Everything known about one image: metadata, paths, verdicts (each marked in_use or not),
    the overall verdict by the detectors `in_use` (default set if None), and the ELA PNG."""
    in_use = default_detectors(db) if in_use is None else set(in_use)
    i, f, v, e = tables.images, tables.files, tables.verdicts, tables.ela_images
    with db.read() as conn:
        image = conn.execute(select(i).where(i.c.sha256 == sha)).first()
        if image is None:
            return None
        paths = conn.execute(select(f.c.path).where(f.c.sha256 == sha).order_by(f.c.path))
        verdict_rows = conn.execute(select(v).where(v.c.sha256 == sha).order_by(v.c.detector))
        ela = conn.execute(select(e).where(e.c.sha256 == sha)).first()
        report = dict(image._mapping)
        report["first_seen_at"] = iso(report["first_seen_at"])
        report["paths"] = list(paths.scalars())
        report["verdicts"] = []
        for row in verdict_rows:
            item = dict(row._mapping)
            item["details"] = json.loads(item["details"]) if item["details"] else None
            item["settings"] = json.loads(item["settings"]) if item["settings"] else None
            item["scanned_at"] = iso(item["scanned_at"])
            item["in_use"] = item["detector"] in in_use
            report["verdicts"].append(item)
    triples = [(r["detector"], r["label"], r["score"]) for r in report["verdicts"]]
    report["overall"] = overall(triples, in_use)
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
        row["at"] = iso(row["at"])
    return rows


def status(db: Database) -> dict:
    """Totals (images, files, verdicts per label, errors, last scan) and the watch daemons.
    Times are datetimes (UTC); the caller formats them."""
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


def evidence(db: Database, shas: Collection[str]) -> dict[str, dict]:
    """For each image: its size, its verdicts (details parsed, heatmap PNG kept) and its ELA
    PNG: what a report draws. Callers pass a few hundred hashes at a time (the PNGs are big)."""
    i, v, e = tables.images, tables.verdicts, tables.ela_images
    out: dict[str, dict] = {}
    with db.read() as conn:
        chosen = sorted(shas)
        for row in conn.execute(select(i).where(i.c.sha256.in_(chosen))):
            out[row.sha256] = dict(row._mapping) | {"verdicts": [], "ela": None}
        query = select(v).where(v.c.sha256.in_(chosen)).order_by(v.c.sha256, v.c.detector)
        for row in conn.execute(query):
            item = dict(row._mapping)
            item["details"] = json.loads(item["details"]) if item["details"] else None
            item["scanned_at"] = iso(item["scanned_at"])
            out[row.sha256]["verdicts"].append(item)
        for row in conn.execute(select(e.c.sha256, e.c.png).where(e.c.sha256.in_(chosen))):
            out[row.sha256]["ela"] = row.png
    return out


def detector_table(db: Database) -> list[dict]:
    """The detectors the scans ran with (name, version, threshold, on by default)."""
    d = tables.detectors
    with db.read() as conn:
        return [dict(r._mapping) for r in conn.execute(select(d).order_by(d.c.name))]
