// The VM picker of the job forms: ticks fill the names fields, the selection
// preview is asked again whenever the selection changes, and another pool's
// VMs are listed when the pool changes. The page works without this script
// (the form's Preview button renders the same lists on the server). No
// inline script (CSP 'self'); pool data only ever goes into textContent or
// attribute values, never markup.
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
  const listing = document.getElementById("picker-rows");
  const heading = document.getElementById("picker-heading");
  const rows = () => Array.from(picker.querySelectorAll("#picker-table tbody tr"));

  // A names field as a list: separated by commas or lines, as the server reads it.
  function listed(input) {
    return input.value.split(/[,\n]/).map((t) => t.trim()).filter((t) => t !== "");
  }

  // The field's names without those of this row, then the row's key if ticked.
  // Unticking one of several VMs a listed name took keeps the others, by uuid.
  function setListed(input, row, ticked) {
    const own = [row.dataset.key, row.dataset.vmUuid, row.dataset.name];
    const before = listed(input);
    const kept = before.filter((t) => !own.includes(t));
    if (!ticked && before.includes(row.dataset.name)) {
      for (const other of rows()) {
        if (other !== row && other.dataset.name === row.dataset.name && !kept.includes(other.dataset.key)) {
          kept.push(other.dataset.key);
        }
      }
    }
    if (ticked) { kept.push(row.dataset.key); }
    input.value = kept.join(", ");
  }

  // The ticks follow what the fields say (typed by hand, or a pick elsewhere).
  function syncTicks() {
    const byName = selector.value === "name";
    const taken = new Set(listed(targets));
    const left = new Set(exclude ? listed(exclude) : []);
    for (const row of rows()) {
      // A shared name takes every VM bearing it; a uuid only its own.
      row.querySelector("input.pick").checked = byName && (taken.has(row.dataset.key)
        || taken.has(row.dataset.vmUuid) || taken.has(row.dataset.name));
      row.querySelector("input.exclude").checked = left.has(row.dataset.vmUuid)
        || left.has(row.dataset.name);
    }
  }

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) { node.setAttribute(key, value); }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function cell(tr, child) {
    const td = tr.appendChild(el("td"));
    if (typeof child === "string") { td.textContent = child; } else { td.appendChild(child); }
    return td;
  }

  // The picker's table for another pool, as the server renders it.
  function renderChoices(poolName, choices) {
    heading.textContent = "VMs of " + poolName;
    if (!choices.length) {
      listing.replaceChildren(el("p", { class: "help", id: "picker-none" },
        "This pool has no VM a job can take."));
      return;
    }
    const table = el("table", { class: "table", id: "picker-table" });
    const head = table.appendChild(el("thead")).appendChild(el("tr"));
    for (const h of ["Take", picker.dataset.neverLabel, "VM", "Pool", "UUID", "Power", "Tags", "Last backup"]) {
      head.appendChild(el("th", {}, h));
    }
    const body = table.appendChild(el("tbody"));
    for (const vm of choices) {
      const tr = body.appendChild(el("tr", { "data-vm-uuid": vm.uuid, "data-key": vm.key, "data-name": vm.name }));
      const label = vm.name + " (" + vm.uuid.slice(0, 8) + ")";
      cell(tr, el("input", { type: "checkbox", class: "pick", value: vm.key, "aria-label": "take " + label }));
      cell(tr, el("input", { type: "checkbox", class: "exclude", value: vm.key, "aria-label": "never take " + label }));
      const name = cell(tr, vm.name);
      if (vm.shared_name) {
        tr.classList.add("shared-name");
        name.appendChild(document.createTextNode(" "));
        name.appendChild(el("span", { class: "badge badge-warning",
          title: "another VM of this pool has this name: it is chosen by its uuid" }, "same name"));
      }
      cell(tr, poolName);
      cell(tr, el("code", { title: vm.uuid }, vm.uuid.slice(0, 8)));
      cell(tr, el("span", { class: "status power-" + vm.power_state.toLowerCase(), "data-power": vm.power_state },
        vm.power_state));
      const tags = cell(tr, vm.tags.length ? "" : "—");
      for (const t of vm.tags) { tags.appendChild(el("span", { class: "badge" }, t)); tags.appendChild(document.createTextNode(" ")); }
      cell(tr, vm.last_backup_shown);
    }
    listing.replaceChildren(table);
    syncTicks();
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
      const head = table.appendChild(el("thead")).appendChild(el("tr"));
      for (const h of ["VM", "Pool", "UUID"]) { head.appendChild(el("th", {}, h)); }
      const body = table.appendChild(el("tbody"));
      for (const vm of answer.vms) {
        const tr = body.appendChild(el("tr", { "data-vm-uuid": vm.uuid }));
        cell(tr, vm.name);
        cell(tr, vm.pool);
        cell(tr, el("code", {}, vm.uuid));
      }
      out.push(table);
    }
    shown.replaceChildren(...out);
  }

  function problem(message) {
    shown.replaceChildren(el("p", { class: "flash flash-error", id: "preview-problem" }, message));
  }

  let asked = 0;
  let timer = null;
  async function ask(withChoices) {
    asked += 1;
    const mine = asked;
    const body = {
      pool_id: pool.value,
      selector: selector.value,
      targets: targets.value,
      exclude: exclude ? exclude.value : "",
      choices: withChoices,
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
      if (!resp.ok) {
        problem((answer.error && answer.error.message) || resp.statusText);
        return;
      }
      if (withChoices) {
        picker.dataset.poolId = String(answer.pool.id);
        renderChoices(answer.pool.name, answer.choices || []);
      }
      render(answer);
    } catch (err) {
      if (mine === asked) { problem("the preview could not be asked: " + err); }
    }
  }

  // The pool's VMs come along whenever the pool listed is not the chosen one.
  function soon() {
    clearTimeout(timer);
    timer = setTimeout(() => ask(pool.value !== picker.dataset.poolId), 250);
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
  const changed = () => { syncTicks(); soon(); };
  for (const input of [targets, exclude]) {
    if (input) { input.addEventListener("input", changed); }
  }
  // Drop-down lists: "change" is what every browser (and WebDriver) fires.
  for (const input of [selector, pool]) { input.addEventListener("change", changed); }
  syncTicks();
  // A new form chooses nothing yet: nothing to preview until it does.
  if (selector.value === "pool" || listed(targets).length) { ask(false); }
})();
