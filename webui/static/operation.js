// Live progress of any operation (backup, restore, verify, disk format...):
// its detail pushed by server-sent events (polled if the stream fails)
// updates the status, stage, progress, the sub-task table and the log.
// No inline script (CSP 'self').
(function () {
  "use strict";
  const root = document.getElementById("run");
  if (!root) return;
  const api = root.dataset.api;
  const done = new Set(["success", "warning", "failed", "cancelled", "interrupted"]);
  let lastLog = 0;
  document.querySelectorAll("#run-log li").forEach(function (li) {
    lastLog = Math.max(lastLog, Number(li.dataset.id || 0));
  });

  // As xenkeep/units.py: the server renders the first page the same way.
  // A log line's time in the appliance's zone, as units.log_time writes it
  // (the sv-SE locale spells a date and time as "2026-12-02 03:00:01").
  const zoneMeta = document.querySelector('meta[name="appliance-timezone"]');
  const logFormat = new Intl.DateTimeFormat("sv-SE", {
    timeZone: (zoneMeta && zoneMeta.content) || "UTC",
    year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23"
  });

  function logTime(ts) {
    return logFormat.format(new Date(ts * 1000));
  }

  function humanBytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return i === 0 ? n.toFixed(0) + " B" : n.toFixed(1) + " " + units[i];
  }
  function clock(seconds) {
    let s = Math.max(0, Math.round(seconds));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    s %= 60;
    const two = function (v) { return String(v).padStart(2, "0"); };
    return h ? h + ":" + two(m) + ":" + two(s) : m + ":" + two(s);
  }
  function progressCell(t) {
    // A VM's own row has no bytes until its disks are done: leave it blank.
    const td = cell(t.bytes || t.total_bytes ? humanBytes(t.bytes || 0) : "");
    td.className = "progress";
    td.dataset.bytes = String(t.bytes || 0);
    if (t.total_bytes) {
      const pct = Math.min(100, Math.floor((t.bytes || 0) * 100 / t.total_bytes));
      td.textContent += " of " + humanBytes(t.total_bytes) + " (" + pct + " %)";
      if (t.status === "running") {
        const bar = document.createElement("progress");
        bar.max = t.total_bytes;
        bar.value = Math.min(t.bytes || 0, t.total_bytes);
        td.append(bar);
      }
    }
    return td;
  }
  // A status as the server renders it (templating.status_badge): a coloured badge.
  function badge(status) {
    const span = document.createElement("span");
    span.className = "status status-" + (status ? String(status).toLowerCase() : "none");
    span.textContent = status || "—";
    return span;
  }
  function statusCell(status) {
    const td = document.createElement("td");
    td.append(badge(status));
    return td;
  }
  function cell(text, title) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    if (title) td.title = title;
    return td;
  }

  function render(run) {
    const status = document.getElementById("run-status");
    status.replaceChildren(badge(run.status));
    status.dataset.status = run.status;
    document.getElementById("run-stage").textContent = run.stage || "—";
    document.getElementById("run-bytes").textContent = humanBytes(run.bytes || 0) +
      (run.total_bytes ? " of " + humanBytes(run.total_bytes) : "");
    const progress = document.getElementById("run-progress");
    progress.replaceChildren();
    if (run.status === "running" && run.total_bytes) {
      const bar = document.createElement("progress");
      bar.max = run.total_bytes;
      bar.value = Math.min(run.bytes || 0, run.total_bytes);
      progress.append(bar, " " + Math.min(100, Math.floor((run.bytes || 0) * 100 / run.total_bytes)) + " %");
    }
    if (run.status === "running" && run.speed) progress.append(" " + humanBytes(run.speed) + "/s");
    if (run.status === "running" && run.eta !== null && run.eta !== undefined) progress.append(", " + clock(run.eta) + " left");
    document.getElementById("run-error").textContent = run.error || "—";
    const body = document.querySelector("#tasks-table tbody");
    body.replaceChildren();
    run.tasks.forEach(function (t) {
      const tr = document.createElement("tr");
      const running = t.status === "running";
      tr.dataset.taskId = t.id;
      // Each VM's disks stay under it (the server sends them in that order).
      if (t.depth) tr.className = "task-child";
      tr.append(
        cell(t.name), cell(t.part), cell(t.stage), statusCell(t.status),
        cell(t.transfer, t.reason), progressCell(t),
        cell(running && t.speed ? humanBytes(t.speed) + "/s" : ""),
        cell(running && t.eta !== null ? clock(t.eta) : ""), cell(t.error)
      );
      body.append(tr);
    });
    const log = document.getElementById("run-log");
    run.log.forEach(function (line) {
      const li = document.createElement("li");
      li.className = "log-" + line.level;
      li.dataset.id = line.id;
      li.textContent = logTime(line.ts) + " " + line.message;
      log.append(li);
      lastLog = Math.max(lastLog, line.id);
    });
    if (done.has(run.status)) {
      const cancel = document.getElementById("cancel-form");
      if (cancel) cancel.remove();
    }
    return done.has(run.status);
  }

  function finished(run) {
    // The report is rendered by the server: reload once to show it.
    if (!document.getElementById("report")) window.location.reload();
  }

  // Pushed updates (server-sent events); polling if the stream cannot be had.
  function stream() {
    if (!window.EventSource) { setTimeout(poll, 500); return; }
    const source = new EventSource(api + "/events?log_after=" + lastLog);
    let gotOne = false;
    source.addEventListener("operation", function (ev) {
      gotOne = true;
      const run = JSON.parse(ev.data);
      if (render(run)) { source.close(); finished(run); }
    });
    source.onerror = function () {
      source.close();
      // A stream that ended with the run is done; one that failed falls back.
      if (!done.has(document.getElementById("run-status").dataset.status)) setTimeout(gotOne ? stream : poll, 1000);
    };
  }

  function poll() {
    fetch(api + "?log_after=" + lastLog, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (run) {
        if (render(run)) { finished(run); return; }
        setTimeout(poll, 1000);
      })
      .catch(function () { setTimeout(poll, 3000); });
  }
  if (!done.has(document.getElementById("run-status").dataset.status)) stream();
})();
