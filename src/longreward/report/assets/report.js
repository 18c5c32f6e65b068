// longreward report: filtering, expand/collapse and table sorting. Shipped inside the
// package and inlined into the page: nothing is fetched when the report is viewed.
(function () {
  "use strict";
  var errors = [];
  function note(message) {
    errors.push(String(message));
    var box = document.getElementById("lr-errors");
    if (box) { box.textContent = "report script error: " + errors.join("\n"); }
    document.documentElement.setAttribute("data-lr-errors", String(errors.length));
  }
  window.addEventListener("error", function (e) { note(e.message || e); });
  window.addEventListener("unhandledrejection", function (e) { note(e.reason); });

  function each(selector, fn, root) {
    Array.prototype.forEach.call((root || document).querySelectorAll(selector), fn);
  }

  function filterPrompts(input) {
    var q = input.value.trim().toLowerCase();
    var shown = 0;
    each("details.prompt", function (d) {
      var hit = !q || (d.getAttribute("data-search") || "").indexOf(q) >= 0;
      d.classList.toggle("hidden", !hit);
      if (hit) { shown += 1; }
    });
    var count = document.getElementById("lr-prompt-count");
    if (count) { count.textContent = shown + " shown"; }
  }

  function sortTable(th) {
    var table = th.closest("table");
    var body = table.tBodies[0];
    var index = Array.prototype.indexOf.call(th.parentNode.children, th);
    var asc = th.getAttribute("data-dir") !== "asc";
    each("th", function (h) { h.removeAttribute("data-dir"); }, table);
    th.setAttribute("data-dir", asc ? "asc" : "desc");
    var rows = Array.prototype.slice.call(body.rows);
    function key(row) {
      var cell = row.cells[index];
      var raw = cell ? (cell.getAttribute("data-v") || cell.textContent) : "";
      var num = parseFloat(raw);
      return isNaN(num) ? raw.toLowerCase() : num;
    }
    rows.sort(function (a, b) {
      var x = key(a), y = key(b);
      if (x === y) { return 0; }
      return (x < y ? -1 : 1) * (asc ? 1 : -1);
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }

  function ready() {
    var search = document.getElementById("lr-search");
    if (search) {
      search.addEventListener("input", function () { filterPrompts(search); });
      filterPrompts(search);
    }
    each("[data-expand]", function (button) {
      button.addEventListener("click", function () {
        var open = button.getAttribute("data-expand") === "open";
        each("details.prompt:not(.hidden)", function (d) { d.open = open; });
      });
    });
    each("[data-only-failures]", function (box) {
      box.addEventListener("change", function () {
        each("tr[data-outcome]", function (row) {
          row.classList.toggle("hidden", box.checked && row.getAttribute("data-outcome") === "agree");
        }, document.getElementById(box.getAttribute("data-only-failures")));
      });
    });
    each("table.sortable th", function (th) {
      th.addEventListener("click", function () { sortTable(th); });
    });
    document.documentElement.setAttribute("data-lr-ready", "1");
    var status = document.getElementById("lr-status");
    if (status) { status.textContent = "interactive"; }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", ready);
  } else {
    ready();
  }
})();
