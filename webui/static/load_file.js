// A file picked next to a text box is read into that box (an IdP's metadata,
// a CA certificate): the browser reads it, the form sends the text as if it
// had been pasted, and nothing else leaves the page.
"use strict";

(function () {
  const LIMIT = 1024 * 1024;
  for (const input of document.querySelectorAll("input[type=file][data-load-into]")) {
    input.addEventListener("change", () => {
      const box = document.getElementById(input.dataset.loadInto);
      const file = input.files && input.files[0];
      if (!box || !file) { return; }
      if (file.size > LIMIT) {
        input.setCustomValidity("that file is larger than 1 MiB");
        input.reportValidity();
        return;
      }
      input.setCustomValidity("");
      file.text().then((text) => { box.value = text; });
    });
  }
})();
