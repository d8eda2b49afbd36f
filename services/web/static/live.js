// Live refresh, and nothing else: every element marked data-live (with an id) is replaced by
// its copy in a fresh fetch of the same page, every few seconds while the tab is visible.
// A page that answers a POST (a form sent back with what is wrong with it) names the page to
// fetch instead in data-live-src, since its own address only takes POSTs.
// Without JavaScript the page is the same, just not refreshed.
(function () {
  "use strict";
  var EVERY_MS = 5000;
  if (!document.querySelector("[data-live][id]")) { return; }
  var named = document.querySelector("[data-live-src]");
  var source = named ? named.getAttribute("data-live-src") : window.location.href;
  function busy() {
    var active = document.activeElement;
    return active && /^(INPUT|TEXTAREA|SELECT)$/.test(active.tagName) && active.closest("[data-live]");
  }
  function refresh() {
    if (document.hidden || busy()) { return; }
    fetch(source, { credentials: "same-origin", headers: { "X-Live-Refresh": "1" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live][id]").forEach(function (old) {
          var next = fresh.getElementById(old.id);
          if (next) { old.replaceWith(document.importNode(next, true)); }
        });
      })
      .catch(function () { /* offline for a moment: the next tick tries again */ });
  }
  window.setInterval(refresh, EVERY_MS);
})();
