"""Metadata: a rule-based detector that reads what the file says about itself (EXIF, XMP, PNG
text, the EXIF thumbnail) and how it was compressed (JPEG quality from the quantisation tables,
double quantisation in the DCT coefficients). Its findings are in the verdict details; the rules
and their weights are in rules.py and MODEL_CARD.md."""

from __future__ import annotations

from dataclasses import asdict

from scanner.detectors import Detector, Result
from scanner_plugins.metadata.rules import combine, examine


class Metadata(Detector):
    name = "metadata"
    # 1.1.0: generator marks moved to the provenance detector.
    # 1.2.0: thumbnails compared at 16x16, in any turn or mirror, below 0.6; 1.2.1: the
    # left-right mirror really compared (1.2.0 skipped it). 1.2.2: faster (the thumbnail
    # comparison on a reduced copy, only the DCT positions read); the same findings on all
    # 4,196 images of ../shared/data.
    version = "1.2.2"
    needs = frozenset({"bytes", "rgb"})
    # A file whose own metadata says a retouching program saved it (0.4) is flagged for review;
    # weaker signs (developing software, one re-save) need company to cross.
    threshold = 0.4
    description = "EXIF/XMP/thumbnail/JPEG-structure rules; n/a when metadata says nothing."
    batch_size = 64

    def predict(self, batch):
        results = []
        for sample in batch:
            findings = examine(sample.data, sample.rgb)
            details = {"findings": [asdict(f) for f in findings]}
            evidence = [f for f in findings if f.weight > 0]
            from_camera = not any(
                f.rule in ("no-camera-data", "unreadable-metadata") for f in findings
            )
            if evidence or from_camera:
                # A file that names its camera and shows no sign of change is judged real;
                # one that carries neither camera data nor any sign is not judged at all
                # (stripped metadata is the norm on the web, and says nothing either way).
                results.append(
                    Result.from_score(combine(findings), self.threshold, details=details)
                )
            else:
                results.append(
                    Result.not_applicable(
                        "no camera data and no sign of editing in the metadata", details=details
                    )
                )
        return results
