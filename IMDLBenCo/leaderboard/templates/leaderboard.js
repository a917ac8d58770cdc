/* benco leaderboard: sorting and filtering in the page. Plain JavaScript, no network.
 * The query string sets the initial state, so a link (or a headless browser) can ask for a view:
 *   ?sort=<column key>&dir=asc|desc&q=<text>&optimistic=0&incomplete=0&selection=<label>
 * Column keys: rank, model, entry, selection, avg, set-<slug> (the th's data-key). */
(function () {
  "use strict";

  function cellValue(row, index) {
    var cell = row.cells[index];
    if (!cell) { return null; }
    var v = cell.getAttribute("data-v");
    if (v !== null) { return v === "" ? null : parseFloat(v); }
    return (cell.getAttribute("data-s") || cell.textContent).trim().toLowerCase();
  }

  function compare(a, b, dir) {
    // empty cells always last, whatever the direction
    if (a === null && b === null) { return 0; }
    if (a === null) { return 1; }
    if (b === null) { return -1; }
    var s = (typeof a === "number" && typeof b === "number") ? a - b : String(a).localeCompare(String(b));
    return dir === "desc" ? -s : s;
  }

  function sortTable(table, key, dir) {
    var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
    var index = -1;
    headers.forEach(function (th, i) {
      if (th.getAttribute("data-key") === key) { index = i; th.setAttribute("aria-sort", dir === "asc" ? "ascending" : "descending"); }
      else { th.removeAttribute("aria-sort"); }
    });
    if (index < 0) { return false; }
    Array.prototype.forEach.call(table.tBodies, function (body) {
      var rows = Array.prototype.filter.call(body.rows, function (r) { return !r.classList.contains("group-head"); });
      rows.forEach(function (r, i) { r.setAttribute("data-pos", i); });
      rows.sort(function (a, b) {
        return compare(cellValue(a, index), cellValue(b, index), dir) || (a.getAttribute("data-pos") - b.getAttribute("data-pos"));
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
    table.setAttribute("data-sorted", key + ":" + dir);
    return true;
  }

  function applyFilters() {
    var q = (document.getElementById("filter") || {value: ""}).value.trim().toLowerCase();
    var showOptimistic = (document.getElementById("show-optimistic") || {checked: true}).checked;
    var showIncomplete = (document.getElementById("show-incomplete") || {checked: true}).checked;
    var showReported = (document.getElementById("show-reported") || {checked: true}).checked;
    var selection = (document.getElementById("selection") || {value: ""}).value;
    var shown = 0, total = 0;
    document.querySelectorAll("table.lb tbody").forEach(function (body) {
      var visible = 0;
      Array.prototype.forEach.call(body.rows, function (r) {
        if (r.classList.contains("group-head")) { return; }
        total += 1;
        var ok = (!q || (r.getAttribute("data-text") || "").indexOf(q) >= 0) &&
          (showOptimistic || r.getAttribute("data-optimistic") !== "1") &&
          (showIncomplete || r.getAttribute("data-group") !== "incomplete") &&
          (showReported || r.getAttribute("data-kind") !== "reported") &&
          (!selection || r.getAttribute("data-selection") === selection);
        r.classList.toggle("hidden", !ok);
        if (ok) { visible += 1; shown += 1; }
      });
      body.classList.toggle("hidden", visible === 0);
    });
    document.querySelectorAll(".reported-section, .published-block").forEach(function (block) {
      block.classList.toggle("hidden", !showReported);
    });
    document.querySelectorAll("table.published tbody tr").forEach(function (r) {
      r.classList.toggle("hidden", !!q && (r.getAttribute("data-text") || "").indexOf(q) < 0);
    });
    var status = document.getElementById("status");
    if (status) { status.textContent = "showing " + shown + " of " + total + " rows"; }
  }

  function init() {
    var params = new URLSearchParams(window.location.search);
    var byId = function (id) { return document.getElementById(id); };
    if (params.has("q") && byId("filter")) { byId("filter").value = params.get("q"); }
    if (params.get("optimistic") === "0" && byId("show-optimistic")) { byId("show-optimistic").checked = false; }
    if (params.get("incomplete") === "0" && byId("show-incomplete")) { byId("show-incomplete").checked = false; }
    if (params.get("reported") === "0" && byId("show-reported")) { byId("show-reported").checked = false; }
    if (params.has("selection") && byId("selection")) { byId("selection").value = params.get("selection"); }
    ["filter", "show-optimistic", "show-incomplete", "show-reported", "selection"].forEach(function (id) {
      var el = byId(id);
      if (el) { el.addEventListener("input", applyFilters); el.addEventListener("change", applyFilters); }
    });
    document.querySelectorAll("table.lb").forEach(function (table) {
      Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) {
        var key = th.getAttribute("data-key");
        if (!key) { return; }
        th.addEventListener("click", function () {
          var current = th.getAttribute("aria-sort");
          var dir = current === "descending" ? "asc" : (current === "ascending" ? "desc" : (th.getAttribute("data-dir") || "desc"));
          sortTable(table, key, dir);
        });
      });
      if (params.has("sort")) { sortTable(table, params.get("sort"), params.get("dir") === "asc" ? "asc" : "desc"); }
    });
    applyFilters();
    document.body.setAttribute("data-ready", "1");
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); } else { init(); }
})();
