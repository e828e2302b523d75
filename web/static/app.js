// Small progressive enhancements; every page works without this file.
"use strict";

// Calls list: live refresh of the table body.
(function () {
  const box = document.getElementById("live");
  const table = document.getElementById("calls");
  if (!box || !table) return;
  box.checked = localStorage.getItem("voxtap-live") === "1";
  let timer = null;
  async function refresh() {
    try {
      const r = await fetch("/calls/rows?" + table.dataset.query, { credentials: "same-origin" });
      if (r.ok) document.getElementById("rows").innerHTML = await r.text();
    } catch (e) { /* next tick retries */ }
  }
  function apply() {
    localStorage.setItem("voxtap-live", box.checked ? "1" : "0");
    if (timer) { clearInterval(timer); timer = null; }
    if (box.checked) timer = setInterval(refresh, 5000);
  }
  box.addEventListener("change", apply);
  apply();
})();

// Ladder: clicking an arrow shows that message beside the diagram.
(function () {
  const arrows = document.querySelectorAll("svg.ladder a.msg");
  if (!arrows.length) return;
  const panel = document.createElement("div");
  panel.id = "msgpanel";
  panel.hidden = true;
  document.querySelector(".ladderbox").after(panel);
  arrows.forEach(function (a) {
    a.addEventListener("click", function (ev) {
      ev.preventDefault();
      const src = document.getElementById("msg-" + a.dataset.seq);
      arrows.forEach(function (x) { x.classList.remove("sel"); });
      a.classList.add("sel");
      panel.replaceChildren(src.cloneNode(true));
      panel.firstChild.removeAttribute("id");
      panel.hidden = false;
    });
  });
})();

// Import job: progress polling.
(function () {
  const job = document.getElementById("job");
  if (!job || job.dataset.state !== "running") return;
  const timer = setInterval(async function () {
    const r = await fetch("/api/import/" + job.dataset.job, { credentials: "same-origin" });
    if (!r.ok) return;
    const j = await r.json();
    document.getElementById("job-progress").value = Math.round(j.percent);
    if (j.state !== "running") { clearInterval(timer); location.reload(); }
    else document.getElementById("job-state").textContent = "Importing… " + Math.round(j.percent) + "%";
  }, 1000);
})();

// Sensor page: re-read the live status cards every 2 s while ticked.
(function () {
  const box = document.getElementById("statuses");
  const tick = document.getElementById("status-live");
  if (!box || !tick) return;
  setInterval(async function () {
    if (!tick.checked) return;
    try {
      const r = await fetch(box.dataset.refresh, { credentials: "same-origin" });
      if (r.ok) box.innerHTML = await r.text();
    } catch (e) { /* next tick retries */ }
  }, 2000);
})();

// Live page and live call page: the server pushes the re-rendered fragment
// (escaped by the server) once a second as server-sent events.
(function () {
  const box = document.getElementById("live-calls");
  if (!box || !box.dataset.events || !window.EventSource) return;
  const es = new EventSource(box.dataset.events);
  es.addEventListener("live", function (ev) { box.innerHTML = ev.data; });
})();
