// Settings → Network: the countdown of a change waiting for confirmation.
// When it runs out the page is loaded again, which then shows how the
// change ended (the helper puts the previous settings back, not this page).
// No inline script (CSP 'self').
(function () {
  "use strict";
  const box = document.getElementById("network-pending");
  const shown = document.getElementById("pending-countdown");
  if (!box || !shown) return;
  const end = Date.now() + 1000 * Number(box.dataset.secondsLeft || 0);
  function clock(seconds) {
    const s = Math.max(0, Math.round(seconds));
    return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
  }
  const timer = setInterval(function () {
    const left = (end - Date.now()) / 1000;
    shown.textContent = clock(left);
    if (left <= -2) {
      clearInterval(timer);
      window.location.reload();
    }
  }, 1000);
})();
