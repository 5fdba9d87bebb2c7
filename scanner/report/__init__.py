"""`scanner report`: a static HTML report of a results database that opens from disk, with no
server and no network.

    report/index.html        summary (counts, score histograms with thresholds) + the cards
    report/data.js           every file's results as one JSON document the page reads
    report/report.js, .css   the page's own script and style (no inline script: see the CSP)
    report/pictures/         thumbnails, brightened ELA images, heatmap overlays with evidence

Pictures are named after what they show (image hash, detector, a hash of the heatmap and the
boxes drawn), so a later report into the same folder reuses every picture that is still right
and makes only the new ones; pictures no longer used are removed. The page renders one page of
cards at a time, and their pictures load lazily: 20,000 images do not load 60,000 pictures.

data.js is JSON behind one fixed assignment: browsers refuse fetch() and XHR from a page
opened from disk, and a script file is the one way such a page can read a data file.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
from collections.abc import Callable, Collection
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import jinja2

from scanner import __version__
from scanner.output import _plain
from scanner.report import pictures
from scanner.store import Database, queries
from scanner.store.database import utcnow
from scanner.verdict import OVERALL_LABELS

MARKER = ".scanner-report"  # a folder holding this is ours to update
CHUNK = 200  # images whose verdicts, heatmaps and ELA are read from the database at once
BINS = 20


class ReportError(Exception):
    """Why the report could not be written (a message for the user)."""


@dataclass
class Built:
    images: int
    pictures_made: int
    pictures_reused: int
    folder: Path


def _check_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ReportError(f"{out} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise ReportError(f"{out} is not empty and holds no scanner report; give a new folder")


class _Pictures:
    """Writes each picture once; remembers which are in use."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.used: set[str] = set()
        self.made = self.reused = 0

    def get(self, name: str, make: Callable[[], bytes | None]) -> str | None:
        relative = f"pictures/{name[:2]}/{name}"
        target = self.folder / relative
        if target.exists():
            self.reused += 1
        else:
            data = make()
            if data is None:
                return None
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            self.made += 1
        self.used.add(relative)
        return relative

    def prune(self) -> None:
        root = self.folder / "pictures"
        for path in root.glob("*/*") if root.is_dir() else []:
            if path.relative_to(self.folder).as_posix() not in self.used:
                path.unlink()


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else part.encode())
        h.update(b"\0")
    return h.hexdigest()[:12]


def _evidence_text(details: dict | None) -> list[str]:
    """A verdict's details as lines of text (findings, marks, manifests), never markup."""
    if not isinstance(details, dict):
        return []
    lines = []
    for finding in details.get("findings") or []:
        if isinstance(finding, dict):
            lines.append(f"{finding.get('rule')}: {finding.get('message')}")
    for mark in details.get("generator_marks") or []:
        lines.append(f"mark: {mark}")
    for manifest in details.get("manifests") or []:
        if isinstance(manifest, dict):
            who = manifest.get("generator") or manifest.get("signed_by") or "?"
            kinds = ", ".join(map(str, manifest.get("source_types") or [])) or "no source type"
            lines.append(f"Content Credentials: {who} ({kinds})")
    for key, value in details.items():
        if key not in ("findings", "generator_marks", "manifests", "faces", "regions"):
            text = json.dumps(_plain(value), default=str)
            lines.append(f"{key}: {text if len(text) <= 160 else text[:157] + '...'}")
    return lines[:20]


def _card_pictures(store: _Pictures, sha: str, paths: list[str], info: dict, in_use) -> dict:
    """The thumbnail, ELA and overlays of one image, made when missing."""
    size = (int(info["width"]), int(info["height"]))

    @functools.cache  # decoded only if some picture of this image is missing, and once
    def base() -> tuple[pictures.Image.Image, bool]:
        return pictures.base_picture(paths, size)

    def photo() -> pictures.Image.Image:
        return base()[0]

    def photo_bytes() -> bytes | None:
        picture, found = base()
        return pictures.to_bytes(picture) if found else None

    out: dict = {"thumb": store.get(f"{sha}.photo.jpg", photo_bytes), "overlays": {}}
    if info["ela"]:
        ela_name = f"{sha}.ela.{_digest(info['ela'])}.jpg"
        out["ela"] = store.get(
            ela_name, lambda: pictures.to_bytes(pictures.ela_picture(info["ela"], photo().size)[0])
        )
    for verdict in info["verdicts"]:
        if verdict["detector"] not in in_use:  # listed as text, greyed: no picture each
            continue
        boxes = pictures.evidence_boxes(verdict["details"])
        heatmap = verdict["heatmap_png"]
        if heatmap and not pictures.marks_anything(heatmap):
            heatmap = None  # all zero: an overlay would only repeat the photo
        if not heatmap and not boxes:
            continue
        key = _digest(heatmap or b"", json.dumps(boxes), verdict["detector_version"])
        name = f"{sha}.{_digest(verdict['detector'])}.{key}.jpg"

        def make(heatmap=heatmap, boxes=boxes) -> bytes:
            drawn = pictures.draw_boxes(pictures.overlay(photo(), heatmap), boxes, size)
            return pictures.to_bytes(drawn)

        out["overlays"][verdict["detector"]] = store.get(name, make)
    return out


def _histograms(scores: dict[str, list[float]], thresholds: dict[str, float | None]) -> list:
    out = []
    for name in sorted(scores):
        counts = [0] * BINS
        for s in scores[name]:
            counts[min(BINS - 1, max(0, int(s * BINS)))] += 1
        out.append(
            {"detector": name, "counts": counts, "top": max(counts) or 1,
             "threshold": thresholds.get(name), "n": len(scores[name])}
        )  # fmt: skip
    return out


def build(
    db: Database,
    out: Path,
    in_use: Collection[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Built:
    """Write (or update) the report of everything in `db` into the folder `out`."""
    _check_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by scanner report; safe to delete with the folder\n")
    in_use = queries.default_detectors(db) if in_use is None else set(in_use)
    rows = queries.images(db, queries.ResultFilter(), in_use)
    detectors = {d["name"]: d for d in queries.detector_table(db)}
    store = _Pictures(out)
    by_sha: dict[str, list[dict]] = {}
    for row in rows:
        if row["sha256"]:
            by_sha.setdefault(row["sha256"], []).append(row)
    cards, scores, labels = {}, {}, {}
    shas = sorted(by_sha)
    for start in range(0, len(shas), CHUNK):
        for sha, info in queries.evidence(db, shas[start : start + CHUNK]).items():
            paths = [r["path"] for r in by_sha[sha]]
            drawn = _card_pictures(store, sha, paths, info, in_use)
            verdicts = []
            for v in info["verdicts"]:
                verdicts.append(
                    {
                        "detector": v["detector"],
                        "version": v["detector_version"],
                        "label": v["label"],
                        "score": v["score"],
                        "threshold": v["threshold"],
                        "reason": v["reason"],
                        "in_use": v["detector"] in in_use,
                        "overlay": drawn["overlays"].get(v["detector"]),
                        "evidence": _evidence_text(v["details"]),
                    }
                )
                if v["score"] is not None:
                    scores.setdefault(v["detector"], []).append(float(v["score"]))
                labels.setdefault(v["detector"], {}).setdefault(v["label"], 0)
                labels[v["detector"]][v["label"]] += 1
            cards[sha] = {
                "format": info["format"],
                "width": info["width"],
                "height": info["height"],
                "bytes": info["size_bytes"],
                "thumb": drawn["thumb"],
                "ela": drawn.get("ela"),
                "verdicts": verdicts,
            }
        if progress:
            progress(min(start + CHUNK, len(shas)), len(shas))
    entries = []
    for row in rows:
        card = cards.get(row["sha256"] or "", {})
        entries.append(
            {
                "path": row["path"],
                "sha256": row["sha256"],
                "scanned_at": row["scanned_at"],
                "overall": row["overall"],
                "score": row["score"],
                "flagged_by": row["flagged_by"],
                "errors": [f"{e['kind']}: {e['message']}" for e in row["errors"]],
                **card,
            }
        )
    rank = {label: n for n, label in enumerate(OVERALL_LABELS)}
    entries.sort(key=lambda e: (rank.get(e["overall"], 9), -(e["score"] or 0.0), e["path"]))
    _write_page(out, entries, detectors, scores, labels, in_use)
    store.prune()
    return Built(len(entries), store.made, store.reused, out)


def _write_page(out, entries, detectors, scores, labels, in_use) -> None:
    thresholds = {name: d.get("threshold") for name, d in detectors.items()}
    counts = {label: sum(1 for e in entries if e["overall"] == label) for label in OVERALL_LABELS}
    names = sorted(set(labels) | set(detectors))
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("scanner.report", "templates"),
        autoescape=True,  # every value in the page is escaped; the data file is JSON
        undefined=jinja2.StrictUndefined,
    )
    page = environment.get_template("index.html").render(
        version=__version__,
        made_at=utcnow().strftime("%Y-%m-%d %H:%M UTC"),
        total=len(entries),
        counts=counts,
        detectors=[
            {
                "name": n,
                "in_use": n in in_use,
                "threshold": thresholds.get(n),
                "labels": labels.get(n, {}),
            }
            for n in names
        ],
        histograms=_histograms(scores, thresholds),
        bins=BINS,
    )
    (out / "index.html").write_text(page, encoding="utf-8")
    document = {"entries": entries, "detectors": names, "overall_labels": list(OVERALL_LABELS)}
    # JSON escapes nothing that matters inside a script file, but "</" could end a <script>
    # element if this were ever inlined: escape it anyway, and every non-ASCII character.
    text = json.dumps(_plain(document), ensure_ascii=True).replace("</", "<\\/")
    (out / "data.js").write_text(f"window.SCANNER_REPORT = {text};\n", encoding="utf-8")
    static = resources.files("scanner.report") / "static"
    for name in ("report.js", "report.css"):
        with resources.as_file(static / name) as source:
            shutil.copyfile(source, out / name)
