// weir's dashboard script: the only JavaScript the pages load, no build step. Pages work
// without it except for three conveniences: MLflow's `/#/…` links, the theme switch, and the
// serving panels that refresh themselves.
"use strict";

(function () {
  // The theme chosen here wins over the system's; applied before the page paints.
  var stored = null;
  try { stored = window.localStorage.getItem("weir-theme"); } catch (e) { /* private mode */ }
  if (stored === "dark" || stored === "light") {
    document.documentElement.setAttribute("data-theme", stored);
  }
})();

// MLflow's UI routes live in the fragment, which never reaches the server:
// #/experiments/E/runs/R, #/experiments/E, #/models/NAME, #/models/NAME/versions/N.
function weirPageForMlflowLink(hash) {
  var path = hash.replace(/^#/, "").split("?")[0];
  var parts = path.split("/").filter(function (p) { return p.length > 0; });
  var enc = function (s) { return encodeURIComponent(decodeURIComponent(s)); };
  try {
    if (parts[0] === "experiments" && parts.length >= 4 && parts[2] === "runs") {
      return "/ui/experiments/" + enc(parts[1]) + "/runs/" + enc(parts[3]);
    }
    if (parts[0] === "experiments" && parts.length >= 2) {
      return "/ui/experiments/" + enc(parts[1]);
    }
    if (parts[0] === "models" && parts.length >= 4 && parts[2] === "versions") {
      return "/ui/models/" + enc(parts[1]) + "/versions/" + enc(parts[3]);
    }
    if (parts[0] === "models" && parts.length >= 2) {
      return "/ui/models/" + enc(parts[1]);
    }
    if (parts[0] === "models") { return "/ui/models"; }
    if (parts[0] === "experiments") { return "/ui/experiments"; }
  } catch (e) { /* a malformed escape: fall through to the overview */ }
  return "/ui/";
}

function weirRefresh(element) {
  var every = parseInt(element.getAttribute("data-every") || "2000", 10);
  var url = element.getAttribute("data-refresh");
  var tick = function () {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("status " + response.status); }
        return response.text();
      })
      .then(function (html) {
        // The fragment is our own server-rendered, escaped HTML.
        element.innerHTML = html;
        element.removeAttribute("data-stale");
      })
      .catch(function () { element.setAttribute("data-stale", "true"); })
      .finally(function () { window.setTimeout(tick, every); });
  };
  window.setTimeout(tick, every);
}

document.addEventListener("DOMContentLoaded", function () {
  var link = document.querySelector("[data-mlflow-links]");
  if (link) {
    window.location.replace(weirPageForMlflowLink(window.location.hash));
    return;
  }
  document.querySelectorAll("[data-theme-toggle]").forEach(function (button) {
    button.addEventListener("click", function () {
      var root = document.documentElement;
      var current = root.getAttribute("data-theme") ||
        (window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light");
      var next = current === "dark" ? "light" : "dark";
      root.setAttribute("data-theme", next);
      try { window.localStorage.setItem("weir-theme", next); } catch (e) { /* private mode */ }
    });
  });
  document.querySelectorAll("[data-refresh]").forEach(weirRefresh);
});
