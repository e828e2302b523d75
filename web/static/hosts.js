// Hosts page: live per-host counters of the remote capture, once a second,
// from /api/remote (DATA/status/remote.json). The page works without it.
"use strict";

(function () {
  const line = document.getElementById("remote-status");
  const result = document.getElementById("remote-result");
  if (!line) return;
  function fmtBytes(n) {
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
    return i ? n.toFixed(1) + " " + u[i] : n + " B";
  }
  async function refresh() {
    let s;
    try {
      const r = await fetch("/api/remote", { credentials: "same-origin" });
      if (!r.ok) { line.textContent = "Capture status: HTTP " + r.status; return; }
      s = await r.json();
    } catch (e) { return; /* next tick retries */ }
    const units = (s.status && s.status.units) || [];
    const seen = new Set();
    units.forEach(function (u) {
      const key = u.host + " " + u.interface;
      seen.add(key);
      const row = document.querySelector('tr[data-unit="' + CSS.escape(key) + '"]');
      if (!row) return;
      const set = function (k, v) {
        const td = row.querySelector('td[data-k="' + k + '"]');
        if (td) td.textContent = v;
      };
      set("state", u.state);
      set("packets", u.packets);
      set("bytes", fmtBytes(u.bytes));
      set("drops", u.drops);
      set("lost", u.lost);
      set("reconnects", u.reconnects);
    });
    if (s.running) {
      line.textContent = "Capture running into " + s.run.out + " (started by " + s.run.user +
        "; filter '" + s.run.filter + "' over " + s.run.transport +
        (s.run.duration ? ", for " + s.run.duration : ", until stopped") + "): " +
        (s.status ? s.status.packets + " packets" : "starting");
    } else if (s.run) {
      line.textContent = "Last capture (" + s.run.out + ") ended: " + (s.status ? s.status.packets + " packets" : "");
    } else {
      line.textContent = "No capture started here since the server started.";
    }
    if (s.run && s.run.result) {
      result.textContent = s.run.result.join("\n");
      result.hidden = false;
    } else {
      result.hidden = true;
    }
  }
  refresh();
  setInterval(refresh, 1000);
})();
