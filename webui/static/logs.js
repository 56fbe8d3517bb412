// Follow mode of the log view: new journal entries arrive as server-sent
// events ("entries") and are appended to the table. The filters are the
// page's own query string, so the stream shows what the table shows.
(function () {
  "use strict";
  const table = document.getElementById("log-entries");
  if (!table || table.dataset.follow !== "1" || !window.EventSource) return;
  const body = table.tBodies[0];
  const zone = table.dataset.timezone;
  const names = ["emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"];
  const format = new Intl.DateTimeFormat("sv-SE", {
    timeZone: zone, year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", second: "2-digit",
  });
  const params = new URLSearchParams(window.location.search);
  params.set("follow", "1");
  params.set("limit", "1");
  let first = true;
  const source = new EventSource(table.dataset.events + "?" + params.toString());
  source.addEventListener("entries", (event) => {
    const entries = JSON.parse(event.data);
    // The stream starts with the newest entry, which the page already shows.
    if (first) { first = false; if (body.rows.length) return; }
    for (const e of entries) {
      const row = body.insertRow();
      row.className = "priority-" + e.priority;
      for (const text of [format.format(new Date(e.ts * 1000)) + " " + zone, e.unit || e.identifier,
                          names[e.priority] || String(e.priority), e.message]) {
        row.insertCell().textContent = text;
      }
    }
    const empty = document.getElementById("logs-empty");
    if (empty && body.rows.length) empty.remove();
  });
})();
