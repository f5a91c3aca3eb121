// latlab dashboard: live tables and confirmations. No library; the pages work without it.
"use strict";

// An element with data-poll="URL" has its content replaced by URL's answer every
// data-poll-s seconds (while the page is visible and a #live box, if any, is checked), until
// an element matching data-poll-until appears inside it.
function poll(box) {
  const url = box.dataset.poll;
  const every = 1000 * Number(box.dataset.pollS || "3");
  const until = box.dataset.pollUntil;
  const live = document.getElementById("live");
  async function tick() {
    if (until && box.querySelector(until)) return;
    if (!document.hidden && (!live || live.checked)) {
      try {
        const answer = await fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } });
        if (answer.redirected || answer.status === 401) { window.location.reload(); return; }
        if (answer.ok) box.innerHTML = await answer.text();
      } catch (_) { /* the server restarts: try again next tick */ }
    }
    window.setTimeout(tick, every);
  }
  window.setTimeout(tick, every);
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-poll]").forEach(poll);
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form.dataset && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });
});
