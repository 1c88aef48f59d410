// The frame viewer (/jobs/ID/frames/N): the arrow keys go to the previous and next frame, F switches between fit and
// 1:1, and both happen in the page (GET /api/jobs/ID/frames/N, history kept). Without script the page's links do the
// same. Every value from the API is set as text or as an attribute: never parsed as markup.
"use strict";

(function () {
  const box = document.getElementById("viewer");
  if (!box) return;
  const job = box.dataset.job;
  const picture = document.getElementById("picture");
  const image = document.getElementById("image");
  const zoom = document.getElementById("zoom");

  function actual() { return picture.classList.contains("actual"); }

  function pageUrl(frame) {
    return "/jobs/" + encodeURIComponent(job) + "/frames/" + frame + (actual() ? "?size=actual" : "");
  }

  function link(el, frame) {  // a previous/next link, or a dead one at the job's first or last frame
    if (frame === null || frame === undefined) {
      el.removeAttribute("href");
      el.setAttribute("aria-disabled", "true");
    } else {
      el.href = pageUrl(frame);
      el.removeAttribute("aria-disabled");
      el.dataset.frame = String(frame);
    }
  }

  function setZoom(toActual) {
    picture.classList.toggle("actual", toActual);
    picture.classList.toggle("fit", !toActual);
    zoom.textContent = toActual ? "fit" : "1:1";
    const frame = Number(box.dataset.frame);
    zoom.href = "/jobs/" + encodeURIComponent(job) + "/frames/" + frame + (toActual ? "" : "?size=actual");
    for (const id of ["prev", "next"]) {
      const el = document.getElementById(id);
      if (el.dataset.frame) link(el, Number(el.dataset.frame));
    }
    history.replaceState({frame: frame}, "", pageUrl(frame));
  }

  function cell(row, text, span) {
    const td = document.createElement("td");
    td.textContent = text;
    if (span) { td.colSpan = span; td.className = "muted"; }
    row.appendChild(td);
  }

  function show(f) {
    box.dataset.frame = String(f.frame);
    document.getElementById("frame-number").textContent = String(f.frame);
    document.title = document.title.replace(/frame \d+$/, "frame " + f.frame);
    const back = document.getElementById("job-link");
    back.href = "/jobs/" + encodeURIComponent(job) + "?page=" + f.grid_page + "#frame-" + f.frame;
    link(document.getElementById("prev"), f.prev);
    link(document.getElementById("next"), f.next);
    const full = document.getElementById("full");
    if (f.rendered) { full.href = f.png; full.removeAttribute("aria-disabled"); }
    else { full.removeAttribute("href"); full.setAttribute("aria-disabled", "true"); }
    image.hidden = !f.rendered;
    if (f.rendered) image.src = f.png; else image.removeAttribute("src");
    image.alt = "frame " + f.frame;
    const missing = document.getElementById("not-rendered");
    missing.hidden = f.rendered;
    missing.textContent = "frame " + f.frame + " is not rendered yet";
    zoom.href = "/jobs/" + encodeURIComponent(job) + "/frames/" + f.frame + (actual() ? "" : "?size=actual");

    const rows = f.parts.map((p) => {
      const tr = document.createElement("tr");
      [p.label, p.rows ? p.rows[0] + "-" + p.rows[1] : "all", p.node, p.time_text, p.finished_text]
        .forEach((v) => cell(tr, v));
      return tr;
    });
    if (!rows.length) {
      const tr = document.createElement("tr");
      cell(tr, "no batch holding this frame is done", 5);
      rows.push(tr);
    }
    document.getElementById("parts").replaceChildren(...rows);

    const logs = [];
    for (const p of f.parts) {
      const h = document.createElement("h3");
      h.textContent = p.label + " on " + p.node;
      if (p.lines_left_out) {
        const more = document.createElement("span");
        more.className = "muted";
        more.textContent = " (last " + p.lines.length + " lines)";
        h.appendChild(more);
      }
      logs.push(h);
      if (p.log_error) {
        const none = document.createElement("p");
        none.className = "muted";
        none.textContent = "no log: " + p.log_error;
        logs.push(none);
      } else {
        const pre = document.createElement("pre");
        pre.className = "povlog";
        pre.textContent = p.lines.map((line) => line + "\n").join("");
        logs.push(pre);
      }
    }
    if (!logs.length) {
      const none = document.createElement("p");
      none.className = "muted";
      none.textContent = "none yet";
      logs.push(none);
    }
    document.getElementById("logs").replaceChildren(...logs);
  }

  async function go(frame, push) {
    const url = "/api/jobs/" + encodeURIComponent(job) + "/frames/" + frame;
    try {
      const response = await fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}});
      if (!response.ok) throw new Error(url + ": " + response.status);
      show(await response.json());
      if (push) history.pushState({frame: frame}, "", pageUrl(frame));
    } catch (e) {
      location.href = pageUrl(frame);  // the server's page says what went wrong (signed out, deleted, ...)
    }
  }

  function step(id) {
    const el = document.getElementById(id);
    if (el.hasAttribute("href")) go(Number(el.dataset.frame), true);
  }

  for (const id of ["prev", "next"]) {
    const el = document.getElementById(id);
    if (el.hasAttribute("href")) el.dataset.frame = String(Number(box.dataset.frame) + (id === "prev" ? -1 : 1));
    el.addEventListener("click", (event) => {
      if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;  // a new tab: the link
      event.preventDefault();
      step(id);
    });
  }
  zoom.addEventListener("click", (event) => {
    if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    setZoom(!actual());
  });
  document.addEventListener("keydown", (event) => {
    if (event.altKey || event.ctrlKey || event.metaKey || event.defaultPrevented) return;
    if (event.target.closest && event.target.closest("input, textarea, select, [contenteditable]")) return;
    if (event.key === "ArrowLeft") { event.preventDefault(); step("prev"); }
    else if (event.key === "ArrowRight") { event.preventDefault(); step("next"); }
    else if (event.key === "f" || event.key === "F") { event.preventDefault(); setZoom(!actual()); }
  });
  window.addEventListener("popstate", (event) => {
    const frame = event.state && event.state.frame;
    if (typeof frame === "number" && frame !== Number(box.dataset.frame)) go(frame, false);
  });
  history.replaceState({frame: Number(box.dataset.frame)}, "", location.href);
})();
