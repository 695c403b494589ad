// Sorts the images table: click a header (again to reverse), or open the page with #sort=KEY / #sort=-KEY.
"use strict";
(function () {
  const table = document.getElementById("images");
  if (!table) return;
  const body = table.tBodies[0];
  const headers = Array.from(table.tHead.rows[0].cells);
  const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

  function cellValue(row, index, numeric) {
    const cell = row.cells[index];
    const raw = cell.dataset.v !== undefined ? cell.dataset.v : cell.textContent.trim();
    if (!numeric) return raw === "" ? null : raw;
    const number = parseFloat(raw);
    return Number.isFinite(number) ? number : null;
  }

  function sortBy(key, descending) {
    const index = headers.findIndex((th) => th.dataset.key === key);
    if (index < 0) return false;
    const numeric = headers[index].dataset.type === "number";
    const items = Array.from(body.rows, (row, position) => ({ row, position, value: cellValue(row, index, numeric) }));
    items.sort((a, b) => {
      // Blanks (no score, no rating) go last whichever the direction; ties keep the current order.
      if (a.value === null || b.value === null) {
        return (a.value === null) - (b.value === null) || a.position - b.position;
      }
      const order = numeric ? a.value - b.value : collator.compare(a.value, b.value);
      return (descending ? -order : order) || a.position - b.position;
    });
    const fragment = document.createDocumentFragment();
    for (const item of items) fragment.appendChild(item.row);
    body.appendChild(fragment);
    for (const th of headers) th.removeAttribute("aria-sort");
    headers[index].setAttribute("aria-sort", descending ? "descending" : "ascending");
    table.dataset.sorted = (descending ? "-" : "") + key;
    return true;
  }

  for (const th of headers) {
    const button = th.querySelector("button");
    if (!button) continue;
    button.addEventListener("click", () => {
      const descending = th.getAttribute("aria-sort") === "ascending";
      sortBy(th.dataset.key, descending);
      try {
        // Keeps the order on reload and in a shared link; file: pages may refuse, which costs nothing.
        history.replaceState(null, "", "#sort=" + table.dataset.sorted);
      } catch (error) { /* not worth bothering the reader about */ }
    });
  }

  function sortFromHash() {
    const match = /(?:^#|&)sort=(-?)([\w-]+)/.exec(location.hash);
    if (match) sortBy(match[2], match[1] === "-");
  }
  window.addEventListener("hashchange", sortFromHash);
  sortFromHash();
})();
