// A running payout run's page: poll its progress once a second, show "done of total",
// and reload the page once the run is over (to show its payouts). Loaded with `defer`
// only while the run is running; without JavaScript a <noscript> refresh does the same.
"use strict";

(function () {
  var summary = document.getElementById("run-summary");
  if (!summary || summary.dataset.runState !== "running") return;
  var url = summary.dataset.progressUrl;
  var shown = document.getElementById("run-progress");

  function poll() {
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) throw new Error("progress: HTTP " + response.status);
        return response.json();
      })
      .then(function (run) {
        if (run.status !== "running") {
          window.location.reload();
          return;
        }
        if (run.total !== null) shown.textContent = run.done + " of " + run.total + " done";
        window.setTimeout(poll, 1000);
      })
      .catch(function () {
        window.setTimeout(poll, 5000); // a blip (a restart, the network): try again later
      });
  }

  window.setTimeout(poll, 1000);
})();
