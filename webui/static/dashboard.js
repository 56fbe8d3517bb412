// The dashboard's live pool view: hosts, SRs and VMs of every pool, kept
// current by the server-sent events of /api/v1/events. Everything is built
// with DOM calls and textContent: pool data never becomes markup.
"use strict";

(function () {
  const root = document.getElementById("pools-live");
  if (!root) { return; }
  const pools = new Map();

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (key === "text") { node.textContent = value; } else { node.setAttribute(key, value); }
    }
    for (const child of children || []) { node.appendChild(child); }
    return node;
  }

  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let value = Number(n) || 0;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return (unit === 0 ? value : value.toFixed(1)) + " " + units[unit];
  }

  function usage(used, size, percent) {
    const cell = el("td");
    if (size > 0) {
      cell.appendChild(el("meter", { min: "0", max: String(size), value: String(used), title: percent + " %" }));
      cell.appendChild(document.createTextNode(" " + bytes(used) + " / " + bytes(size) + " (" + percent + " %)"));
    } else {
      cell.textContent = "—";
    }
    return cell;
  }

  function table(id, headers, rows) {
    const head = el("tr", {}, headers.map((h) => el("th", { text: h })));
    return el("table", { class: "table", id: id }, [el("thead", {}, [head]), el("tbody", {}, rows)]);
  }

  function renderPool(pool) {
    const status = pool.status || {};
    const state = status.state === "connected" ? "" : " — " + status.state + (status.error ? ": " + status.error : "");
    const hosts = pool.hosts.map((h) => el("tr", {}, [
      el("td", { text: h.name + (h.master ? " (master)" : "") }),
      el("td", { text: h.address }),
      el("td", { text: h.enabled ? "enabled" : "disabled" }),
    ]));
    const srs = pool.srs.map((s) => el("tr", {}, [
      el("td", { text: s.name }),
      el("td", { text: s.type + (s.shared ? ", shared" : s.host ? ", on " + s.host : "") }),
      usage(s.used, s.size, s.used_percent),
    ]));
    const vms = pool.vms.map((v) => el("tr", { "data-vm": v.uuid }, [
      el("td", { text: v.name }),
      el("td", { class: "power-state", text: v.power_state }),
      el("td", { text: v.host || "—" }),
      el("td", { text: v.vcpus + " vCPU, " + bytes(v.memory) }),
      usage(v.disk_used, v.disk_size, v.disk_used_percent),
    ]));
    // A pool seen only in part (no URL) shows only the parts it has.
    const whole = Boolean(pool.url);
    const parts = [
      el("h2", { text: pool.name + state }),
      el("p", { class: "help", text: (whole ? pool.url + " · " : "") + pool.running + " of " + pool.vms.length + " VMs running" }),
    ];
    for (const [title, id, headers, rows] of [
      ["Hosts", "hosts-", ["Host", "Address", "State"], hosts],
      ["Storage", "srs-", ["SR", "Type", "Usage"], srs],
      ["VMs", "vms-", ["VM", "Power", "Host", "Size", "Disk usage"], vms],
    ]) {
      if (whole || rows.length) {
        parts.push(el("h3", { text: title }), table(id + pool.id, headers, rows));
      }
    }
    return el("section", { class: "card pool", "data-pool-id": String(pool.id) }, parts);
  }

  function render() {
    const nodes = [];
    if (pools.size === 0) {
      nodes.push(el("p", { class: "help", id: "pools-empty", text: root.dataset.empty || "No pool is connected yet." }));
    }
    for (const pool of pools.values()) { nodes.push(renderPool(pool)); }
    root.replaceChildren(...nodes);
  }

  function replaceAll(list) {
    pools.clear();
    for (const pool of list) { pools.set(pool.id, pool); }
    render();
  }

  function status(text) {
    let line = document.getElementById("pools-live-status");
    if (!line) {
      line = el("p", { class: "help", id: "pools-live-status" });
      root.prepend(line);
    }
    line.textContent = text;
  }

  fetch(root.dataset.overview, { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then((r) => (r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status))))
    .then((body) => replaceAll(body.pools))
    .catch((err) => status("Cannot load the pools: " + err.message));

  if (!window.EventSource) { return; }
  const source = new EventSource(root.dataset.events);
  source.addEventListener("overview", (e) => replaceAll(JSON.parse(e.data).pools));
  source.addEventListener("pool", (e) => {
    const pool = JSON.parse(e.data);
    pools.set(pool.id, pool);
    render();
  });
  source.addEventListener("removed", (e) => {
    pools.delete(JSON.parse(e.data).id);
    render();
  });
  // EventSource reconnects by itself; the first message after it is a full overview.
  source.addEventListener("error", () => status("Connection to the appliance lost; reconnecting…"));
}());
