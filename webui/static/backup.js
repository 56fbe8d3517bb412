// Live progress of a backup run or restore: the run's detail pushed by
// server-sent events (polled if the stream fails) updates the status, the
// task table and the log. No inline script (CSP 'self').
(function () {
  "use strict";
  const root = document.getElementById("run");
  if (!root) return;
  const api = root.dataset.api;
  const done = new Set(["success", "failed", "cancelled", "interrupted"]);
  let lastLog = 0;
  document.querySelectorAll("#run-log li").forEach(function (li) {
    lastLog = Math.max(lastLog, Number(li.dataset.id || 0));
  });

  function mib(n) { return (n / 1048576).toFixed(1) + " MiB"; }
  function cell(text, title) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    if (title) td.title = title;
    return td;
  }

  function render(run) {
    document.getElementById("run-status").textContent = run.status;
    document.getElementById("run-bytes").textContent = mib(run.bytes || 0);
    document.getElementById("run-error").textContent = run.error || "—";
    const body = document.querySelector("#tasks-table tbody");
    body.replaceChildren();
    run.tasks.forEach(function (t) {
      const tr = document.createElement("tr");
      tr.dataset.taskId = t.id;
      tr.append(
        cell(t.vm_name), cell(t.disk_key), cell(t.stage), cell(t.status),
        cell(t.transfer, t.reason), cell(t.bytes),
        cell(((t.speed || 0) / 1048576).toFixed(1) + " MiB/s"),
        cell(t.eta === null ? "" : Math.round(t.eta) + " s"), cell(t.error)
      );
      body.append(tr);
    });
    const log = document.getElementById("run-log");
    run.log.forEach(function (line) {
      const li = document.createElement("li");
      li.className = "log-" + line.level;
      li.dataset.id = line.id;
      li.textContent = new Date(line.ts * 1000).toISOString().replace("T", " ").slice(0, 19) + " " + line.message;
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
    // The report table is rendered by the server: reload once to show it.
    if (!document.getElementById("report") && run.report && run.report.vms) window.location.reload();
  }

  // Pushed updates (server-sent events); polling if the stream cannot be had.
  function stream() {
    if (!window.EventSource) { setTimeout(poll, 500); return; }
    const source = new EventSource(api + "/events?log_after=" + lastLog);
    let gotOne = false;
    source.addEventListener("run", function (ev) {
      gotOne = true;
      const run = JSON.parse(ev.data);
      if (render(run)) { source.close(); finished(run); }
    });
    source.onerror = function () {
      source.close();
      // A stream that ended with the run is done; one that failed falls back.
      if (!done.has(document.getElementById("run-status").textContent)) setTimeout(gotOne ? stream : poll, 1000);
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
  if (!done.has(document.getElementById("run-status").textContent)) stream();
})();
