// The images table: sorting (click a header, again to reverse, or open the page with #sort=KEY / #sort=-KEY)
// and filtering (words in the file, answer or distortions, all of them, any case; and a verdict).
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

  const tools = document.getElementById("table-tools");
  const filter = document.getElementById("filter");
  const verdict = document.getElementById("verdict-filter");
  const count = document.getElementById("filter-count");
  if (!tools || !filter || !verdict || !count) return;
  const searched = ["file", "answer", "distortions"].map((key) => headers.findIndex((th) => th.dataset.key === key));
  const texts = new Map(); // row -> its searched text, lower case; rows never change, only their order does

  function textOf(row) {
    let text = texts.get(row);
    if (text === undefined) {
      text = searched.map((index) => (index < 0 ? "" : row.cells[index].textContent)).join("\n").toLowerCase();
      texts.set(row, text);
    }
    return text;
  }

  function applyFilter() {
    const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    const wanted = verdict.value;
    let shown = 0;
    for (const row of body.rows) {
      const text = textOf(row);
      const match = (!wanted || row.dataset.verdict === wanted) && words.every((word) => text.includes(word));
      row.hidden = !match;
      shown += match;
    }
    const total = body.rows.length;
    count.textContent = shown === total ? "" : `${shown.toLocaleString()} of ${total.toLocaleString()} rows shown`;
    table.dataset.shown = String(shown);
  }

  filter.addEventListener("input", applyFilter);
  verdict.addEventListener("change", applyFilter);
  tools.hidden = false; // the controls work only with this script, so they appear only with it
  if (filter.value || verdict.value) applyFilter(); // a browser may restore typed values on reload
})();
