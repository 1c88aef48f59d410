// Live updates of the jobs page and a job's page: pushed by the server as events (EventSource on GET /api/stream/jobs,
// /api/stream/jobs/ID: the JSON of GET /api/jobs, /api/jobs/ID, each time it changes), or, when the browser or the
// server has no stream for the page (refused: too many open; ended: signed out), by polling that JSON. The page's live
// box says which in data-feed: "events" or "poll".
// Every value from the API is set as text (textContent) or as an attribute: never parsed as markup.
"use strict";

function duration(s) {
  if (s === null || s === undefined) return "?";
  s = Math.round(s);
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
  return Math.floor(s / 3600) + "h" + String(Math.floor((s % 3600) / 60)).padStart(2, "0") + "m";
}

function clock(t) { return new Date(t * 1000).toTimeString().slice(0, 8); }

function etaText(j) {  // as the page's eta_text
  if (j.state === "queued" || j.state === "running") {
    let text = "ETA " + duration(j.eta_seconds);
    if (j.eta_at) text += " (at " + clock(j.eta_at) + ")";
    else if (j.stalled) text += " (no render node is taking its batches)";
    return text;
  }
  if (j.state === "done" && j.finished) return "finished at " + clock(j.finished);
  return j.state;
}

function prepassText(p) {  // as JobView's Prepass.text (`httpov status`)
  if (!p) return "";
  const more = [];
  if (p.running) more.push(p.running + " rendering");
  if (p.failed) more.push(p.failed + " failed");
  return "pre-pass: " + p.kind + " " + p.done + "/" + p.total + (more.length ? " (" + more.join(", ") + ")" : "");
}

function setText(root, selector, text) {
  const el = root.querySelector(selector);
  if (el && el.textContent !== text) el.textContent = text;
}

function update(root, j) {
  const total = Math.max(1, j.frames_total);
  const done = 100 * j.frames_done / total, failed = 100 * j.frames_failed / total;
  const run = Math.max(0, Math.min(100 - done - failed, 100 * (j.frames_running || 0) / total));
  root.querySelector(".bar .done").style.width = done.toFixed(2) + "%";
  root.querySelector(".bar .failed").style.width = failed.toFixed(2) + "%";
  root.querySelector(".bar .run").style.width = run.toFixed(2) + "%";
  // povray's row progress of the running frames (a 2-hour frame 36% rendered): the job's share rendered so far
  const rendering = Math.min(j.frames_rendering || 0, j.frames_running || 0);
  setText(root, ".counts", j.frames_done + "/" + j.frames_total + " frames done, " + j.frames_failed + " failed, "
          + (j.frames_running || 0) + " rendering"
          + (rendering ? "; " + Math.floor(100 * (j.frames_done + rendering) / total) + "% rendered" : ""));
  setText(root, ".rate", (j.rate_recent || 0).toFixed(2) + " frames/s");
  setText(root, ".eta", etaText(j));
  setText(root, ".batches", j.batches_done + "/" + j.batches_total);
  setText(root, ".prepass", prepassText(j.prepass));
  setText(root, ".notes", (j.notes || []).join(" · "));
  setText(root, ".priority", "priority " + j.priority);  // a job card's (set-priority changes it)
  const state = root.querySelector(".state");
  if (state) { state.textContent = j.state; state.className = "state " + j.state; }
}

async function getJSON(url) {
  const response = await fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}});
  if (!response.ok) throw new Error(url + ": " + response.status);
  return response.json();
}

function jobsQuery(box) {
  const query = new URLSearchParams();
  if (box.dataset.state) query.set("state", box.dataset.state);
  if (box.dataset.user) query.set("user", box.dataset.user);
  if (box.dataset.limit) query.set("limit", box.dataset.limit);  // the jobs of this page only
  if (box.dataset.skip && box.dataset.skip !== "0") query.set("skip", box.dataset.skip);
  return query.toString() ? "?" + query.toString() : "";
}

async function showJobs(box, jobs) {
  const ids = new Set(jobs.map((j) => j.id));
  const shown = new Set(Array.from(box.querySelectorAll("[data-job]"), (el) => el.dataset.job));
  if (ids.size !== shown.size || [...ids].some((id) => !shown.has(id))) {
    location.reload();  // a job came or went: the server lays out the cards
    return;
  }
  for (const j of jobs) {
    const card = document.getElementById("job-" + j.id);
    if (j.state === "failed" && !card.querySelector(".why")) {
      location.reload();  // it failed meanwhile: the server writes why on its card
      return;
    }
    update(card, j);
    if (String(j.frames_done) !== card.dataset.frames && j.frames_done && card.dataset.pictures) {
      card.dataset.frames = String(j.frames_done);
      const link = card.querySelector(".thumbbox");
      let img = link.querySelector("img");
      if (!img) {
        link.replaceChildren();
        img = document.createElement("img");
        img.className = "thumb";
        img.alt = "latest frame of " + j.name;
        link.appendChild(img);
      }
      img.src = "/thumb/" + encodeURIComponent(j.id) + ".png?n=" + j.frames_done;
    }
  }
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
}

function confirmCounts(j) {  // as httpov.web.confirm.counts: the numbers a confirmation names
  const running = Object.keys(j.batches_running || {}).length;
  const left = j.batches_total - j.batches_done - (j.batches_failed || []).length - running;
  return {frames_done: j.frames_done, running: running, left: Math.max(0, left)};
}

const SVG = "http://www.w3.org/2000/svg";

function svg(parent, tag, attributes, text) {  // an SVG element: attributes and text, never markup
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes || {})) el.setAttribute(name, String(value));
  if (text !== undefined) {
    const title = document.createElementNS(SVG, "title");
    title.textContent = text;
    el.appendChild(title);
  }
  parent.appendChild(el);
  return el;
}

function drawTimeline(section, c) {  // as templates/charts.html's chart(): the geometry of GET /api/jobs/ID/timeline
  const figure = document.createElement("figure");
  figure.className = "chart";
  figure.id = "timeline";
  const root = svg(figure, "svg", {role: "img", "aria-labelledby": "timeline-title timeline-desc", width: c.width,
    height: c.height, viewBox: "0 0 " + c.width + " " + c.height, "font-family": "sans-serif", "font-size": 11});
  svg(root, "title", {id: "timeline-title"}).textContent = section.dataset.title;
  svg(root, "desc", {id: "timeline-desc"}).textContent = c.summary;
  for (const lane of c.lanes) {
    const g = svg(root, "g", {class: "lane", "data-node": lane.name}, lane.note || lane.name);
    svg(g, "rect", {x: c.left, y: lane.y, width: c.width - c.left, height: 22, fill: "#e4e4e4"});
    svg(g, "text", {x: c.left - 6, y: lane.y + 15, "text-anchor": "end", fill: "#333"}).textContent = lane.label;
    for (const b of lane.bars) {
      svg(g, "rect", {class: b.kind, x: b.x, y: lane.y + 2, width: b.width, height: 18,
        fill: b.kind === "done" ? "#3a7d44" : "#6fa8dc"}, b.title);
    }
    for (const m of lane.marks) {
      const failed = m.kind === "failed";
      svg(g, "rect", {class: "mark " + m.kind, "data-count": m.count, x: m.x - 1.5, y: failed ? lane.y : lane.y + 11,
        width: 3, height: failed ? 22 : 11, fill: failed ? "#c62828" : "#ef8f00", stroke: "#fff",
        "stroke-width": 0.5}, m.title);
    }
  }
  svg(root, "line", {x1: c.left, y1: c.axis_y, x2: c.width, y2: c.axis_y, stroke: "#999"});
  c.ticks.forEach(([x, label], i) => {
    const anchor = i === 0 ? "start" : (i === c.ticks.length - 1 ? "end" : "middle");
    svg(root, "text", {x: x, y: c.height - 4, "text-anchor": anchor, fill: "#555"}).textContent = label;
  });
  const caption = document.createElement("figcaption");
  caption.className = "muted";
  caption.textContent = c.summary + " (" + section.dataset.legend + ")";
  figure.appendChild(caption);
  const old = document.getElementById("timeline");
  if (old) old.replaceWith(figure); else section.appendChild(figure);
  section.hidden = false;
}

// The timeline is drawn again when the job's batches done, failed or running change: at most every TIMELINE_EVERY ms
// (a change meanwhile is drawn when that time is up; the job's end at once), one GET of its geometry each time.
const TIMELINE_EVERY = 5000;
const ENDED = ["done", "failed", "cancelled"];
const timeline = {seen: null, at: 0, timer: null};

function followTimeline(id, j) {
  const section = document.getElementById("timeline-section");
  const seen = [j.batches_done, (j.failed || []).length, Object.keys(j.batches_running || {}).join(), j.state].join("|");
  if (!section || seen === timeline.seen) return;
  if (timeline.seen === null) { timeline.seen = seen; return; }  // as the page was drawn
  timeline.seen = seen;
  const ended = ENDED.includes(j.state);
  if (timeline.timer && !ended) return;  // drawn when the time is up
  clearTimeout(timeline.timer);
  const draw = async () => {
    timeline.timer = null;
    timeline.at = Date.now();
    try {
      const c = await getJSON("/api/jobs/" + encodeURIComponent(id) + "/timeline");
      if (c) drawTimeline(section, c);
    } catch (e) { /* the next change tries again */ }
  };
  timeline.timer = setTimeout(draw, ended ? 0 : Math.max(0, timeline.at + TIMELINE_EVERY - Date.now()));
}

async function showJob(box, j) {
  const id = box.dataset.job;
  update(box, j);
  followTimeline(id, j);
  const numbers = confirmCounts(j);
  for (const el of document.querySelectorAll("dialog [data-count]")) {
    const text = String(numbers[el.dataset.count]);
    if (el.textContent !== text) el.textContent = text;
  }
  const nodes = document.getElementById("nodes");
  const rows = Object.entries(j.nodes || {}).map(([node, n]) => {
    const tr = document.createElement("tr");
    [node, n.batches_done, n.work || n.frames_done, (n.running || []).join(", ") || "-"].forEach((v) => cell(tr, String(v)));
    return tr;
  });
  nodes.replaceChildren(...rows);
  if (String(j.frames_done) !== box.dataset.frames && box.dataset.pictures) {
    box.dataset.frames = String(j.frames_done);
    const page = document.getElementById("frames").dataset.page || "1";  // this page's rendered frames only
    const frames = await getJSON("/api/jobs/" + encodeURIComponent(id) + "/frames?page=" + encodeURIComponent(page));
    for (const n of frames) {  // only this page's frames, each in its own place: the grid stays in frame order
      const slot = document.getElementById("frame-" + n);
      if (!slot || !slot.classList.contains("pending")) continue;
      const a = document.createElement("a");
      a.className = "frame";
      a.id = "frame-" + n;
      a.href = "/jobs/" + encodeURIComponent(id) + "/frames/" + n;  // the frame viewer
      const img = document.createElement("img");
      img.loading = "lazy";
      img.width = 160;
      img.height = 120;
      img.src = "/jobs/" + encodeURIComponent(id) + "/thumbs/" + n + ".png";
      img.alt = "frame " + n;
      const label = document.createElement("span");
      label.textContent = String(n);
      a.append(img, label);
      slot.replaceWith(a);
    }
  }
  if (j.state !== box.dataset.state) {
    box.dataset.state = j.state;
    const failures = document.getElementById("failures");
    failures.replaceChildren(...(j.failed || []).map((f) => {
      const div = document.createElement("div");
      div.className = "failure";
      const what = document.createElement("b");
      what.textContent = f.label;
      const error = document.createElement("span");
      error.className = "error";
      error.textContent = f.error;
      const log = document.createElement("pre");
      log.className = "log";
      log.textContent = (f.lines || []).join("\n");
      const ended = j.state === "done" || j.state === "failed" || j.state === "cancelled";
      div.append(what, " on " + f.node + (f.final || ended ? "" : " (will retry)") + ": ", error, log);
      return div;
    }));
  }
}

// A destructive button (data-dialog) opens its confirmation as a modal <dialog> in the page: focus on the button that
// acts, Escape or "Keep the job" closes it and gives the focus back. Without script, or once the job's state has
// changed since the page was drawn (the dialog would say what no longer holds), the button's GET form opens the
// server's confirmation page instead.
function confirmDialogs() {
  const box = document.getElementById("job");
  for (const opener of document.querySelectorAll("[data-dialog]")) {
    const dialog = document.getElementById(opener.dataset.dialog);
    if (!dialog || typeof dialog.showModal !== "function") continue;
    opener.addEventListener("click", (event) => {
      if (box && box.dataset.state !== dialog.dataset.state) return;
      event.preventDefault();
      dialog.showModal();
      (dialog.querySelector(".do") || dialog.querySelector(".keep")).focus();
    });
    dialog.querySelector(".keep").addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => opener.focus());
  }
}

// The page's news as events while the server streams them; polling every `every` ms from the moment it does not
// (no EventSource, no stream to spare when the page was drawn, the stream refused or ended for good). One update at
// a time, in the order they came.
function follow(box, stream, poll, show, name, every) {
  let queue = Promise.resolve();
  const later = (data) => { queue = queue.then(() => show(box, data)).catch(() => { /* the next one mends it */ }); };
  let polling = false;
  const fallBack = () => {
    if (polling) return;
    polling = true;
    box.dataset.feed = "poll";
    const tick = async () => {
      try { await show(box, await getJSON(poll)); } catch (e) { /* an outage or a restart: the next tick tries again */ }
      setTimeout(tick, every);
    };
    setTimeout(tick, every);
  };
  // no EventSource, or the server said when it drew the page that it has no stream to spare (HTTPOV_WEB_STREAMS=0,
  // or its bound reached): polling from the start, with no refused request for the console to show as an error
  if (typeof EventSource !== "function" || document.body.dataset.streams === "off") { fallBack(); return; }
  const source = new EventSource(stream);
  source.addEventListener(name, (e) => { box.dataset.feed = "events"; later(JSON.parse(e.data)); });
  source.addEventListener("end", () => { source.close(); fallBack(); });  // signed out: polling says so
  source.addEventListener("error", () => {  // a stream that ended reconnects by itself; a refused one is closed
    if (source.readyState === EventSource.CLOSED) fallBack();
  });
}

function start() {
  confirmDialogs();
  for (const part of document.querySelectorAll(".bar [data-w]")) part.style.width = part.dataset.w + "%";
  const every = 1000 * Math.max(1, Number(document.body.dataset.refresh) || 3);
  const jobs = document.querySelector("[data-live=jobs]");
  const job = document.querySelector("[data-live=job]");
  if (jobs) {
    const query = jobsQuery(jobs);
    follow(jobs, "/api/stream/jobs" + query, "/api/jobs" + query, showJobs, "jobs", every);
  } else if (job) {
    const id = encodeURIComponent(job.dataset.job);
    follow(job, "/api/stream/jobs/" + id, "/api/jobs/" + id, showJob, "job", every);
  }
}

document.addEventListener("DOMContentLoaded", start);
