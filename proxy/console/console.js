// Cordon proxy console: refreshes the page's tables from the JSON API every
// 2 s (no reload), runs a camera's live preview (WebRTC, WHEP-style) and
// the actions (POST with the page's CSRF token). Values are written with
// textContent only.
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

  const csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  // action sends a state-changing request with the console session's token.
  function action(url, opts) {
    opts = opts || {};
    opts.headers = Object.assign({ "X-CSRF-Token": csrf }, opts.headers || {});
    opts.credentials = "same-origin";
    opts.cache = "no-store";
    return fetch(url, opts);
  }
  async function failure(r) {
    try { return (await r.json()).error || "HTTP " + r.status; } catch (e) { return "HTTP " + r.status; }
  }
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
    every(async () => {
      last = (await get("/v1/cameras")).cameras || [];
      render();
      trunks(await get("/v1/trunks"));
    });
  }

  function trunks(ts) {
    const section = document.getElementById("trunks-section");
    const list = (ts && ts.trunks) || [];
    section.hidden = !list.length && !(ts && ts.edge);
    const table = document.getElementById("trunks");
    const body = document.createElement("tbody");
    for (const t of list) {
      const tr = document.createElement("tr");
      tr.className = "state-" + t.state;
      cell(tr, t.name); cell(tr, t.address); cell(tr, badge(t.state)); cell(tr, since(t.since));
      cell(tr, String(t.cameras_up), "num"); cell(tr, (t.rtt_ns / 1e6).toFixed(1) + " ms", "num");
      cell(tr, String(t.media_bytes), "num"); cell(tr, String(t.packets_lost), "num");
      cell(tr, String(t.reconnects), "num"); cell(tr, t.last_error || "", "err");
      body.appendChild(tr);
    }
    table.replaceChild(body, table.tBodies[0]);
    const e = ts && ts.edge;
    document.getElementById("trunk-edge").textContent = e ? "This proxy is an edge on " + e.listen + ": " + (e.cores || []).length + " core(s) connected, " + e.refused + " refused." : "";
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

  // preview plays the camera in the page's <video> over WebRTC: the offer
  // goes to /v1/cameras/{name}/whep (with every candidate: no trickle),
  // the answer comes back in the response. window.cordonPreview keeps
  // the state and the last frames' timing for tests and latency figures.
  function preview(name) {
    const video = document.getElementById("preview");
    const btn = document.getElementById("preview-toggle");
    const st = document.getElementById("preview-status");
    const state = window.cordonPreview = { state: "stopped", error: "", frames: [], decoded: 0 };
    let pc = null, where = null, watchdog = 0, retry = false, camNow = "";
    function say(text, bad) {
      st.textContent = text;
      st.classList.toggle("failed", !!bad);
      if (bad) state.error = text;
    }
    function gathered(conn) {
      return new Promise((resolve) => {
        if (conn.iceGatheringState === "complete") return resolve();
        const t = setTimeout(resolve, 2000);
        conn.addEventListener("icegatheringstatechange", () => {
          if (conn.iceGatheringState === "complete") { clearTimeout(t); resolve(); }
        });
      });
    }
    function stop(text) {
      clearTimeout(watchdog);
      if (pc) pc.close();
      pc = null;
      if (where) action(where, { method: "DELETE", keepalive: true }).catch(() => {});
      where = null;
      video.srcObject = null;
      btn.textContent = "Start preview";
      state.state = "stopped";
      if (text) say(text);
    }
    async function start() {
      stop();
      state.error = "";
      state.state = "connecting";
      btn.textContent = "Stop preview";
      say("connecting…");
      const conn = pc = new RTCPeerConnection({ iceServers: [] });
      conn.addTransceiver("video", { direction: "recvonly" });
      conn.ontrack = (ev) => { video.srcObject = ev.streams[0] || new MediaStream([ev.track]); };
      conn.onconnectionstatechange = () => {
        if (conn !== pc) return;
        const s = conn.connectionState;
        if (s === "connected") { state.state = "connected"; say("connected, waiting for a picture…"); }
        if (s === "failed" || s === "disconnected") { say("preview " + s + " (the proxy or the network went away)", true); stop(); retry = true; }
      };
      await conn.setLocalDescription(await conn.createOffer());
      await gathered(conn);
      const r = await action("/v1/cameras/" + encodeURIComponent(name) + "/whep", {
        method: "POST", headers: { "Content-Type": "application/sdp" }, body: conn.localDescription.sdp,
      });
      if (!r.ok) {
        // 503: the camera is down or busy; retried when it is up again.
        retry = r.status === 503;
        throw new Error(await failure(r));
      }
      where = r.headers.get("Location");
      await conn.setRemoteDescription({ type: "answer", sdp: await r.text() });
      // A connection without decoded frames is a codec the browser cannot
      // decode: say so rather than show a black box.
      watchdog = setTimeout(() => {
        if (conn === pc && !state.decoded && camNow === "up") say("connected, but this browser decodes no picture from the camera's stream (codec or profile not supported by its WebRTC decoder)", true);
      }, 8000);
    }
    function onFrame(now, md) {
      state.decoded++;
      if (state.state !== "playing") { state.state = "playing"; say("playing: WebRTC, " + video.videoWidth + "×" + video.videoHeight); }
      state.frames.push({ rtp: md.rtpTimestamp, receive: md.receiveTime, present: md.presentationTime, expected: md.expectedDisplayTime, origin: performance.timeOrigin, media: md.mediaTime });
      if (state.frames.length > 300) state.frames.shift();
      video.requestVideoFrameCallback(onFrame);
    }
    if ("requestVideoFrameCallback" in video) video.requestVideoFrameCallback(onFrame);
    else video.addEventListener("playing", () => { state.decoded++; state.state = "playing"; say("playing: WebRTC"); });
    video.addEventListener("error", () => say("video error: " + (video.error && video.error.message), true));
    btn.addEventListener("click", () => {
      if (pc) stop("stopped");
      else { retry = false; run(); }
    });
    window.addEventListener("pagehide", () => stop());
    // Nobody watches a hidden tab: end the preview, start again when shown.
    let hiddenStop = false;
    document.addEventListener("visibilitychange", () => {
      if (document.hidden && pc) { hiddenStop = true; stop("paused while the tab is hidden"); }
      else if (!document.hidden && hiddenStop) { hiddenStop = false; run(); }
    });
    if (typeof RTCPeerConnection === "undefined") { say("this browser has no WebRTC", true); btn.disabled = true; return; }
    function run() { start().catch((e) => { const m = e.message; stop(); say(m, true); state.error = m; }); }
    run();
    // Called at each refresh: a preview that failed because the camera was
    // down starts again once it is up.
    return function cameraState(camState) {
      camNow = camState;
      if (retry && !pc && camState === "up" && !document.hidden) { retry = false; run(); }
      // The preview stays attached while the camera is down and plays on
      // when it is back: say what it waits for.
      if (pc && state.state !== "playing" && camState !== "up") say("waiting for the camera, which is " + camState.replace("_", " ") + "…");
      if (pc && state.state === "playing" && camState !== "up") say("the camera is " + camState.replace("_", " ") + "; the picture resumes when it is back");
      if (pc && state.state === "playing" && camState === "up") say("playing: WebRTC, " + video.videoWidth + "×" + video.videoHeight);
    };
  }

  function reconnectButton(name) {
    const btn = document.getElementById("reconnect");
    const st = document.getElementById("reconnect-status");
    btn.addEventListener("click", async () => {
      btn.disabled = true;
      try {
        const r = await action("/v1/cameras/" + encodeURIComponent(name) + "/reconnect", { method: "POST" });
        if (!r.ok) throw new Error(await failure(r));
        const j = await r.json();
        st.textContent = j.session_was_running ? "session ended; reconnecting" : "no session was running; the camera retries on its own";
        st.classList.remove("failed");
      } catch (e) {
        st.textContent = "reconnect failed: " + e.message;
        st.classList.add("failed");
      } finally {
        btn.disabled = false;
      }
    });
  }

  function cameraPage() {
    const name = document.body.dataset.camera;
    const previewWatch = preview(name);
    reconnectButton(name);
    every(async () => {
      const c = await get("/v1/cameras/" + encodeURIComponent(name));
      const st = document.getElementById("state");
      st.textContent = c.state; st.className = "badge state-" + c.state;
      if (previewWatch) previewWatch(c.state);
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
