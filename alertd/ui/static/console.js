// alertd console: refreshes the live part of a page without reloading it.
// No monitored text is ever handled as markup here: the server renders it escaped, and the
// fresh part is parsed by DOMParser (which runs no script) and moved in as nodes.
"use strict";

(function () {
  var live = document.getElementById("live");
  var state = document.getElementById("refresh-state");
  if (!live || !live.dataset.refresh) { return; }
  var seconds = Math.max(1, parseInt(live.dataset.refresh, 10) || 15);
  var editing = false;

  // Someone typing in a form must not lose it to a refresh: pause until the page reloads.
  document.addEventListener("input", function (event) {
    if (event.target && event.target.form) {
      editing = true;
      say("auto-refresh paused while you edit");
    }
  });

  function say(text) { if (state) { state.textContent = text; } }

  function refresh() {
    if (editing || document.hidden) { return; }
    fetch(window.location.href, {
      headers: { "X-Console-Fragment": "1" },
      credentials: "same-origin",
      cache: "no-store",
      redirect: "manual"
    }).then(function (response) {
      if (response.type === "opaqueredirect" || response.status === 401) {
        say("signed out: reload to sign in");
        throw new Error("signed out");
      }
      if (!response.ok) { throw new Error("HTTP " + response.status); }
      return response.text();
    }).then(function (text) {
      var fresh = new DOMParser().parseFromString("<div>" + text + "</div>", "text/html");
      var holder = fresh.body.firstElementChild;
      var focused = document.activeElement && document.activeElement.closest("#live") ?
        document.activeElement.getAttribute("href") : null;
      live.replaceChildren.apply(live, Array.prototype.slice.call(holder.childNodes));
      if (focused) {  // keep keyboard focus on the same link across a refresh
        var again = live.querySelector('a[href="' + CSS.escape(focused) + '"]');
        if (again) { again.focus(); }
      }
      say("updated " + new Date().toLocaleTimeString());
    }).catch(function (error) {
      say("refresh failed (" + error.message + "); retrying");
    });
  }

  window.setInterval(refresh, seconds * 1000);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) { refresh(); }
  });
})();
