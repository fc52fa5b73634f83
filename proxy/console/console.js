// Cordon proxy console: refreshes the page's tables from the JSON API every
// 2 s (no reload). Values are written with textContent only.
"use strict";
(function () {
  const page = document.body.dataset.page;
  const statusEl = document.getElementById("status");
  const REFRESH_MS = 2000;

  function since(iso) {
    const t = Date.parse(iso);
    if (!t || t < 0) return "";
    let s = Math.max(0, Math.round((Date.now() - t) / 1000));
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + m + "m";
    if (m) return m + "m " + s + "s";
    return s + "s";
  }
  function clock(iso) {
    const d = new Date(iso), p = (n) => String(n).padStart(2, "0");
    return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " + p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
  }
  function resolution(c) { return c.width && c.height ? c.width + "×" + c.height : ""; }
  // Same as fmtFPS in console.go: "~" marks a measured rate.
  function fps(c) {
    const num = (f) => f.toFixed(f < 10 ? 1 : 0);
    if (!c.fps) return "";
    if (c.fps_source === "measured") return num(c.fps) + "~";
    if (c.fps_measured > 0 && Math.abs(c.fps_measured - c.fps) > c.fps / 10) return num(c.fps_measured) + "~ (SPS " + num(c.fps) + ")";
    return num(c.fps);
  }
  function bitrate(b) {
    if (!b) return "0";
    if (b >= 1e6) return (b / 1e6).toFixed(2) + " Mb/s";
    if (b >= 1e3) return (b / 1e3).toFixed(0) + " kb/s";
    return b + " b/s";
  }
  function jitter(j) { return (j / 90).toFixed(1) + " ms"; }
  function dropsTotal(d) { let n = 0; for (const k in d || {}) n += d[k].units; return n; }
  function drops(d) {
    const parts = [];
    for (const k of Object.keys(d || {}).sort()) if (d[k].units) parts.push(k + " " + d[k].units);
    return parts.join(", ") || "0";
  }
  function cell(tr, text, cls) {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    if (text instanceof Node) td.appendChild(text); else td.textContent = text;
    tr.appendChild(td);
    return td;
  }
  function link(href, text) { const a = document.createElement("a"); a.href = href; a.textContent = text; return a; }
  function badge(state) { const s = document.createElement("span"); s.className = "badge"; s.textContent = state; return s; }
  function ok() { statusEl.textContent = "updated " + new Date().toLocaleTimeString(); statusEl.classList.remove("failed"); }
  function failed(err) { statusEl.textContent = "refresh failed: " + err.message; statusEl.classList.add("failed"); }

  async function get(url) {
    const r = await fetch(url, { cache: "no-store", credentials: "same-origin" });
    if (!r.ok) throw new Error(url + ": HTTP " + r.status);
    return r.json();
  }
  function every(fn) {
    const run = () => fn().then(ok, failed).finally(() => setTimeout(run, REFRESH_MS));
    setTimeout(run, 0);
  }

  // Cameras page: filter and sort survive refreshes.
  function camerasPage() {
    const table = document.getElementById("cameras");
    const filter = document.getElementById("filter");
    let sortKey = "name", sortDir = 1, last = [];
    const value = {
      pixels: (c) => (c.width || 0) * (c.height || 0),
      readers: (c) => (c.readers || []).length,
      drops: (c) => dropsTotal(c.dropped),
      since: (c) => -Date.parse(c.since),
    };
    function key(c) { return value[sortKey] ? value[sortKey](c) : c[sortKey]; }
    function render() {
      const q = filter.value.trim().toLowerCase();
      const rows = last.filter((c) => !q || [c.name, c.state, c.codec, c.last_error].join(" ").toLowerCase().includes(q));
      rows.sort((a, b) => {
        const x = key(a), y = key(b);
        if (x === y) return a.name < b.name ? -1 : 1;
        if (x === undefined || x === null) return 1;
        if (y === undefined || y === null) return -1;
        return (x < y ? -1 : 1) * sortDir;
      });
      const body = document.createElement("tbody");
      for (const c of rows) {
        const tr = document.createElement("tr");
        tr.className = "state-" + c.state;
        tr.dataset.camera = c.name;
        cell(tr, link("/cameras/" + encodeURIComponent(c.name), c.name));
        cell(tr, badge(c.state));
        cell(tr, since(c.since));
        cell(tr, c.codec || "");
        cell(tr, resolution(c));
        cell(tr, fps(c), "num");
        cell(tr, bitrate(c.bitrate_bps), "num");
        cell(tr, jitter(c.rtp_jitter), "num");
        cell(tr, String(c.packets_lost), "num");
        cell(tr, String(c.reconnects), "num");
        cell(tr, String((c.readers || []).length), "num");
        cell(tr, drops(c.dropped));
        cell(tr, c.last_error || "", "err");
        body.appendChild(tr);
      }
      table.replaceChild(body, table.tBodies[0]);
      const up = last.filter((c) => c.state === "up").length;
      document.getElementById("count").textContent = String(last.length);
      document.getElementById("summary").textContent = up + " up, " + (last.length - up) + " not up" + (q ? ", " + rows.length + " shown" : "");
    }
    for (const th of table.tHead.rows[0].cells) {
      th.addEventListener("click", () => {
        const k = th.dataset.key;
        sortDir = k === sortKey ? -sortDir : 1;
        sortKey = k;
        for (const o of table.tHead.rows[0].cells) o.classList.remove("asc", "desc");
        th.classList.add(sortDir > 0 ? "asc" : "desc");
        render();
      });
    }
    filter.addEventListener("input", render);
    every(async () => { last = (await get("/v1/cameras")).cameras || []; render(); });
  }

  function readerRows(tbody, readers, withCamera) {
    const body = document.createElement("tbody");
    for (const r of readers) {
      const tr = document.createElement("tr");
      if (withCamera) cell(tr, link("/cameras/" + encodeURIComponent(r.camera), r.camera));
      cell(tr, r.user); cell(tr, r.remote); cell(tr, r.transport || ""); cell(tr, since(r.since));
      cell(tr, String(r.bytes_out), "num"); cell(tr, String(r.packets_out), "num"); cell(tr, String(r.dropped_packets), "num");
      body.appendChild(tr);
    }
    if (!readers.length) {
      const tr = document.createElement("tr"); tr.className = "none";
      const td = cell(tr, "No reader attached."); td.colSpan = withCamera ? 8 : 7;
      body.appendChild(tr);
    }
    tbody.parentNode.replaceChild(body, tbody);
  }

  function cameraPage() {
    const name = document.body.dataset.camera;
    every(async () => {
      const c = await get("/v1/cameras/" + encodeURIComponent(name));
      const st = document.getElementById("state");
      st.textContent = c.state; st.className = "badge state-" + c.state;
      const f = {
        since: since(c.since), codec: c.codec || "", resolution: resolution(c), fps: fps(c),
        bitrate: bitrate(c.bitrate_bps), jitter: jitter(c.rtp_jitter),
        received: c.packets_in + " packets, " + c.bytes_in + " bytes", lost: c.packets_lost + " packets",
        reconnects: String(c.reconnects), transport: c.transport + (c.on_demand ? ", on demand" : ""),
        panics: String(c.panics), last_error: c.last_error || "none",
      };
      for (const dd of document.querySelectorAll("#facts dd")) if (dd.dataset.f in f) dd.textContent = f[dd.dataset.f];
      readerRows(document.getElementById("readers").tBodies[0], c.readers || [], false);
      const drops = document.getElementById("drops");
      const body = document.createElement("tbody");
      for (const k of Object.keys(c.dropped || {}).sort()) {
        const tr = document.createElement("tr");
        cell(tr, k); cell(tr, String(c.dropped[k].units), "num"); cell(tr, String(c.dropped[k].bytes), "num");
        body.appendChild(tr);
      }
      if (!body.rows.length) { const tr = document.createElement("tr"); tr.className = "none"; cell(tr, "Nothing dropped.").colSpan = 3; body.appendChild(tr); }
      drops.replaceChild(body, drops.tBodies[0]);
      const history = document.getElementById("history");
      const hbody = document.createElement("tbody");
      for (const h of c.history || []) {
        const tr = document.createElement("tr");
        tr.className = "state-" + h.state;
        cell(tr, clock(h.time)); cell(tr, badge(h.state)); cell(tr, h.error || "", "err");
        hbody.appendChild(tr);
      }
      history.replaceChild(hbody, history.tBodies[0]);
    });
  }

  function readersPage() {
    every(async () => {
      const rs = (await get("/v1/readers")).readers || [];
      document.getElementById("count").textContent = String(rs.length);
      readerRows(document.getElementById("readers").tBodies[0], rs, true);
    });
  }

  if (page === "cameras") camerasPage();
  else if (page === "camera") cameraPage();
  else if (page === "readers") readersPage();
})();
