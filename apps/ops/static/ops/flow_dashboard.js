// The event-flow dashboard refreshes its sections in place: every few seconds it fetches them from the server
// (the same view, ?sections=1) and swaps them, keeping the reader's scroll position and any text selection
// (no swap while text is selected). No inline script: the CSP allows scripts from this server only.
(function () {
  "use strict";
  const sections = document.getElementById("flow-sections");
  const status = document.getElementById("flow-refreshed");
  if (!sections) {
    return;
  }
  const every = Math.max(1, Number(sections.dataset.refreshSeconds) || 5) * 1000;

  function say(text) {
    if (status) {
      status.textContent = text;
    }
  }

  async function refresh() {
    const selection = window.getSelection();
    if (document.hidden || (selection && !selection.isCollapsed && sections.contains(selection.anchorNode))) {
      return;
    }
    let response;
    try {
      response = await fetch(sections.dataset.refreshUrl, {credentials: "same-origin", redirect: "manual"});
    } catch (error) {
      say("Not refreshed: the server did not answer. Trying again.");
      return;
    }
    if (!response.ok) {  // signed out (a redirect to the login page) or refused: keep what is shown
      say("Not refreshed (" + (response.status || "signed out") + "): reload the page.");
      return;
    }
    const html = await response.text();
    const x = window.scrollX;
    const y = window.scrollY;
    sections.innerHTML = html;
    window.scrollTo(x, y);
    say("Refreshed at " + new Date().toLocaleTimeString() + "; again in " + every / 1000 + " s.");
  }

  window.setInterval(refresh, every);
}());
