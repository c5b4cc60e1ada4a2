// The leaderboard's only script, inlined into every page. Without it the tables are still
// complete (in their default order) and the charts are plain SVG; with it, a click on a column
// header sorts by that column and the search boxes filter rows.
(function () {
  "use strict";

  // The sort key of a cell: its data-v attribute (numbers, ISO dates) or its text.
  function key(row, index) {
    var cell = row.cells[index];
    if (!cell) return "";
    var v = cell.getAttribute("data-v");
    return v === null ? cell.textContent.trim() : v;
  }

  // Empty values last in either direction; numbers as numbers; text in natural order
  // (HumanEval/2 before HumanEval/10).
  function compare(a, b, direction) {
    if (a === "" || b === "") return a === b ? 0 : (a === "" ? 1 : -1);
    var x = Number(a), y = Number(b);
    var result = isFinite(x) && isFinite(y) ? x - y : a.localeCompare(b, undefined, { numeric: true });
    return direction === "ascending" ? result : -result;
  }

  function sortBy(table, th, index) {
    var body = table.tBodies[0];
    // Numbers start high-to-low (best first), text A-to-Z; a second click reverses.
    var first = th.classList.contains("num") ? "descending" : "ascending";
    var current = th.getAttribute("aria-sort");
    var direction = current ? (current === "ascending" ? "descending" : "ascending") : first;
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (r1, r2) { return compare(key(r1, index), key(r2, index), direction); });
    rows.forEach(function (row) { body.appendChild(row); });
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell) { cell.removeAttribute("aria-sort"); });
    th.setAttribute("aria-sort", direction);
  }

  function makeSortable(table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      var button = document.createElement("button");
      button.type = "button";
      button.title = "sort by this column";
      while (th.firstChild) button.appendChild(th.firstChild);
      th.appendChild(button);
      button.addEventListener("click", function () { sortBy(table, th, index); });
    });
  }

  // Rows match when their data-key holds the query (case-insensitive); a checkbox with
  // data-only-differing also hides rows whose data-differs is "0".
  function applyFilters(table) {
    var input = document.querySelector('input[data-filter="' + table.id + '"]');
    var only = document.querySelector('input[data-only-differing="' + table.id + '"]');
    var query = input ? input.value.trim().toLowerCase() : "";
    var shown = 0;
    Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
      var text = (row.getAttribute("data-key") || "").toLowerCase();
      var hide = (query && text.indexOf(query) < 0) || (only && only.checked && row.getAttribute("data-differs") === "0");
      row.hidden = Boolean(hide);
      if (!hide) shown += 1;
    });
    var count = document.querySelector('[data-count="' + table.id + '"]');
    if (count) count.textContent = shown + " of " + table.tBodies[0].rows.length + " rows";
  }

  function wireFilters() {
    var controls = document.querySelectorAll("input[data-filter], input[data-only-differing]");
    Array.prototype.forEach.call(controls, function (control) {
      var id = control.getAttribute("data-filter") || control.getAttribute("data-only-differing");
      var table = document.getElementById(id);
      if (!table) return;
      var label = control.closest("label");
      if (label) label.hidden = false;
      control.addEventListener("input", function () { applyFilters(table); });
      control.addEventListener("change", function () { applyFilters(table); });
    });
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), makeSortable);
  wireFilters();
})();
