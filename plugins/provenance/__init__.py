"""Provenance: what the file's Content Credentials (C2PA) say about where it came from.

A generator that signs its output (Adobe Firefly, OpenAI's image models, Google's, Microsoft's,
many cameras and editors) writes a manifest store into the file: who signed it, which tool made
it, what was done (actions), and from what (ingredients, each with its own manifest). An IPTC
digital source type of `trainedAlgorithmicMedia` or `compositeWithTrainedAlgorithmicMedia` in
any manifest, the active one or an ingredient's, means the picture is or contains generated
content: labelled fake, whatever the signature's validation says (genuine generator outputs
often fail validation only because their certificate expired or is not on a trust list we
hold). `algorithmicMedia` alone is not AI: IPTC uses it for media made by a formula. A manifest
that records only capture and ordinary edits is history, not fakery. A file whose content no
longer matches its signed hash was changed after it was signed: a finding of its own.

Generators that sign nothing still mark their files: PNG text chunks with the prompt and
settings, the same text in a JPEG's EXIF UserComment, their name as the software, the IPTC
source type in XMP (marks.py), and Stable Diffusion's reference pipelines an invisible
watermark in the pixels (watermark.py). Any of these: fake. Every provenance mark is read here,
and only here.

Read with c2pa-python, offline: no remote manifest is fetched and no certificate's revocation
is checked over the network. No model; the rules are below.
"""

from __future__ import annotations

import dataclasses
import io
import json

from scanner.detectors import Detector, Result
from scanner_plugins.provenance.marks import generator_marks
from scanner_plugins.provenance.watermark import find_watermarks

NOTHING = "no Content Credentials, generator marks or known watermarks"

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
GENERATED = frozenset({"trainedAlgorithmicMedia", "compositeWithTrainedAlgorithmicMedia"})
MIME = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "TIFF": "image/tiff",
    "GIF": "image/gif",
    "HEIF": "image/heif",
    "AVIF": "image/avif",
}
# Scores of the three findings; the threshold is 0.5 (rules, not a fitted model).
SCORE_GENERATED = 0.99
SCORE_MARKED = 0.9  # a generator's mark in the file's metadata or watermark in its pixels
SCORE_CHANGED = 0.8
SCORE_HISTORY = 0.1
# Validation codes about whether the signer is trusted, not about the credentials' integrity:
# generators' certificates are often on no trust list we hold, or expired.
TRUST = ("signingCredential.untrusted", "signingCredential.expired", "signingCredential.ocsp",
         "timeStamp.untrusted", "timeStamp.outsideValidity")  # fmt: skip


def _source_type(value: str) -> str:
    """`trainedAlgorithmicMedia` from the IPTC URL (or a bare code)."""
    return value.rsplit("/", 1)[-1]


def _manifest_summary(label: str, manifest: dict, active: bool) -> dict:
    """What one manifest says: signer, generator, actions and digital source types."""
    actions = []
    for assertion in manifest.get("assertions", []):
        if str(assertion.get("label", "")).startswith("c2pa.actions"):
            actions += (assertion.get("data") or {}).get("actions", [])
    generators = [g.get("name", "") for g in manifest.get("claim_generator_info", [])]
    if manifest.get("claim_generator"):
        generators.append(manifest["claim_generator"])
    signature = manifest.get("signature_info") or {}
    return {
        "manifest": label,
        "active": active,
        "title": manifest.get("title"),
        "generator": ", ".join(g for g in generators if g),
        "signed_by": ", ".join(
            str(v) for v in (signature.get("issuer"), signature.get("common_name")) if v
        ),
        "signed_at": signature.get("time"),
        "actions": [str(a.get("action", "")) for a in actions],
        "source_types": sorted(
            {_source_type(str(a["digitalSourceType"])) for a in actions if "digitalSourceType" in a}
        ),
    }


def judge(store: dict) -> Result:
    """The verdict of a manifest store, as c2pa's Reader gives it in JSON."""
    active = store.get("active_manifest")
    manifests = [
        _manifest_summary(label, manifest, label == active)
        for label, manifest in (store.get("manifests") or {}).items()
    ]
    manifests.sort(key=lambda m: not m["active"])  # the active one first
    codes = sorted({str(s.get("code", "")) for s in store.get("validation_status") or []})
    # dataHash / boxesHash / bmffHash mismatch: the bytes the claim covers have changed.
    changed = any(c.endswith("Hash.mismatch") for c in codes)
    # Any other failure but trust (an assertion that no longer matches its claim, a broken
    # signature, a malformed claim): the credentials were altered or damaged after signing,
    # and what they say cannot be taken as history.
    broken = [c for c in codes if not c.endswith("Hash.mismatch") and not c.startswith(TRUST)]
    generated = [m for m in manifests if GENERATED & set(m["source_types"])]
    details = {
        "manifests": manifests,
        "validation": codes,
        "changed_after_signing": changed,
    }
    if generated:
        where = "its own manifest" if generated[0]["active"] else "an ingredient's manifest"
        who = generated[0]["generator"] or generated[0]["signed_by"] or "an unnamed tool"
        kinds = "/".join(sorted(GENERATED & set(generated[0]["source_types"])))
        return Result(
            label="fake",
            score=SCORE_GENERATED,
            reason=f"Content Credentials: {kinds} in {where} ({who})",
            details=details,
        )
    if changed:
        return Result(
            label="fake",
            score=SCORE_CHANGED,
            reason="Content Credentials no longer match the picture: changed after signing",
            details=details,
        )
    if broken:
        return Result(
            label="fake",
            score=SCORE_CHANGED,
            reason="Content Credentials fail validation (altered or damaged after signing): "
            + ", ".join(broken),
            details=details,
        )
    return Result(
        label="real",
        score=SCORE_HISTORY,
        reason="Content Credentials record capture or edits only",
        details=details,
    )


class Provenance(Detector):
    name = "provenance"
    # 1.1.0: generator marks in the file's metadata (moved here from the metadata detector).
    # 1.2.0: Stable Diffusion's invisible watermarks.
    version = "1.2.0"
    needs = frozenset({"bytes", "rgb"})
    uses_settings = frozenset()
    threshold = 0.5
    description = "Content Credentials (C2PA), generator marks and watermarks: generated, history."
    batch_size = 16

    def load(self) -> None:
        import c2pa

        self._c2pa = c2pa
        settings = c2pa.Settings.from_dict(
            {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
        )
        self._context = c2pa.Context(settings)

    def __getstate__(self) -> dict:
        # The c2pa objects wrap native handles: workers make their own in load().
        return {k: v for k, v in self.__dict__.items() if k not in ("_c2pa", "_context")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.load()

    def read(self, data: bytes, mime: str) -> dict | None:
        """The file's manifest store as JSON, or None when it has none."""
        c2pa = self._c2pa
        try:
            with c2pa.Reader(mime, io.BytesIO(data), context=self._context) as reader:
                return json.loads(reader.json())
        except c2pa.C2paError.ManifestNotFound:
            return None

    def predict(self, batch):
        results = []
        for sample in batch:
            marks = generator_marks(sample.data) + find_watermarks(sample.rgb)
            store, unreadable = None, None
            mime = MIME.get(sample.format)
            # Every manifest store is a JUMBF box labelled "c2pa": a file without those four
            # bytes has none, and most files are answered without parsing them.
            if mime is not None and b"c2pa" in sample.data:
                try:
                    store = self.read(sample.data, mime)
                except self._c2pa.C2paError as error:
                    unreadable = str(error)
            results.append(verdict(store, marks, unreadable))
        return results


def verdict(store: dict | None, marks: list[str], unreadable: str | None) -> Result:
    """One file's verdict from its manifest store (None: none), the generator marks in its
    metadata and, when its manifest store could not be read, why."""
    details = {"generator_marks": marks}
    if store is not None:
        result = judge(store)
        details = result.details | details
        if not marks or result.score >= SCORE_MARKED:
            return dataclasses.replace(result, details=details)
    if marks:
        reason = "made by an image generator: " + "; ".join(marks)
        return Result(label="fake", score=SCORE_MARKED, reason=reason, details=details)
    if unreadable:
        return Result.not_applicable(f"Content Credentials present but unreadable: {unreadable}")
    return Result.not_applicable(NOTHING)
