// scanner report: filters, paging and cards, from window.SCANNER_REPORT (data.js).
// Every value from the data goes into the page as text (textContent), never as markup.
"use strict";
(function () {
  const data = window.SCANNER_REPORT;
  const PAGE = 48;
  const THUMB = 320; // pictures' longest side (scanner/report/pictures.py THUMB_SIDE)
  const $ = (id) => document.getElementById(id);

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function number(value) {
    return value === null || value === undefined ? "-" : Number(value).toFixed(3);
  }

  function state() {
    const params = new URLSearchParams(location.hash.slice(1));
    return {
      overall: params.get("overall") || "",
      detector: params.get("detector") || "",
      score: params.get("score") || "",
      path: params.get("path") || "",
      page: Math.max(1, parseInt(params.get("page") || "1", 10) || 1),
    };
  }

  function save(current) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(current)) {
      if (value && !(key === "page" && value === 1)) params.set(key, value);
    }
    history.replaceState(null, "", "#" + params.toString());
  }

  function matches(entry, current) {
    if (current.overall && entry.overall !== current.overall) return false;
    if (current.detector && !(entry.flagged_by || []).includes(current.detector)) return false;
    const least = parseFloat(current.score);
    if (!isNaN(least) && !(entry.score !== null && entry.score >= least)) return false;
    if (current.path && !entry.path.toLowerCase().includes(current.path.toLowerCase())) {
      return false;
    }
    return true;
  }

  function picture(src, caption, entry) {
    const figure = el("figure");
    if (src) {
      const img = el("img");
      img.loading = "lazy";
      img.decoding = "async";
      const scale = THUMB / Math.max(entry.width || 1, entry.height || 1, 1);
      img.width = Math.max(1, Math.round((entry.width || THUMB) * Math.min(1, scale)));
      img.height = Math.max(1, Math.round((entry.height || THUMB) * Math.min(1, scale)));
      img.alt = caption;
      img.src = src;
      figure.append(img);
    } else {
      figure.append(el("div", "missing", "picture not available"));
    }
    figure.append(el("figcaption", null, caption));
    return figure;
  }

  function bar(score, threshold) {
    const outer = el("div", "bar");
    const fill = el("div", "fill");
    fill.style.width = (Math.max(0, Math.min(1, score || 0)) * 100).toFixed(1) + "%";
    outer.append(fill);
    if (threshold !== null && threshold !== undefined) {
      const mark = el("div", "mark");
      mark.style.left = (Math.max(0, Math.min(1, threshold)) * 100).toFixed(1) + "%";
      mark.title = "threshold " + number(threshold);
      outer.append(mark);
    }
    return outer;
  }

  function card(entry) {
    const article = el("article", "card overall-" + entry.overall);
    const head = el("header");
    head.append(el("span", "verdict", entry.overall));
    head.append(el("span", "score", "score " + number(entry.score)));
    if ((entry.flagged_by || []).length) {
      head.append(el("span", "flagged", "flagged by " + entry.flagged_by.join(", ")));
    }
    article.append(head);
    article.append(el("p", "path", entry.path));
    const pictures = el("div", "pictures");
    if (entry.sha256) {
      pictures.append(picture(entry.thumb, "photo", entry));
      if (entry.ela !== undefined) pictures.append(picture(entry.ela, "ELA (brightened)", entry));
      for (const verdict of entry.verdicts || []) {
        if (verdict.overlay) pictures.append(picture(verdict.overlay, verdict.detector, entry));
      }
    }
    article.append(pictures);
    const table = el("table", "verdicts");
    for (const verdict of entry.verdicts || []) {
      const row = el("tr", "label-" + verdict.label + (verdict.in_use ? "" : " not-in-use"));
      row.append(el("td", "detector", verdict.detector + (verdict.in_use ? "" : " (not in use)")));
      row.append(el("td", "label", verdict.label));
      const scoreCell = el("td", "score-cell");
      if (verdict.score !== null && verdict.score !== undefined) {
        scoreCell.append(bar(verdict.score, verdict.threshold));
        scoreCell.append(el("span", "value", number(verdict.score) + " / " + number(verdict.threshold)));
      }
      row.append(scoreCell);
      const why = el("td", "reason");
      if (verdict.reason) why.append(el("div", null, verdict.reason));
      for (const line of verdict.evidence || []) why.append(el("div", "evidence", line));
      row.append(why);
      table.append(row);
    }
    article.append(table);
    for (const error of entry.errors || []) article.append(el("p", "error", error));
    const facts = [];
    if (entry.sha256) facts.push("sha256 " + entry.sha256);
    if (entry.format) facts.push(entry.format + " " + entry.width + "x" + entry.height);
    if (entry.scanned_at) facts.push("scanned " + entry.scanned_at);
    article.append(el("p", "facts", facts.join(" · ")));
    return article;
  }

  function pager(node, page, pages, current) {
    node.replaceChildren();
    const go = (n) => () => {
      current.page = n;
      save(current);
      render();
      window.scrollTo(0, 0);
    };
    const previous = el("button", null, "previous");
    previous.type = "button";
    previous.disabled = page <= 1;
    previous.addEventListener("click", go(page - 1));
    const next = el("button", null, "next");
    next.type = "button";
    next.disabled = page >= pages;
    next.addEventListener("click", go(page + 1));
    node.append(previous, el("span", "page", "page " + page + " of " + pages), next);
  }

  function render() {
    const current = state();
    const chosen = data.entries.filter((entry) => matches(entry, current));
    const pages = Math.max(1, Math.ceil(chosen.length / PAGE));
    const page = Math.min(current.page, pages);
    const cards = $("cards");
    cards.replaceChildren(...chosen.slice((page - 1) * PAGE, page * PAGE).map(card));
    $("shown").textContent = chosen.length + " of " + data.entries.length + " files match";
    pager($("pager-top"), page, pages, current);
    pager($("pager-bottom"), page, pages, current);
  }

  function setUp() {
    if (!data) {
      $("shown").textContent = "data.js is missing or unreadable: write the report again.";
      return;
    }
    for (const label of data.overall_labels) $("f-overall").append(new Option(label, label));
    for (const name of data.detectors) $("f-detector").append(new Option(name, name));
    const current = state();
    $("f-overall").value = current.overall;
    $("f-detector").value = current.detector;
    $("f-score").value = current.score;
    $("f-path").value = current.path;
    const changed = () => {
      save({
        overall: $("f-overall").value,
        detector: $("f-detector").value,
        score: $("f-score").value,
        path: $("f-path").value,
        page: 1,
      });
      render();
    };
    for (const id of ["f-overall", "f-detector", "f-score", "f-path"]) {
      $(id).addEventListener("input", changed);
    }
    $("filters").addEventListener("submit", (event) => event.preventDefault());
    window.addEventListener("hashchange", render);
    render();
  }

  setUp();
})();
