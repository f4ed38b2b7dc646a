// Renders the event catalogue: hands the AsyncAPI document the page carries (JSON data, not script) to the vendored
// @asyncapi/react-component standalone bundle. A file of its own: the CSP allows no inline script.
(function () {
  "use strict";
  var root = document.getElementById("asyncapi");
  var schema = document.getElementById("asyncapi-document").textContent;
  try {
    window.AsyncApiStandalone.render({ schema: schema, config: { show: { sidebar: true } } }, root);
    scrollToAnchor();
  } catch (error) {
    root.textContent = "The event catalogue could not be rendered: " + error.message;
  }

  // A link to one message (`#message-RouteCalculated.v1`, e.g. from a dead letter) names an element that exists
  // only once the renderer has parsed the document: scroll to it when it appears (watching for 10 s at most).
  function scrollToAnchor() {
    var id = decodeURIComponent(window.location.hash.slice(1));
    if (!id) { return; }
    var watcher = new MutationObserver(function () {
      var target = document.getElementById(id);
      if (target) { watcher.disconnect(); target.scrollIntoView(); }
    });
    watcher.observe(root, { childList: true, subtree: true });
    window.setTimeout(function () { watcher.disconnect(); }, 10000);
  }
})();
