"""`scanner show IMAGE --out FILE.png`: one picture of one image: the photo, its ELA and each
heatmap overlay (with the evidence boxes drawn) side by side, the verdicts written under."""

from __future__ import annotations

from PIL import Image

from scanner.report import pictures

SIDE = 480  # panels' longest side


def sheet_of(report: dict, shown: list[dict]) -> Image.Image:
    """`report` as queries.image_report gives it; `shown`: the verdicts to draw and list."""
    size = (int(report["width"]), int(report["height"]))
    base, found = pictures.base_picture(report["paths"], size, SIDE)
    caption = "photo" if found else "photo (file not found)"
    panels = [(base, caption)]
    if report.get("ela"):
        ela, gain = pictures.ela_picture(report["ela"]["png"], base.size)
        panels.append((ela, f"ELA, brightened x{gain:.1f}"))
    for verdict in shown:
        boxes = pictures.evidence_boxes(verdict.get("details"))
        if verdict.get("heatmap_png") or boxes:
            drawn = pictures.overlay(base, verdict.get("heatmap_png"))
            panels.append((pictures.draw_boxes(drawn, boxes, size), verdict["detector"]))
    overall = report["overall"]
    lines = [
        f"{report['paths'][0] if report['paths'] else report['sha256']}",
        f"overall: {overall.label}"
        + (f" (highest P(fake) {overall.score:.3f})" if overall.score is not None else ""),
    ]
    for verdict in shown:
        score = "" if verdict["score"] is None else f" {verdict['score']:.3f}"
        threshold = "" if verdict["threshold"] is None else f" / {verdict['threshold']:.3f}"
        reason = f": {verdict['reason']}" if verdict.get("reason") else ""
        lines.append(f"{verdict['detector']}: {verdict['label']}{score}{threshold}{reason}")
    if any(verdict.get("heatmap_png") for verdict in shown):
        legend = pictures.legend(base.width, 10)
        panels[0] = (_with_legend(base, legend), caption + " | heatmap scale below: 0 to 1")
    return pictures.sheet(panels, lines)


def _with_legend(picture: Image.Image, legend: Image.Image) -> Image.Image:
    out = Image.new("RGB", (picture.width, picture.height + legend.height + 4), (255, 255, 255))
    out.paste(picture, (0, 0))
    out.paste(legend, (0, picture.height + 4))
    return out
