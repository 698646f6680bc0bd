// event-gateway console. The forms work without this file; it keeps the refresh interval's slider
// and number field showing the same value, and fills an instance's live events from its stream.
"use strict";

function syncInterval() {
  for (const input of document.querySelectorAll("input[data-sync]")) {
    const other = document.getElementById(input.dataset.sync);
    if (!other) continue;
    input.addEventListener("input", () => {
      if (input.type === "range") {
        other.value = input.value;
      } else if (input.value !== "" && Number(input.value) >= 1) {
        other.value = String(Math.min(120, Math.round(Number(input.value))));
      }
    });
  }
}

const MAX_LIVE_ROWS = 200;

function liveEvents() {
  const table = document.querySelector("table[data-stream]");
  if (!table) return;
  const rows = document.getElementById("live-events");
  const state = document.getElementById("live-state");
  const filters = document.querySelectorAll("select[data-live-filter]");
  let source = null;
  const open = () => {
    if (source) source.close();
    const query = new URLSearchParams();
    for (const select of filters) if (select.value) query.set(select.dataset.liveFilter, select.value);
    rows.replaceChildren();
    state.textContent = "Connecting…";
    source = new EventSource(`${table.dataset.stream}?${query}`);
    source.addEventListener("ready", () => { state.textContent = "Listening: new events appear at the top."; });
    source.addEventListener("error", () => { state.textContent = "Disconnected; reconnecting…"; });
    source.addEventListener("change", (message) => {
      const event = JSON.parse(message.data);
      const row = document.createElement("tr");
      for (const [label, value] of [["Time", event.time], ["Resource", event.resource],
        ["Event type", event.eventType], ["Object id", event.objectId]]) {
        const cell = document.createElement("td");
        cell.dataset.label = label;
        const inner = document.createElement("div");
        inner.textContent = value ?? "";
        cell.append(inner);
        row.append(cell);
      }
      row.classList.add(`event-${String(event.eventType).toLowerCase()}`);
      rows.prepend(row);
      while (rows.children.length > MAX_LIVE_ROWS) rows.lastElementChild.remove();
    });
  };
  for (const select of filters) select.addEventListener("change", open);
  window.addEventListener("pagehide", () => { if (source) source.close(); });
  open();
}

document.addEventListener("DOMContentLoaded", () => {
  syncInterval();
  liveEvents();
});
