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
  setText(root, ".counts", j.frames_done + "/" + j.frames_total + " frames done, " + j.frames_failed + " failed, "
          + (j.frames_running || 0) + " rendering");
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

async function showJob(box, j) {
  const id = box.dataset.job;
  update(box, j);
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
