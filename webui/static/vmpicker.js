// The VM picker of the job forms: ticks fill the names fields, and the
// selection preview is asked again whenever the selection changes. The page
// works without this script (the form's Preview button renders the same
// list on the server). No inline script (CSP 'self'); pool data only ever
// goes into textContent, never markup.
"use strict";

(function () {
  const picker = document.getElementById("vm-picker");
  const form = document.getElementById("job-form");
  if (!picker || !form) { return; }
  const field = (name) => form.elements.namedItem(name);
  const targets = field("targets");
  const exclude = field("exclude");
  const selector = field("selector");
  const pool = field("pool_id");
  const shown = document.getElementById("selection-preview");
  const rows = Array.from(picker.querySelectorAll("#picker-table tbody tr"));

  // A names field as a list: separated by commas or lines, as the server reads it.
  function listed(input) {
    return input.value.split(/[,\n]/).map((t) => t.trim()).filter((t) => t !== "");
  }

  function rowNames(row) {
    return [row.dataset.key, row.dataset.vmUuid, row.dataset.name];
  }

  // The field's names without those of this row, then the row's key if ticked.
  function setListed(input, row, ticked) {
    const own = rowNames(row);
    const kept = listed(input).filter((t) => !own.includes(t));
    if (ticked) { kept.push(row.dataset.key); }
    input.value = kept.join(", ");
  }

  // The ticks follow what the fields say (typed by hand, or a pick elsewhere).
  function syncTicks() {
    const byName = selector.value === "name";
    const taken = new Set(listed(targets));
    const left = new Set(exclude ? listed(exclude) : []);
    for (const row of rows) {
      const pick = row.querySelector("input.pick");
      const never = row.querySelector("input.exclude");
      // A shared name takes every VM bearing it; a uuid only its own.
      pick.checked = byName && (taken.has(row.dataset.key) || taken.has(row.dataset.vmUuid)
        || taken.has(row.dataset.name));
      never.checked = left.has(row.dataset.vmUuid) || left.has(row.dataset.name);
    }
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) { node.setAttribute(key, value); }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function render(answer) {
    const out = [];
    for (const e of answer.errors || []) {
      const p = el("p", { class: "flash flash-error preview-error", "data-field": e.field }, e.message);
      if (e.hint) { p.appendChild(el("span", { class: "help" }, " (" + e.hint + ")")); }
      out.push(p);
    }
    for (const [name, uuids] of Object.entries(answer.shared_names || {})) {
      out.push(el("p", { class: "flash flash-warning preview-shared", "data-name": name },
        name + " is the name of " + uuids.length + " VMs (" + uuids.join(", ") +
        "): the name takes them all; tick one by its uuid to take only it."));
    }
    const n = answer.vms.length;
    const count = el("p", { id: "preview-count" });
    count.appendChild(el("strong", {}, String(n)));
    count.appendChild(document.createTextNode(" VM" + (n === 1 ? "" : "s") + " selected now in " + answer.pool.name));
    out.push(count);
    if (n) {
      const table = el("table", { class: "table", id: "preview-table" });
      const head = el("tr");
      for (const h of ["VM", "Pool", "UUID"]) { head.appendChild(el("th", {}, h)); }
      table.appendChild(el("thead")).appendChild(head);
      const body = table.appendChild(el("tbody"));
      for (const vm of answer.vms) {
        const tr = body.appendChild(el("tr", { "data-vm-uuid": vm.uuid }));
        tr.appendChild(el("td", {}, vm.name));
        tr.appendChild(el("td", {}, vm.pool));
        tr.appendChild(el("td")).appendChild(el("code", {}, vm.uuid));
      }
      out.push(table);
    }
    shown.replaceChildren(...out);
    shown.dataset.asked = String(asked);
  }

  function problem(message) {
    shown.replaceChildren(el("p", { class: "flash flash-error", id: "preview-problem" }, message));
    shown.dataset.asked = String(asked);
  }

  let asked = 0;
  let timer = null;
  async function ask() {
    asked += 1;
    const mine = asked;
    const body = {
      pool_id: pool.value,
      selector: selector.value,
      targets: targets.value,
      exclude: exclude ? exclude.value : "",
    };
    try {
      const resp = await fetch(picker.dataset.previewUrl, {
        method: "POST",
        credentials: "same-origin",
        headers: {
          "Content-Type": "application/json",
          Accept: "application/json",
          "X-CSRF-Token": field("_csrf").value,
        },
        body: JSON.stringify(body),
      });
      const answer = await resp.json();
      if (mine !== asked) { return; } // a newer question is on its way
      if (resp.ok) { render(answer); } else { problem((answer.error && answer.error.message) || resp.statusText); }
    } catch (err) {
      if (mine === asked) { problem("the preview could not be asked: " + err); }
    }
  }

  function soon() {
    clearTimeout(timer);
    timer = setTimeout(ask, 250);
  }

  picker.addEventListener("change", (event) => {
    const box = event.target;
    const row = box.closest("tr");
    if (!row) { return; }
    if (box.classList.contains("pick")) {
      if (box.checked && selector.value !== "name") {
        // Ticking a VM chooses by name: tags typed for a tag selection are not names.
        selector.value = "name";
        targets.value = "";
      }
      setListed(targets, row, box.checked);
    } else if (box.classList.contains("exclude") && exclude) {
      setListed(exclude, row, box.checked);
    }
    syncTicks();
    soon();
  });
  for (const input of [targets, exclude, selector]) {
    if (input) { input.addEventListener("input", () => { syncTicks(); soon(); }); }
  }
  // Another pool has other VMs: the server lists them (the form's own Preview).
  pool.addEventListener("change", () => {
    if (pool.value !== picker.dataset.poolId) {
      form.requestSubmit(document.getElementById("preview-selection"));
    }
  });
  syncTicks();
  // A new form chooses nothing yet: nothing to preview until it does.
  if (selector.value === "pool" || listed(targets).length) { ask(); }
})();
