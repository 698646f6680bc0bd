// event-gateway console. The pages work without this file; it only keeps the refresh interval's
// slider and number field showing the same value.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const input of document.querySelectorAll("input[data-sync]")) {
    const other = document.getElementById(input.dataset.sync);
    if (!other) continue;
    input.addEventListener("input", () => {
      if (input.type === "range" || (input.value !== "" && Number(input.value) >= 1)) {
        other.value = input.type === "range" ? input.value : String(Math.min(120, Math.round(Number(input.value))));
      }
    });
  }
});
