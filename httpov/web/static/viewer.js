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
  const first = Number(box.dataset.first), last = Number(box.dataset.last);
  let wanted = Number(box.dataset.frame);  // the frame last asked for: keys pressed quickly step from it

  function actual() { return picture.classList.contains("actual"); }

  function pageUrl(frame) {
    return "/jobs/" + encodeURIComponent(job) + "/frames/" + frame + (actual() ? "?size=actual" : "");
  }

  function relink(frame) {  // previous/next links around `frame`, dead ones at the job's first or last frame
    for (const [id, to] of [["prev", frame - 1], ["next", frame + 1]]) {
      const el = document.getElementById(id);
      if (to < first || to > last) {
        el.removeAttribute("href");
        el.setAttribute("aria-disabled", "true");
      } else {
        el.href = pageUrl(to);
        el.removeAttribute("aria-disabled");
      }
    }
  }

  function setZoom(toActual) {
    picture.classList.toggle("actual", toActual);
    picture.classList.toggle("fit", !toActual);
    zoom.textContent = toActual ? "fit" : "1:1";
    const frame = Number(box.dataset.frame);
    zoom.href = "/jobs/" + encodeURIComponent(job) + "/frames/" + frame + (toActual ? "" : "?size=actual");
    relink(frame);
    place();
    history.replaceState({frame: frame}, "", pageUrl(frame));
  }

  // a sliced frame's slices over the picture where it is drawn (fit letterboxes it; 1:1 is its pixels)
  function place() {
    const map = document.getElementById("slices");
    if (!map.children.length || image.hidden || !image.naturalHeight) { map.classList.remove("placed"); return; }
    const w = image.clientWidth, h = image.clientHeight, nw = image.naturalWidth, nh = image.naturalHeight;
    const scale = actual() ? 1 : Math.min(w / nw, h / nh);
    map.style.left = (image.offsetLeft + (w - nw * scale) / 2) + "px";
    map.style.top = (image.offsetTop + (h - nh * scale) / 2) + "px";
    map.style.width = (nw * scale) + "px";
    map.style.height = (nh * scale) + "px";
    for (const band of map.children) {
      const first = Number(band.dataset.first), last = Number(band.dataset.last);
      band.style.top = (100 * (first - 1) / nh) + "%";
      band.style.height = (100 * (last - first + 1) / nh) + "%";
    }
    map.classList.add("placed");
  }

  function slices(parts) {
    const bands = parts.filter((p) => p.rows).map((p) => {
      const band = document.createElement("div");
      band.className = "slice";
      band.dataset.first = String(p.rows[0]);
      band.dataset.last = String(p.rows[1]);
      const label = document.createElement("span");
      label.textContent = "rows " + p.rows[0] + "-" + p.rows[1] + ": " + p.node;
      band.appendChild(label);
      return band;
    });
    document.getElementById("slices").replaceChildren(...bands);
    place();
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
    relink(f.frame);
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
    slices(f.parts);

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
      const f = await response.json();
      if (frame !== wanted) return;  // another frame was asked for meanwhile: its answer shows
      show(f);
      if (push) history.pushState({frame: frame}, "", pageUrl(frame));
    } catch (e) {
      location.href = pageUrl(frame);  // the server's page says what went wrong (signed out, deleted, ...)
    }
  }

  function step(by) {
    const to = wanted + by;
    if (to < first || to > last) return;
    wanted = to;
    go(to, true);
  }

  for (const [id, by] of [["prev", -1], ["next", 1]]) {
    document.getElementById(id).addEventListener("click", (event) => {
      if (event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;  // a new tab: the link
      event.preventDefault();
      step(by);
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
    if (event.key === "ArrowLeft") { event.preventDefault(); step(-1); }
    else if (event.key === "ArrowRight") { event.preventDefault(); step(1); }
    else if (event.key === "f" || event.key === "F") { event.preventDefault(); setZoom(!actual()); }
  });
  window.addEventListener("popstate", (event) => {
    const frame = event.state && event.state.frame;
    if (typeof frame === "number" && frame !== wanted) { wanted = frame; go(frame, false); }
  });
  image.addEventListener("load", place);
  window.addEventListener("resize", place);
  if (image.complete) place();
  history.replaceState({frame: Number(box.dataset.frame)}, "", location.href);
})();
