// Herd console: the only script. It fills the live tables from server-sent events; every
// page works without it. Text goes in with textContent, never as HTML.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const rows = document.getElementById("live-rows");
  if (!rows) return;
  const table = rows.closest("table");
  const keep = Number(table && table.dataset.live) || 100;
  const state = document.getElementById("live-state");
  const say = (text) => { if (state) state.textContent = text; };

  const cell = (row, text, className) => {
    const td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    row.appendChild(td);
    return td;
  };

  const source = new EventSource("/console/live/stream");
  source.addEventListener("open", () => say("Connected: new happenings appear at the top."));
  source.addEventListener("error", () => say("Disconnected; reconnecting…"));
  source.addEventListener("missed", (event) => {
    say(`Too fast to show everything: ${event.data} happening(s) skipped.`);
  });
  source.addEventListener("happening", (event) => {
    let happening;
    try { happening = JSON.parse(event.data); } catch { return; }
    const row = document.createElement("tr");
    row.className = "fresh";
    const when = new Date(happening.at);
    cell(row, isNaN(when) ? happening.at : when.toLocaleTimeString());
    const who = document.createElement("td");
    const link = document.createElement("a");
    link.href = "/console/terminals/" + encodeURIComponent(happening.terminal);
    link.textContent = happening.terminal;
    who.appendChild(link);
    row.appendChild(who);
    cell(row, happening.kind, "kind");
    cell(row, happening.summary);
    rows.insertBefore(row, rows.firstChild);
    while (rows.children.length > keep) rows.removeChild(rows.lastChild);
  });
});
