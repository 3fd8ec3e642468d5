/* The live page: server-sent events from the dashboard server -> FdrlView (render.js). */
(function () {
  "use strict";
  const store = new FdrlView.Store({ maxUtterances: 2000 });
  const view = new FdrlView.View(document.getElementById("app"), store, { mode: "live", windowS: 60 });
  const conn = document.getElementById("connection");
  const endpoints = document.getElementById("endpoints");
  let pending = false, replaying = false, lastRender = 0;
  const MIN_INTERVAL_MS = 100;  // at most ~10 renders a second, however many streams send

  // tests and benches read this; it is not used by the page itself
  window.fdrl = { store, view };

  function schedule() {
    if (pending) return;
    pending = true;
    const wait = Math.max(0, MIN_INTERVAL_MS - (performance.now() - lastRender));
    setTimeout(() => requestAnimationFrame(() => {
      pending = false;
      lastRender = performance.now();
      view.render();
      renderEndpoints();
    }), wait);
  }

  function renderEndpoints() {
    const items = [];
    for (const [ep, info] of store.endpoints) {
      const cls = info.state === "connected" ? "ok" : info.state === "connecting" ? "warn" : "bad";
      // ZeroMQ keeps retrying an endpoint where nothing runs yet: say that, not a hopeful "connecting"
      const state = info.state === "connecting" ? "no stream there yet (retrying)" : info.state;
      items.push(endpointChip(`${ep}: ${state}${info.detail ? ` (${info.detail})` : ""}`, cls));
    }
    endpoints.replaceChildren(...items);
  }

  function endpointChip(text, cls) {
    const s = document.createElement("span");
    s.className = `ep ${cls}`;
    s.textContent = text;
    return s;
  }

  function setConn(text, cls) {
    conn.textContent = text;
    conn.className = `conn ${cls}`;
  }

  const es = new EventSource("events");
  // this is the page's own connection to the dashboard; each stream's endpoint has its own chip
  es.onopen = () => setConn("dashboard connected", "ok");
  es.onerror = () => setConn("dashboard unreachable, retrying…", "bad");
  es.onmessage = (ev) => {
    const rx = Date.now();
    let batch;
    try { batch = JSON.parse(ev.data); } catch (e) { return; }
    for (const it of batch) {
      if (it.t === "reset") { store.reset(); replaying = true; }
      else if (it.t === "replayed") replaying = false;
      else if (it.t === "endpoint") store.endpoint(it.ep, it.state, it.detail);
      else if (it.t === "msg") store.ingest(it.topic, it.m, it.ep, rx, replaying);
    }
    schedule();
  };
  setInterval(() => view.render(), 1000);  // "silent for N s" and the like change without messages
  window.addEventListener("resize", () => { for (const s of store.streams.values()) s.dirty = true; schedule(); });
})();
