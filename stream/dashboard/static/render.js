/* fdrl-stream views: the one place that turns stream messages into the page.
 * Used by the live dashboard (live.js feeds it from the server) and inlined into the HTML run report
 * (stream/report.py). Plain JS, no dependencies, no network. Message text is only ever set with
 * textContent, never parsed as HTML.
 */
(function (global) {
  "use strict";

  /** An emotion message's latency: from the end of voice (live audio: what the speaker waits) when the run
   *  measured it, else from the VAD's end-of-speech decision (a file read faster than real time). */
  const finalLatency = (e) => {
    const l = (e && e.latency_ms) || {};
    if (typeof l.voice_end_to_publish === "number") return { ms: l.voice_end_to_publish, from: "end of voice" };
    if (typeof l.eos_to_publish === "number") return { ms: l.eos_to_publish, from: "VAD decision" };
    return { ms: null, from: null };
  };
  /** What a latency column is measured from, for a set of utterances. */
  const latencyBasis = (utts) => (utts.some((u) => finalLatency(u.emo).from === "end of voice")
    ? "end of voice" : "VAD decision");

  // ------------------------------------------------------------------ labels and colours

  const LABEL_COLORS = {
    neutral: "#7b8798", happy: "#e2a313", angry: "#d2453d", sad: "#3b78c9", fear: "#8c5bc4",
    fearful: "#8c5bc4", surprise: "#16a394", surprised: "#16a394", disgust: "#6f8f2a", calm: "#4fa3a0",
    excited: "#f07b1e", frustrated: "#a3485f", contempt: "#8a6a45", other: "#9aa0a6", unknown: "#9aa0a6",
  };
  const EXTRA_COLORS = ["#c2185b", "#00897b", "#7b1fa2", "#ef6c00", "#5d4037", "#0097a7", "#689f38", "#455a64"];

  function labelColor(label) {
    const key = String(label || "").toLowerCase();
    if (LABEL_COLORS[key]) return LABEL_COLORS[key];
    let h = 0;
    for (let i = 0; i < key.length; i++) h = (h * 31 + key.charCodeAt(i)) >>> 0;
    return EXTRA_COLORS[h % EXTRA_COLORS.length];
  }

  // ------------------------------------------------------------------ message fields
  // Fields added after fdrl.*/1 are read here only, so a renamed field is a one-line change.

  const Fields = {
    /** {flag, reason} — the model's "not sure" outcome (absent in older messages). */
    uncertain(m) {
      const u = m.uncertain;
      if (u && typeof u === "object") return { flag: u.flag !== false, reason: u.reason || null };
      if (typeof u === "string" && u) return { flag: true, reason: u };
      const reason = m.uncertain_reason || m.uncertainty_reason || null;
      return { flag: u === true, reason: u === true ? reason : null };
    },
    /** true/false for provisional emotions that say whether they are stable; null when not said. */
    stable(m) {
      if (typeof m.stable === "boolean") return m.stable;
      if (typeof m.stability === "boolean") return m.stability;
      if (typeof m.stability === "number") return m.stability >= 0.5;
      return null;
    },
    /** committed (will not change) and tentative (may change) parts of a transcript. */
    words(t) {
      const text = t.text || "";
      const c = t.committed ?? t.committed_text ?? t.stable_text;
      const u = t.tentative ?? t.tentative_text ?? t.unstable_text;
      if (typeof c === "string" || typeof u === "string") {
        const committed = typeof c === "string" ? c : "";
        let tentative = typeof u === "string" ? u : text.slice(committed.length);
        return { committed, tentative: tentative.trim() ? tentative : "" };
      }
      return t.partial ? { committed: "", tentative: text } : { committed: text, tentative: "" };
    },
  };

  // ------------------------------------------------------------------ store

  function wins(old, m) {
    // A final beats provisional results, except that speech resuming after an "early" final reopens the
    // utterance (its new partials carry higher revisions); otherwise the higher (or same = newer) revision wins.
    if (!old) return true;
    if (old.partial && !m.partial) return true;
    if (!old.partial && m.partial) return old.final_kind === "early" && (m.revision || 0) > (old.revision || 0);
    return (m.revision || 0) >= (old.revision || 0);
  }

  function median(xs) {
    if (!xs.length) return null;
    const s = xs.slice().sort((a, b) => a - b);
    const k = (s.length - 1) / 2;
    return (s[Math.floor(k)] + s[Math.ceil(k)]) / 2;
  }

  function quantile(xs, q) {
    if (!xs.length) return null;
    const s = xs.slice().sort((a, b) => a - b);
    const pos = (s.length - 1) * q, lo = Math.floor(pos), hi = Math.ceil(pos);
    return s[lo] + (s[hi] - s[lo]) * (pos - lo);
  }

  class Store {
    /** opts.maxUtterances: per stream, oldest forgotten first (a page left open for days stays small). */
    constructor(opts) {
      this.maxUtterances = (opts && opts.maxUtterances) || Infinity;
      this.streams = new Map();
      this.endpoints = new Map();
      this.received = 0;       // messages taken in since the page loaded (tests read this)
      this.liveReceived = 0;   // of those, not part of a replayed snapshot
      this.version = 0;
    }

    reset() {
      this.streams.clear();
      this.generation = (this.generation || 0) + 1;  // views drop what they drew from the old state
      this.version++;
    }

    endpoint(ep, state, detail) {
      this.endpoints.set(ep, { state, detail, since: Date.now() });
      this.version++;
    }

    stream(id) {
      let s = this.streams.get(id);
      if (!s) {
        s = {
          id, endpoint: null, source: null, model: null, labels: [], utts: new Map(), status: null,
          ended: false, errors: [], lastRx: 0, delivery: [], seq: {}, missed: 0,
          rssPeak: null, dirty: true, selected: null, latest: null, audioEnd: 0,
        };
        this.streams.set(id, s);
      }
      return s;
    }

    /** Take in one message. `rxMs` is when it arrived (browser clock) for the delivery latency, or null. */
    ingest(topic, m, endpoint, rxMs, replayed) {
      if (!m || typeof m !== "object" || typeof m.stream_id !== "string") return;
      const s = this.stream(m.stream_id);
      this.received++;
      if (!replayed) this.liveReceived++;
      if (endpoint) s.endpoint = endpoint;
      s.lastRx = Date.now();
      if (rxMs != null && typeof m.wall_time === "number" && !replayed) {
        s.delivery.push(Math.max(0, rxMs - m.wall_time * 1000));
        if (s.delivery.length > 200) s.delivery.shift();
      }
      if (typeof m.seq === "number" && !replayed) {
        const last = s.seq[topic];
        if (last != null && m.seq > last + 1) s.missed += m.seq - last - 1;
      }
      if (typeof m.seq === "number") s.seq[topic] = m.seq;
      s.dirty = true;
      this.version++;
      if (topic === "status") {
        s.status = m;
        if (m.kind === "stop") s.ended = true;
        if (m.kind === "start") s.ended = false;
        if (m.kind === "error" && m.error) s.errors.push(m);
        if (s.errors.length > 20) s.errors.shift();
        if (m.source) s.source = m.source;
        if (typeof m.rss_mb === "number") s.rssPeak = Math.max(s.rssPeak || 0, m.rss_mb);
        if (typeof m.audio_time === "number") s.audioEnd = Math.max(s.audioEnd, m.audio_time);
        return;
      }
      const uid = m.utterance_id;
      if (typeof uid !== "number") return;
      let u = s.utts.get(uid);
      if (!u) {
        u = { id: uid, emo: null, tr: null, finalRevisions: 0, version: 0 };
        s.utts.set(uid, u);
        if (s.utts.size > this.maxUtterances) {
          s.utts.delete(Math.min(...s.utts.keys()));
          s.forgotten = (s.forgotten || 0) + 1;
        }
      }
      if (topic === "emotion") {
        if (!wins(u.emo, m)) return;
        if (!m.partial && u.emo && !u.emo.partial) u.finalRevisions++;
        u.emo = m;
        if (m.model) s.model = m.model;
        if (m.scores) {
          for (const k of Object.keys(m.scores)) if (!s.labels.includes(k)) s.labels.push(k);
        }
        s.latest = uid;
      } else if (topic === "transcript") {
        if (!wins(u.tr, m)) return;
        u.tr = m;
      }
      u.start = Math.min(...[u.emo, u.tr].filter(Boolean).map((x) => x.start));
      u.end = Math.max(...[u.emo, u.tr].filter(Boolean).map((x) => x.end));
      s.audioEnd = Math.max(s.audioEnd, u.end || 0);
      u.version++;
    }

    /** Utterances of a stream in order. */
    utterances(s) {
      return Array.from(s.utts.values()).sort((a, b) => a.id - b.id);
    }

    summary(s) {
      const utts = this.utterances(s);
      const finals = utts.filter((u) => u.emo && !u.emo.partial);
      const counts = {}, time = {};
      let conf = 0, uncertain = 0, textUsed = 0, speech = 0;
      const lat = [];
      for (const u of finals) {
        const e = u.emo;
        counts[e.label] = (counts[e.label] || 0) + 1;
        time[e.label] = (time[e.label] || 0) + Math.max(0, e.end - e.start);
        speech += Math.max(0, e.end - e.start);
        conf += e.confidence || 0;
        if (Fields.uncertain(e).flag) uncertain++;
        if (e.text_used) textUsed++;
        const l = finalLatency(e).ms;
        if (typeof l === "number") lat.push(l);
      }
      const st = s.status || {};
      const counters = st.counters || {};
      return {
        utterances: finals.length, provisional: utts.length - finals.length, counts, time, speech,
        meanConfidence: finals.length ? conf / finals.length : null, uncertain, textUsed,
        latencyMedian: median(lat), latencyP95: quantile(lat, 0.95), audio: s.audioEnd,
        rtf: st.rtf, rssPeak: s.rssPeak, dropped: counters.dropped_audio_frames, errors: counters.errors,
      };
    }
  }

  // ------------------------------------------------------------------ DOM helpers

  const SVG = "http://www.w3.org/2000/svg";

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k === "style") e.style.cssText = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children) if (c != null && c !== false) e.append(c);
    return e;
  }

  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null) continue;
      if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v);
    }
    for (const c of children) if (c != null) e.append(c);
    return e;
  }

  const fmt = {
    s(x, nd = 1) { return x == null ? "–" : `${x.toFixed(nd)} s`; },
    ms(x) { return x == null ? "–" : x >= 1000 ? `${(x / 1000).toFixed(2)} s` : `${Math.round(x)} ms`; },
    pct(x) { return x == null ? "–" : `${Math.round(x * 100)}%`; },
    clock(t) {
      if (t == null) return "–";
      const m = Math.floor(t / 60), s = t - m * 60;
      return `${m}:${s < 10 ? "0" : ""}${s.toFixed(1)}`;
    },
    num(x, nd = 2) { return x == null ? "–" : Number(x).toFixed(nd); },
  };

  function niceStep(span, target) {
    const raw = span / Math.max(1, target);
    for (const s of [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600]) if (s >= raw) return s;
    return 7200;
  }

  function counterName(k) {
    const names = {
      dropped_audio_frames: "dropped audio", queue_depth: "queue", pending_work: "pending", errors: "errors",
      send_failures: "send failures", messages_sent: "messages", utterances: "utterances", partials: "partial passes",
      discarded: "discarded", dropped_blocks: "dropped blocks", input_overflows: "input overflows",
    };
    return names[k] || k.replace(/_/g, " ");
  }
  const BAD_COUNTER = /drop|overflow|error|fail|lost|miss|xrun|underrun/i;
  // shown only when not zero (dropped audio and errors are always shown: a 0 there is news too)
  const QUIET_WHEN_ZERO = new Set(["dropped_blocks", "input_overflows", "send_failures", "discarded"]);

  // ------------------------------------------------------------------ view

  const TIMELINE_H = 118, PLOT_TOP = 16, PLOT_H = 78, AXIS_Y = PLOT_TOP + PLOT_H;

  class View {
    /**
     * root: element to fill; store: Store; opts.mode: "live" (sliding window, follows the newest) or
     * "report" (the whole run); opts.windowS: live window length in seconds.
     */
    constructor(root, store, opts) {
      this.root = root;
      this.store = store;
      this.mode = (opts && opts.mode) || "live";
      this.windowS = (opts && opts.windowS) || 60;
      this.panels = new Map();
      this.seenVersion = -1;
      this.root.classList.add("fdrl-view", `mode-${this.mode}`);
      this.streamsBox = el("div", { class: "streams" });
      this.empty = el("p", { class: "empty", text: this.mode === "live" ? this.waitingText() : "No messages." });
      this.summaryBox = el("section", { class: "summary" });
      this.root.append(this.empty, this.streamsBox, this.summaryBox);
      this.legend();
    }

    /** What an empty live page says: which endpoints it waits on and how to start a stream there. */
    waitingText() {
      const eps = Array.from(this.store.endpoints.entries());
      if (!eps.length) return "Waiting for a stream… start one with: python -m stream.run --demo --realtime";
      const local = eps.find(([, info]) => info.detail === "this run");
      if (local) return `Waiting for a stream… this run publishes on ${local[0]} (its models may still be loading)`;
      const names = eps.map(([ep]) => ep).join(", ");
      return `Waiting for a stream on ${names}… start one with: python -m stream.run --demo --realtime ` +
        `--endpoint ${eps[0][0]}`;
    }

    legend() {
      const box = el("div", { class: "legend" });
      const sample = (cls, text) => el("span", { class: `key ${cls}` }, el("i"), text);
      box.append(sample("final", "final"), sample("provisional", "provisional"),
        sample("unstable", "provisional, unstable"), sample("uncertain", "uncertain"),
        el("span", { class: "hint", text: "span height = confidence · click a span or line for its scores" }));
      this.root.prepend(box);
    }

    render() {
      if (this.store.version === this.seenVersion && this.mode === "report") return;
      const changed = this.store.version !== this.seenVersion;
      this.seenVersion = this.store.version;
      const ids = Array.from(this.store.streams.keys()).sort();
      this.empty.hidden = ids.length > 0;
      if (!ids.length && this.mode === "live" && changed) this.empty.textContent = this.waitingText();
      this.streamsBox.classList.toggle("many", ids.length >= 3);
      const fresh = this.generation !== this.store.generation;
      this.generation = this.store.generation;
      for (const [id, p] of this.panels) {
        if (fresh || !this.store.streams.has(id)) { p.root.remove(); this.panels.delete(id); }
      }
      const work = [];
      for (const id of ids) {
        const s = this.store.streams.get(id);
        let p = this.panels.get(id);
        if (!p) {
          p = this.panel(s);
          this.panels.set(id, p);
          const next = ids.slice(ids.indexOf(id) + 1).map((k) => this.panels.get(k)).find(Boolean);
          this.streamsBox.insertBefore(p.root, next ? next.root : null);  // panels in stream-id order
        }
        work.push([s, p, s.dirty]);
      }
      // read layout for every panel first, then write: one layout pass per render, not one per stream
      for (const [, p, dirty] of work) {
        if (!dirty) continue;
        p.width = p.timeline.clientWidth;
        const box = p.transcript;
        p.atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 30;
      }
      for (const [s, p, dirty] of work) {
        this.renderState(s, p);
        if (!dirty) continue;
        this.renderHeader(s, p);
        this.renderTimeline(s, p);
        this.renderTranscript(s, p);
        this.renderCurrent(s, p);
        s.dirty = false;
      }
      for (const [, p, dirty] of work) if (dirty && p.follow) p.transcript.scrollTop = p.transcript.scrollHeight;
      // the summary changes slowly: at most twice a second on the live page
      const now = Date.now();
      if (changed && (this.mode === "report" || !(now - (this.summaryAt || 0) < 500))) {
        this.summaryAt = now;
        this.renderSummary();
      } else if (changed) {
        clearTimeout(this.summaryTimer);
        this.summaryTimer = setTimeout(() => { this.summaryAt = Date.now(); this.renderSummary(); }, 500);
      }
    }

    panel(s) {
      const p = {};
      p.title = el("h2", { class: "stream-id", text: s.id });
      p.state = el("span", { class: "state" });
      p.source = el("span", { class: "source" });
      p.counters = el("div", { class: "counters" });
      p.error = el("div", { class: "last-error", hidden: true });
      p.timeline = el("div", { class: "timeline" });
      p.transcript = el("ol", { class: "transcript" });
      p.noSpeech = el("p", { class: "muted no-speech", hidden: true });
      p.current = el("div", { class: "current" });
      p.rows = new Map();
      p.root = el("section", { class: "stream", "data-stream": s.id },
        el("header", null, p.title, p.state, p.source), p.counters, p.error, p.timeline,
        el("div", { class: "cols" }, el("div", { class: "transcript-box" }, el("h3", { text: "Transcript" }),
          p.noSpeech, p.transcript), p.current));
      return p;
    }

    select(s, uid) {
      s.selected = s.selected === uid ? null : uid;
      s.dirty = true;
      this.store.version++;
      this.render();
    }

    // ---------------------------------------------------------------- header and counters

    renderState(s, p) {
      const silentMs = Date.now() - s.lastRx;
      let state = "live", cls = "live";
      if (this.mode === "report") { state = s.ended ? "complete" : "incomplete"; cls = s.ended ? "ended" : "warn"; }
      else if (s.ended) { state = "ended"; cls = "ended"; }
      else if (silentMs > 3500) { state = `silent ${Math.round(silentMs / 1000)} s`; cls = "warn"; }
      if (p.state.textContent !== state) p.state.textContent = state;
      if (p.state.className !== `state ${cls}`) p.state.className = `state ${cls}`;
      const st = s.status || {};
      const src = [s.source, s.endpoint && this.mode === "live" ? `via ${s.endpoint}` : null,
        st.curve === true ? "encrypted (CURVE)" : null, s.model].filter(Boolean).join(" · ");
      if (p.source.textContent !== src) p.source.textContent = src;
    }

    renderHeader(s, p) {
      const st = s.status || {};
      const c = st.counters || {};
      const chips = [];
      const chip = (name, value, bad, title) => chips.push(el("span", { class: `chip${bad ? " bad" : ""}`, title },
        el("b", { text: value }), ` ${name}`));
      chip("audio", fmt.s(st.audio_time ?? s.audioEnd));
      chip("RTF", fmt.num(st.rtf), st.rtf != null && st.rtf > 1, "processing time / audio time (below 1 keeps up)");
      chip("memory", st.rss_mb != null ? `${Math.round(st.rss_mb)} MB` : "–");
      const lat = st.latency_ms;
      const voice = lat && lat.voice_end;
      if (voice && voice.median != null) {
        chip("end of voice → emotion (median / p95)", `${fmt.ms(voice.median)} / ${fmt.ms(voice.p95)}`, false,
          "from the last voiced audio of each utterance to its final emotion message: what the speaker waits; " +
          "measured by the run over every final it published, early finals later revised included");
      } else if (lat && lat.median != null) {
        chip("VAD decision → emotion (median / p95)", `${fmt.ms(lat.median)} / ${fmt.ms(lat.p95)}`, false,
          "audio read faster than real time: from the end-of-speech decision to the final emotion message " +
          "(processing time only)");
      }
      if (this.mode === "live") {
        const d = median(s.delivery.slice(-50));
        chip("publish → page", fmt.ms(d), false, "time from publishing a message to this page receiving it");
      }
      const order = ["utterances", "dropped_audio_frames", "dropped_blocks", "input_overflows", "errors",
        "queue_depth", "pending_work",
        "send_failures", "discarded", "partials", "messages_sent"];
      const keys = order.filter((k) => k in c).concat(Object.keys(c).filter((k) => !order.includes(k)).sort());
      const transient = this.mode === "report" ? ["queue_depth", "pending_work"] : [];  // meaningless at the end
      for (const k of keys) {
        if (transient.includes(k)) continue;
        const v = c[k];
        if (v === 0 && QUIET_WHEN_ZERO.has(k)) continue;
        chip(counterName(k), String(v), BAD_COUNTER.test(k) && v > 0);
      }
      if (s.missed) chip("missed messages", String(s.missed), true, "gaps in seq: this page missed messages");
      p.counters.replaceChildren(...chips);
      const err = s.errors[s.errors.length - 1];
      p.error.hidden = !err;
      if (err) {
        const e = err.error;
        p.error.textContent = `error in ${e.stage}${e.utterance_id != null ? ` (utterance ${e.utterance_id})` : ""}: ${e.message}`;
      }
    }

    // ---------------------------------------------------------------- timeline

    renderTimeline(s, p) {
      const utts = this.store.utterances(s).filter((u) => u.emo || u.tr);
      const width = Math.max(320, p.width || p.timeline.clientWidth || 900);
      const end = Math.max(s.audioEnd, ...utts.map((u) => u.end || 0), 1);
      let t0 = 0, t1 = end, pxPerS;
      if (this.mode === "live") {
        t1 = Math.max(end, Math.min(this.windowS, end + 2));
        t0 = Math.max(0, t1 - this.windowS);
        pxPerS = width / (t1 - t0);
      } else {
        t1 = end * 1.01 + 0.5;
        pxPerS = Math.max(width / t1, 14);
      }
      const w = Math.ceil((t1 - t0) * pxPerS);
      const x = (t) => (t - t0) * pxPerS;
      const root = svg("svg", { width: w, height: TIMELINE_H, class: "timeline-svg", role: "img",
        "aria-label": `emotion timeline of ${s.id}` });
      root.append(svg("defs", null,
        svg("pattern", { id: `hatch-${p.uid || (p.uid = Math.random().toString(36).slice(2))}`,
          width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" },
        svg("rect", { width: 6, height: 6, fill: "#ffffff", "fill-opacity": 0.35 }),
        svg("line", { x1: 0, y1: 0, x2: 0, y2: 6, stroke: "#3a3f47", "stroke-width": 2.2, "stroke-opacity": 0.55 }))));
      const hatch = `url(#hatch-${p.uid})`;
      // confidence grid
      for (const q of [0.5, 1]) {
        const y = AXIS_Y - q * PLOT_H;
        root.append(svg("line", { x1: 0, x2: w, y1: y, y2: y, class: "grid" }));
        root.append(svg("text", { x: w - 3, y: y - 2, class: "grid-label", "text-anchor": "end",
          text: q === 1 ? "confidence 1.0" : "0.5" }));
      }
      // axis
      root.append(svg("line", { x1: 0, x2: w, y1: AXIS_Y, y2: AXIS_Y, class: "axis" }));
      const step = niceStep(t1 - t0, w / 90);
      for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) {
        root.append(svg("line", { x1: x(t), x2: x(t), y1: AXIS_Y, y2: AXIS_Y + 4, class: "axis" }));
        if (x(t) + 40 <= w) root.append(svg("text", { x: x(t) + 2, y: AXIS_Y + 15, class: "tick", text: fmt.clock(t) }));
      }
      for (const u of utts) {
        if (u.end < t0 || u.start > t1) continue;
        const e = u.emo;
        const label = e ? e.label : "…";
        const conf = e ? e.confidence || 0 : 0.15;
        const unc = e ? Fields.uncertain(e) : { flag: false };
        const stable = e ? Fields.stable(e) : null;
        const provisional = !e || e.partial;
        const color = e ? labelColor(label) : "#b8bec7";
        const x0 = x(Math.max(u.start, t0)), x1 = x(Math.min(u.end, t1));
        const bw = Math.max(2, x1 - x0 - 1), h = Math.max(4, conf * PLOT_H);
        const cls = ["span", provisional ? "provisional" : "final", unc.flag ? "uncertain" : null,
          provisional && stable === false ? "unstable" : null, s.selected === u.id ? "selected" : null]
          .filter(Boolean).join(" ");
        const g = svg("g", { class: cls, "data-utt": u.id, "data-label": label,
          onclick: () => this.select(s, u.id) });
        const tip = [`#${u.id} ${fmt.clock(u.start)}–${fmt.clock(u.end)}`,
          e ? `${label} ${fmt.pct(e.confidence)}${provisional ? ` (provisional r${e.revision})` : ""}` : "transcribing",
          unc.flag ? `uncertain${unc.reason ? `: ${unc.reason}` : ""}` : null,
          u.tr && u.tr.text ? `“${u.tr.text}”` : null].filter(Boolean).join("\n");
        g.append(svg("title", { text: tip }));
        g.append(svg("rect", { x: x0, y: AXIS_Y - h, width: bw, height: h, fill: color, class: "bar", rx: 2 }));
        if (unc.flag) g.append(svg("rect", { x: x0, y: AXIS_Y - h, width: bw, height: h, fill: hatch, rx: 2,
          class: "hatch" }));
        const text = `${label}${unc.flag ? "?" : ""}${provisional && e ? "…" : ""}`;
        if (bw > 30) {
          g.append(svg("text", { x: x0 + 3, y: Math.max(PLOT_TOP - 3, AXIS_Y - h - 4), class: "span-label",
            text: bw > 7 * text.length ? text : text.slice(0, Math.max(1, Math.floor(bw / 7))) }));
        }
        root.append(g);
      }
      p.timeline.replaceChildren(root);  // live: the window fits the width, so there is nothing to scroll
    }

    // ---------------------------------------------------------------- transcript

    renderTranscript(s, p) {
      const box = p.transcript;
      const atBottom = p.atBottom !== false;
      const utts = this.store.utterances(s);
      const keep = this.mode === "live" ? utts.slice(-300) : utts;
      p.noSpeech.hidden = utts.length > 0;
      if (!utts.length) {
        p.noSpeech.textContent = this.mode === "live" && !s.ended ? "listening… no speech yet"
          : `no speech found in ${fmt.s(s.status && s.status.audio_time != null ? s.status.audio_time : s.audioEnd)} of audio`;
      }
      const keepIds = new Set(keep.map((u) => u.id));
      for (const [id, row] of p.rows) if (!keepIds.has(id)) { row.li.remove(); p.rows.delete(id); }
      let prev = null;
      for (const u of keep) {
        let row = p.rows.get(u.id);
        if (!row) {
          row = { li: el("li", { "data-utt": u.id, onclick: () => this.select(s, u.id) }), version: -1 };
          p.rows.set(u.id, row);
          if (prev) prev.li.after(row.li); else box.prepend(row.li);
        }
        const sel = s.selected === u.id;
        if (row.version !== u.version || row.sel !== sel) this.fillRow(s, u, row.li, sel);
        row.version = u.version;
        row.sel = sel;
        prev = row;
      }
      p.follow = this.mode === "live" && atBottom;  // scrolled after all panels are written (one layout)
    }

    fillRow(s, u, li, sel) {
      const e = u.emo, t = u.tr;
      const unc = e ? Fields.uncertain(e) : { flag: false };
      li.className = ["utt", !e || e.partial ? "provisional" : "final", unc.flag ? "uncertain" : null,
        sel ? "selected" : null].filter(Boolean).join(" ");
      const tag = el("span", { class: "label-tag", text: e ? `${e.label}${unc.flag ? "?" : ""}` : "…",
        style: e ? `--c:${labelColor(e.label)}` : null });
      const conf = el("span", { class: "conf", text: e ? fmt.pct(e.confidence) : "" });
      const words = t ? Fields.words(t) : { committed: e ? e.transcript : "", tentative: "" };
      const text = el("span", { class: `text${t && t.reliable === false ? " unreliable" : ""}` });
      if (words.committed) text.append(el("span", { class: "committed", text: words.committed }));
      if (words.tentative) text.append(el("span", { class: "tentative", text: (words.committed ? " " : "") + words.tentative.trim() }));
      if (!words.committed && !words.tentative) text.append(el("span", { class: "nowords", text: "(no words)" }));
      const notes = [];
      if (t && t.reliable === false) notes.push(`unreliable text: ${t.reason || "rejected"}`);
      else if (e && !e.text_used && e.text_dropped) notes.push(`text not used: ${e.text_dropped}`);
      if (unc.flag) notes.push(`uncertain${unc.reason ? `: ${unc.reason}` : ""}`);
      if (e && !e.partial && (u.finalRevisions || e.revises != null)) {
        notes.push(`revised final${e.revises != null ? ` (replaces r${e.revises})` : ""}`);
      }
      const cells = [el("span", { class: "time", text: fmt.clock(u.start) }), tag, conf,
        e ? this.stackBar(e, s) : el("span", { class: "stack" }), text];
      if (notes.length) cells.push(el("span", { class: "note", text: notes.join(" · ") }));
      li.replaceChildren(...cells);
    }

    stackBar(e, s) {
      const bar = el("span", { class: "stack", title: this.scoreTitle(e, s) });
      for (const k of s.labels) {
        const v = (e.scores || {})[k] || 0;
        if (v > 0.005) bar.append(el("i", { style: `width:${(v * 100).toFixed(1)}%;background:${labelColor(k)}` }));
      }
      return bar;
    }

    scoreTitle(e, s) {
      return s.labels.map((k) => `${k} ${fmt.pct((e.scores || {})[k] || 0)}`).join(" · ");
    }

    // ---------------------------------------------------------------- current utterance

    renderCurrent(s, p) {
      const uid = s.selected != null && s.utts.has(s.selected) ? s.selected : s.latest;
      const u = uid != null ? s.utts.get(uid) : null;
      const box = [];
      const heading = el("h3", { text: s.selected != null ? "Selected utterance"
        : this.mode === "live" ? "Current utterance" : "Last utterance" });
      if (s.selected != null) heading.append(el("button", { class: "follow", text: "follow latest",
        onclick: (ev) => { ev.stopPropagation(); this.select(s, s.selected); } }));
      box.push(heading);
      if (!u || !u.emo) {
        box.push(el("p", { class: "muted", text: this.mode === "live" && !s.ended ? "no emotion yet" : "no utterances" }));
        p.current.replaceChildren(...box);
        return;
      }
      const e = u.emo;
      const unc = Fields.uncertain(e), stable = Fields.stable(e);
      const state = e.partial ? `provisional r${e.revision}${stable === true ? ", stable" : stable === false
        ? ", unstable" : ""}` : `final${e.final_kind === "early" ? " (early)" : ""} r${e.revision}${
        e.revises != null ? `, revises r${e.revises}` : ""}`;
      box.push(el("div", { class: "current-head", "data-utt": u.id },
        el("span", { class: "label-tag big", text: e.label, style: `--c:${labelColor(e.label)}` }),
        el("span", { class: "conf big", text: fmt.pct(e.confidence) }),
        el("span", { class: `badge ${e.partial ? "provisional" : "final"}`, text: state }),
        unc.flag ? el("span", { class: "badge uncertain", text: `uncertain${unc.reason ? `: ${unc.reason}` : ""}` }) : null));
      box.push(el("div", { class: "muted small", text: `#${u.id} · ${fmt.clock(u.start)}–${fmt.clock(u.end)} · ${
        (e.modalities || []).join(" + ")}${e.text_used ? "" : e.text_dropped ? ` · text not used (${e.text_dropped})` : ""}` }));
      const bars = el("div", { class: "scores" });
      for (const k of s.labels) {
        const v = (e.scores || {})[k] || 0;
        bars.append(el("div", { class: `score${k === e.label ? " winner" : ""}`, "data-label": k },
          el("span", { class: "name", text: k }),
          el("span", { class: "track" }, el("i", { style: `width:${(v * 100).toFixed(1)}%;background:${labelColor(k)}` })),
          el("span", { class: "val", text: fmt.pct(v) })));
      }
      box.push(bars);
      const lat = e.latency_ms || {};
      const dl = el("dl", { class: "latency" });
      const row = (k, v) => dl.append(el("dt", { text: k }), el("dd", { text: v }));
      row("ASR pass", fmt.ms(lat.asr));
      row("emotion", fmt.ms(lat.emotion));
      const fl = finalLatency(e);
      row(`${fl.from || "end of voice"} → publish`, e.partial ? "(provisional)" : fmt.ms(fl.ms));
      box.push(el("h4", { text: "Latency" }), dl);
      p.current.replaceChildren(...box);
    }

    // ---------------------------------------------------------------- summary

    renderSummary() {
      const streams = Array.from(this.store.streams.values()).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      if (!streams.length) { this.summaryBox.replaceChildren(); return; }
      const basis = latencyBasis(streams.flatMap((s) => this.store.utterances(s)));
      const head = ["stream", "audio", "utterances", "labels", "mean conf.", "uncertain", "text used",
        `${basis} → emotion per utterance, median / p95`, "RTF", "peak memory", "dropped audio", "errors"];
      const table = el("table", { class: "summary-table" },
        el("thead", null, el("tr", null, ...head.map((h) => el("th", { text: h })))));
      const body = el("tbody");
      for (const s of streams) {
        const m = this.store.summary(s);
        const labels = el("span", { class: "label-counts" });
        for (const k of s.labels) {
          if (!m.counts[k]) continue;
          labels.append(el("span", { class: "label-tag small", text: `${k} ${m.counts[k]}`, style: `--c:${labelColor(k)}`,
            title: `${fmt.s(m.time[k])} of speech` }));
        }
        body.append(el("tr", { "data-stream": s.id },
          el("td", { text: s.id }), el("td", { text: fmt.s(m.audio) }),
          el("td", { text: `${m.utterances}${m.provisional ? ` (+${m.provisional} in progress)` : ""}${
            s.forgotten ? ` (the last ${s.utts.size} of ${s.utts.size + s.forgotten})` : ""}` }),
          el("td", null, labels), el("td", { text: fmt.pct(m.meanConfidence) }),
          el("td", { text: String(m.uncertain) }), el("td", { text: `${m.textUsed}/${m.utterances}` }),
          el("td", { text: `${fmt.ms(m.latencyMedian)} / ${fmt.ms(m.latencyP95)}` }),
          el("td", { text: fmt.num(m.rtf) }), el("td", { text: m.rssPeak != null ? `${Math.round(m.rssPeak)} MB` : "–" }),
          el("td", { class: m.dropped ? "bad" : null, text: m.dropped != null ? String(m.dropped) : "–" }),
          el("td", { class: m.errors ? "bad" : null, text: m.errors != null ? String(m.errors) : "–" })));
      }
      table.append(body);
      const parts = [el("h2", { text: "Summary" }), el("div", { class: "table-scroll" }, table)];
      if (this.mode === "report") {
        for (const s of streams) parts.push(this.latencyChart(s), this.utteranceTable(s));
      }
      this.summaryBox.replaceChildren(...parts);
    }

    /** End of speech -> final emotion for each utterance, as bars in the label's colour, with the median. */
    latencyChart(s) {
      const finals = this.store.utterances(s).filter((u) => u.emo && !u.emo.partial
        && typeof finalLatency(u.emo).ms === "number");
      const box = el("div", { class: "latency-chart", "data-stream": s.id },
        el("h3", { text: `End of speech → emotion · ${s.id}` }));
      if (!finals.length) { box.append(el("p", { class: "muted small", text: "no latency measured" })); return box; }
      const vals = finals.map((u) => finalLatency(u.emo).ms);
      const top = Math.max(...vals) * 1.15, H = 120, base = H - 18, bw = Math.max(8, Math.min(40, 900 / finals.length));
      const w = Math.max(420, finals.length * (bw + 6) + 140);
      const y = (v) => base - (v / top) * (base - 14);
      const chart = svg("svg", { width: w, height: H, class: "latency-svg", role: "img",
        "aria-label": `latency per utterance of ${s.id}` });
      chart.append(svg("line", { x1: 44, x2: w, y1: base, y2: base, class: "axis" }));
      finals.forEach((u, i) => {
        const v = finalLatency(u.emo).ms, x = 50 + i * (bw + 6);
        const g = svg("g", { class: "lat-bar", "data-utt": u.id, onclick: () => this.select(s, u.id) },
          svg("title", { text: `#${u.id} ${u.emo.label}: ${fmt.ms(v)} (ASR ${fmt.ms(u.emo.latency_ms.asr)}, ` +
            `emotion ${fmt.ms(u.emo.latency_ms.emotion)})` }),
          svg("rect", { x, y: y(v), width: bw, height: Math.max(1, base - y(v)), fill: labelColor(u.emo.label), rx: 2 }));
        if (bw >= 16 || i % Math.ceil(16 / bw) === 0) {
          g.append(svg("text", { x: x + bw / 2, y: base + 12, class: "tick", "text-anchor": "middle", text: `#${u.id}` }));
        }
        chart.append(g);
      });
      const med = median(vals);
      const most = Math.max(...vals);
      chart.append(svg("line", { x1: 44, x2: w, y1: y(med), y2: y(med), class: "median" }),
        svg("text", { x: w - 4, y: y(med) - 3, class: "tick", "text-anchor": "end", text: `median ${fmt.ms(med)}` }),
        svg("line", { x1: 40, x2: 44, y1: y(most), y2: y(most), class: "axis" }),
        svg("text", { x: 38, y: y(most) + 3, class: "tick", "text-anchor": "end", text: fmt.ms(most) }),
        svg("text", { x: 38, y: base + 3, class: "tick", "text-anchor": "end", text: "0" }));
      box.append(el("div", { class: "chart-scroll" }, chart));
      return box;
    }

    utteranceTable(s) {
      const head = ["#", "time", "label", "conf.", ...s.labels, "modalities", "transcript",
        `${latencyBasis(this.store.utterances(s))} → emotion`, "ASR", "emotion"];
      const body = el("tbody");
      for (const u of this.store.utterances(s)) {
        const e = u.emo;
        if (!e) continue;
        const unc = Fields.uncertain(e);
        body.append(el("tr", { "data-utt": u.id, class: e.partial ? "provisional" : unc.flag ? "uncertain" : null },
          el("td", { text: String(u.id) }), el("td", { class: "nowrap", text: `${fmt.clock(u.start)}–${fmt.clock(u.end)}` }),
          el("td", null, el("span", { class: "label-tag small", text: `${e.label}${unc.flag ? "?" : ""}`,
            style: `--c:${labelColor(e.label)}` })),
          el("td", { class: "num", text: fmt.pct(e.confidence) }),
          ...s.labels.map((k) => el("td", { class: "num", text: fmt.pct((e.scores || {})[k] || 0) })),
          el("td", { text: (e.modalities || []).join("+") }),
          el("td", { class: "tx", text: (u.tr && u.tr.text) || e.transcript || "" }),
          el("td", { class: "num", text: fmt.ms(finalLatency(e).ms) }),
          el("td", { class: "num", text: fmt.ms(e.latency_ms && e.latency_ms.asr) }),
          el("td", { class: "num", text: fmt.ms(e.latency_ms && e.latency_ms.emotion) })));
      }
      if (!body.children.length) {
        body.append(el("tr", { class: "none" }, el("td", { colspan: head.length, class: "muted", text: "no utterances" })));
      }
      return el("div", { class: "utt-table-box" }, el("h3", { text: `Utterances · ${s.id}` }),
        el("table", { class: "utt-table", "data-stream": s.id },
          el("thead", null, el("tr", null, ...head.map((h) => el("th", { text: h })))), body));
    }
  }

  global.FdrlView = { Store, View, Fields, labelColor, fmt };
})(typeof window !== "undefined" ? window : this);
