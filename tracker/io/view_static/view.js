// The live view page: one WebSocket from tracker/io/view.py, hand-drawn canvas plots, nothing external.
// Each message: 4-byte big-endian header length, a JSON header {frame, stats, points}, the overlay JPEG.
// Records are the JSONL records of `iristrack run --out`; keys added later (eyes, pupil_diameter_mm, quality)
// are read defensively, since a record may not have them.
"use strict";

const PLOT_SECONDS = 30; // time shown by every plot once the run is that long
const MIN_PLOT_SECONDS = 10; // before that, the time so far (at least this), so a new run fills the plot
const KEEP_SECONDS = 60; // points kept in the page: memory stays flat however long the run
const STATUS_COLORS = {
  ok: "#3fb950", no_pupil: "#d29922", pupil_only: "#a371f7", no_iris: "#f85149",
  low_confidence: "#8b949e", bad_frame: "#6e2b2b",
};
const EYE_COLORS = { right: "#58a6ff", left: "#f778ba", eye: "#ff7ee6" };
const IRIS_COLOR = "#3fb950";

const token = new URLSearchParams(location.search).get("token");
const state = {
  points: [], // {t, eyes: [{side, status, irisConf, pupilConf, px, mm}], latency}
  speed: [], // {t, fps}
  paused: false,
  shown: null, // {record, jpeg}
  imageUrl: null,
  dirty: false,
};
const $ = (id) => document.getElementById(id);

// --- reading records -------------------------------------------------------------------------------

function finite(x) {
  return typeof x === "number" && Number.isFinite(x) ? x : null;
}

function diameterPx(boundary) {
  // Pupil diameter in px: twice the semi-major axis (turning the gaze shortens only the minor axis).
  return boundary && finite(boundary.semi_major) !== null ? 2 * boundary.semi_major : null;
}

function conf(boundary) {
  return boundary ? finite(boundary.confidence) : null;
}

function eyesOf(record) {
  // Per-eye values where the record has an `eyes` list, else the close-up's top-level boundaries as one eye.
  const eyes = Array.isArray(record.eyes) && record.eyes.length ? record.eyes : [
    { side: "eye", iris: record.iris, pupil: record.pupil, status: record.status,
      pupil_diameter_mm: record.pupil_diameter_mm, pupil_diameter_sd_mm: record.pupil_diameter_sd_mm },
  ];
  return eyes.map((eye, i) => ({
    side: typeof eye.side === "string" ? eye.side : `eye ${i + 1}`,
    status: typeof eye.status === "string" ? eye.status : String(record.status),
    irisConf: conf(eye.iris),
    pupilConf: conf(eye.pupil),
    px: diameterPx(eye.pupil),
    mm: finite(eye.pupil_diameter_mm),
    sdMm: finite(eye.pupil_diameter_sd_mm),
  }));
}

// --- numbers ---------------------------------------------------------------------------------------

function fixed(x, digits) {
  return x === null || x === undefined ? "-" : x.toFixed(digits);
}

function showNumbers(record, stats) {
  $("frame-index").textContent = String(record.frame);
  $("source").textContent = record.source || "";
  const body = $("eyes").tBodies[0];
  body.replaceChildren(...eyesOf(record).map((eye) => {
    const row = document.createElement("tr");
    row.dataset.side = eye.side;
    const cells = [
      ["side", eye.side], ["status", eye.status], ["iris", fixed(eye.irisConf, 3)],
      ["pupil", fixed(eye.pupilConf, 3)], ["px", fixed(eye.px, 1)],
      ["mm", eye.mm === null ? "-" : `${eye.mm.toFixed(2)}${eye.sdMm === null ? "" : ` ± ${eye.sdMm.toFixed(2)}`}`],
    ];
    for (const [name, text] of cells) {
      const cell = document.createElement("td");
      cell.className = name;
      cell.textContent = text;
      if (name === "status") cell.style.color = STATUS_COLORS[eye.status] || "";
      row.append(cell);
    }
    return row;
  }));
  showQuality(record);
  $("fps").textContent = fixed(stats.fps, 1);
  $("latency").textContent = fixed(finite(record.latency_ms), 1);
  $("frames").textContent = String(stats.frames);
  $("dropped").textContent = String(stats.dropped);
  $("view-fps").textContent = fixed(stats.view_fps, 1);
  $("view-skipped").textContent = String(stats.view_skipped);
}

function showQuality(record) {
  // Capture records and `run --quality`: the gate verdict, the failing gates, and the capture's kept/wanted.
  const box = $("quality");
  const q = record.quality;
  if (!q || typeof q !== "object") {
    box.hidden = true;
    return;
  }
  const failed = Array.isArray(q.quality_failed) ? q.quality_failed : [];
  const capture = record.capture && typeof record.capture === "object" ? record.capture : null;
  const kept = capture ? `  kept ${capture.kept}/${capture.wanted}` : "";
  box.hidden = false;
  box.className = `quality ${q.quality_pass ? "pass" : "fail"}`;
  box.textContent = q.quality_pass
    ? `PASS  score ${fixed(finite(q.quality_score), 1)}${kept}`
    : `FAIL: ${failed.join(", ") || "-"}${kept}`;
}

// --- plots -----------------------------------------------------------------------------------------

function fitCanvas(canvas) {
  // Draw at the device's pixel size so lines stay sharp; returns a context in CSS pixels.
  const ratio = window.devicePixelRatio || 1;
  const w = Math.max(1, Math.round(canvas.clientWidth * ratio));
  const h = Math.max(1, Math.round(canvas.clientHeight * ratio));
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
  }
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.clearRect(0, 0, canvas.clientWidth, canvas.clientHeight);
  return { ctx, w: canvas.clientWidth, h: canvas.clientHeight };
}

const PAD = { left: 44, right: 8, top: 6, bottom: 16 };

function niceRange(values, fixedRange, floor) {
  if (fixedRange) return fixedRange;
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (v !== null) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
  }
  if (!Number.isFinite(lo)) return [0, 1];
  const pad = Math.max((hi - lo) * 0.1, Math.abs(hi) * 0.02, 1e-3);
  return [floor === undefined ? lo - pad : Math.max(floor, lo - pad), hi + pad];
}

function drawAxes(ctx, w, h, span, yRange, digits) {
  ctx.strokeStyle = "#30363d";
  ctx.fillStyle = "#8b949e";
  ctx.font = "11px system-ui, sans-serif";
  ctx.lineWidth = 1;
  const [y0, y1] = yRange;
  for (let i = 0; i <= 2; i++) {
    const v = y0 + ((y1 - y0) * i) / 2;
    const y = PAD.top + (h - PAD.top - PAD.bottom) * (1 - i / 2);
    ctx.beginPath();
    ctx.moveTo(PAD.left, y);
    ctx.lineTo(w - PAD.right, y);
    ctx.stroke();
    ctx.fillText(v.toFixed(digits), 2, y + 4);
  }
  timeLabels(ctx, w, h, span);
}

function timeLabels(ctx, w, h, span) {
  ctx.fillStyle = "#8b949e";
  ctx.fillText(`-${Math.round(span)} s`, PAD.left, h - 3);
  ctx.fillText("now", w - PAD.right - 22, h - 3);
}

function drawLines(canvas, series, { range = null, floor = undefined, digits = 1, t1, span }) {
  // series: [{color, dash, points: [[t, v|null], ...]}]; a null value breaks the line (a blink shows as a gap).
  const { ctx, w, h } = fitCanvas(canvas);
  const t0 = t1 - span;
  const visible = series.map((s) => s.points.filter(([t]) => t >= t0));
  const yRange = niceRange(visible.flat().map(([, v]) => v), range, floor);
  drawAxes(ctx, w, h, span, yRange, digits);
  const x = (t) => PAD.left + ((t - t0) / span) * (w - PAD.left - PAD.right);
  const y = (v) => PAD.top + (1 - (v - yRange[0]) / (yRange[1] - yRange[0])) * (h - PAD.top - PAD.bottom);
  series.forEach((s, i) => {
    ctx.strokeStyle = s.color;
    ctx.setLineDash(s.dash ? [4, 3] : []);
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    let open = false;
    for (const [t, v] of visible[i]) {
      if (v === null) {
        open = false;
      } else if (open) {
        ctx.lineTo(x(t), y(v));
      } else {
        ctx.moveTo(x(t), y(v));
        open = true;
      }
    }
    ctx.stroke();
  });
  ctx.setLineDash([]);
  return visible.reduce((n, pts) => n + pts.filter(([, v]) => v !== null).length, 0);
}

function drawStatus(canvas, sides, t1, span) {
  // One band per eye, coloured by status between consecutive frames.
  const { ctx, w, h } = fitCanvas(canvas);
  const t0 = t1 - span;
  const x = (t) => PAD.left + ((t - t0) / span) * (w - PAD.left - PAD.right);
  const rowH = (h - PAD.top - PAD.bottom) / Math.max(1, sides.length);
  ctx.font = "11px system-ui, sans-serif";
  sides.forEach((side, row) => {
    const top = PAD.top + row * rowH;
    ctx.fillStyle = "#8b949e";
    ctx.fillText(side, 2, top + rowH / 2 + 4);
    const pts = state.points.filter((p) => p.t >= t0);
    pts.forEach((p, i) => {
      const eye = p.eyes.find((e) => e.side === side);
      if (!eye) return;
      const next = i + 1 < pts.length ? pts[i + 1].t : p.t + 1 / 60;
      ctx.fillStyle = STATUS_COLORS[eye.status] || "#6e7681";
      ctx.fillRect(x(p.t), top + 1, Math.max(1, x(next) - x(p.t) + 0.5), rowH - 2); // + 0.5: no seams
    });
  });
  timeLabels(ctx, w, h, span);
}

function sidesSeen() {
  const sides = [];
  for (const p of state.points) {
    for (const e of p.eyes) if (!sides.includes(e.side)) sides.push(e.side);
  }
  return sides.length ? sides : ["eye"];
}

function eyeSeries(side, key, dash = false, color = null) {
  return {
    color: color || EYE_COLORS[side] || "#e6edf3",
    dash,
    points: state.points.map((p) => {
      const eye = p.eyes.find((e) => e.side === side);
      return [p.t, eye ? eye[key] : null];
    }),
  };
}

function drawPlots() {
  state.dirty = false;
  if (!state.points.length) return;
  const t1 = state.points[state.points.length - 1].t;
  const span = Math.min(PLOT_SECONDS, Math.max(MIN_PLOT_SECONDS, t1 - state.points[0].t));
  const sides = sidesSeen();
  const plotted = drawLines($("plot-px"), sides.map((s) => eyeSeries(s, "px")), { t1, span });
  document.body.dataset.plotPoints = String(plotted); // for the browser test: the plot gains points
  const hasMm = state.points.some((p) => p.eyes.some((e) => e.mm !== null));
  $("figure-mm").hidden = !hasMm;
  if (hasMm) drawLines($("plot-mm"), sides.map((s) => eyeSeries(s, "mm")), { t1, span, digits: 2 });
  const conf = sides.flatMap((s) => [
    eyeSeries(s, "pupilConf"),
    eyeSeries(s, "irisConf", true, sides.length === 1 ? IRIS_COLOR : null),
  ]);
  drawLines($("plot-conf"), conf, { t1, span, range: [0, 1], digits: 1 });
  drawStatus($("plot-status"), sides, t1, span);
  const fps = { color: "#e6edf3", points: state.speed.map((s) => [s.t, s.fps]) };
  const latency = { color: "#d29922", dash: true, points: state.points.map((p) => [p.t, p.latency]) };
  drawLines($("plot-speed"), [fps, latency], { t1, span, floor: 0, digits: 0 });
}

function legend() {
  $("status-legend").replaceChildren(...Object.entries(STATUS_COLORS).map(([name, color]) => {
    const item = document.createElement("span");
    const swatch = document.createElement("b");
    swatch.style.background = color;
    item.append(swatch, name);
    return item;
  }));
}

// --- the stream ------------------------------------------------------------------------------------

function addPoints(points, stats) {
  for (const { t, r } of points) {
    state.points.push({ t, eyes: eyesOf(r), latency: finite(r.latency_ms) });
  }
  if (finite(stats.fps) !== null) state.speed.push({ t: stats.t, fps: stats.fps });
  const oldest = (state.points.length ? state.points[state.points.length - 1].t : 0) - KEEP_SECONDS;
  while (state.points.length && state.points[0].t < oldest) state.points.shift();
  while (state.speed.length && state.speed[0].t < oldest) state.speed.shift();
}

function show(record, stats, jpeg) {
  // The numbers change with the image, once it has decoded: what is on screen is always one frame's.
  const url = URL.createObjectURL(jpeg);
  const img = $("overlay");
  img.onload = () => {
    if (state.paused) {
      // Paused while this frame decoded: the view stays on the frame shown at the click, image and numbers.
      img.onload = null;
      if (state.imageUrl) img.src = state.imageUrl;
      URL.revokeObjectURL(url);
      return;
    }
    if (state.imageUrl) URL.revokeObjectURL(state.imageUrl);
    state.imageUrl = url;
    state.shown = { record, jpeg };
    img.dataset.frame = String(record.frame);
    showNumbers(record, stats);
  };
  img.onerror = () => URL.revokeObjectURL(url);
  img.src = url;
}

function onMessage(event) {
  const data = event.data;
  const length = new DataView(data).getUint32(0);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(data, 4, length)));
  const jpeg = new Blob([new Uint8Array(data, 4 + length)], { type: "image/jpeg" });
  addPoints(header.points, header.stats);
  if (state.paused) return; // the view is frozen; points are kept so the plots are whole on resume
  show(header.frame, header.stats, jpeg);
  if (!state.dirty) {
    state.dirty = true;
    requestAnimationFrame(drawPlots);
  }
}

function setState(text, kind) {
  const badge = $("state");
  badge.textContent = text;
  badge.className = `state ${kind}`;
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const query = token ? `?token=${encodeURIComponent(token)}` : "";
  const ws = new WebSocket(`${scheme}//${location.host}/stream${query}`);
  ws.binaryType = "arraybuffer";
  ws.onopen = () => setState(state.paused ? "paused" : "live", state.paused ? "paused" : "live");
  ws.onmessage = onMessage;
  ws.onclose = (event) => setState(event.reason === "run ended" ? "run ended" : "disconnected", "ended");
}

function togglePause() {
  state.paused = !state.paused;
  $("pause").textContent = state.paused ? "Resume" : "Pause";
  $("pause").classList.toggle("on", state.paused);
  if (!$("state").classList.contains("ended")) setState(state.paused ? "paused" : "live", state.paused ? "paused" : "live");
  if (!state.paused) drawPlots();
}

function snapshot() {
  // The frame shown, downloaded by the browser: the server writes no file.
  if (!state.shown) return;
  const link = document.createElement("a");
  link.href = URL.createObjectURL(state.shown.jpeg);
  link.download = `iristrack_frame_${state.shown.record.frame}.jpg`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

window.addEventListener("DOMContentLoaded", () => {
  legend();
  $("pause").addEventListener("click", togglePause);
  $("snapshot").addEventListener("click", snapshot);
  window.addEventListener("resize", () => requestAnimationFrame(drawPlots));
  connect();
});
