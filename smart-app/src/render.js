// Rendering: one panel per analyte (an SVG chart and the same values as a table), the schedules with their
// visit marks, and what the service's rules say. A tiny hand-written SVG renderer: see ../README.md for why.
const SVG = "http://www.w3.org/2000/svg";
const W = 640, H = 220, PAD = { left: 56, right: 128, top: 14, bottom: 44 };
const DAY = 86400000;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) node.setAttribute(k, String(v));
  for (const c of children) node.append(c);
  return node;
}

function titled(node, text) {
  node.append(svg("title", {}, text));
  return node;
}

const day = (iso) => Date.parse(iso + "T00:00:00Z");
const fmt = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : (Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2)).replace(/\.?0+$/, ""));

function chart(panel, state, schedule) {
  const series = panel.series;
  const dates = series.map((p) => day(p.date));
  if (state.start) dates.push(day(state.start));
  dates.push(day(state.today));
  const visits = schedule ? schedule.visits : [];
  for (const v of visits) if (v.status !== "planned") dates.push(day(v.due));
  const x0 = Math.min(...dates) - 7 * DAY, x1 = Math.max(...dates) + 7 * DAY;
  const values = [...series.map((p) => p.value), ...panel.lines.map((l) => l.value)];
  let y0 = Math.min(...values), y1 = Math.max(...values);
  const span = y1 - y0 || Math.abs(y1) || 1;
  y0 = Math.max(0, y0 - span * 0.15);
  y1 = y1 + span * 0.15;
  const X = (t) => PAD.left + ((t - x0) / (x1 - x0)) * (W - PAD.left - PAD.right);
  const Y = (v) => H - PAD.bottom - ((v - y0) / (y1 - y0)) * (H - PAD.top - PAD.bottom);
  const id = "chart-" + panel.id;
  const last = series[series.length - 1];
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-labelledby": `${id}-t ${id}-d`, class: "chart",
    "data-analyte": panel.id });
  root.append(svg("title", { id: `${id}-t` }, `${panel.display} (${panel.unit}) over time`));
  const lineText = panel.lines.map((l) => `${l.label}`).join("; ");
  root.append(svg("desc", { id: `${id}-d` },
    `${series.length} results; latest ${last.reported} on ${last.date}. ` + (lineText ? `Lines: ${lineText}.` : "No threshold lines for this drug.")));
  // axes
  root.append(svg("line", { x1: PAD.left, y1: H - PAD.bottom, x2: W - PAD.right, y2: H - PAD.bottom, class: "axis" }));
  root.append(svg("line", { x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: H - PAD.bottom, class: "axis" }));
  for (let i = 0; i <= 4; i++) {
    const v = y0 + ((y1 - y0) * i) / 4;
    root.append(svg("text", { x: PAD.left - 6, y: Y(v) + 4, class: "tick", "text-anchor": "end" }, fmt(v)));
  }
  for (const t of [x0 + 7 * DAY, (x0 + x1) / 2, x1 - 7 * DAY]) {
    root.append(svg("text", { x: X(t), y: H - PAD.bottom + 16, class: "tick", "text-anchor": "middle" },
      new Date(t).toISOString().slice(0, 10)));
  }
  // threshold lines
  for (const l of panel.lines) {
    if (l.value < y0 || l.value > y1) continue;
    const g = svg("g", { class: `threshold ${l.kind}`, "data-kind": l.kind, "data-value": l.value });
    g.append(titled(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: Y(l.value), y2: Y(l.value) }), l.label));
    g.append(svg("text", { x: W - PAD.right + 4, y: Y(l.value) + 4 }, l.label));
    root.append(g);
  }
  // treatment start
  if (state.start) {
    const g = svg("g", { class: "start" });
    g.append(titled(svg("line", { x1: X(day(state.start)), x2: X(day(state.start)), y1: PAD.top, y2: H - PAD.bottom }),
      `treatment start ${state.start}`));
    g.append(svg("text", { x: X(day(state.start)) + 3, y: PAD.top + 10 }, "start"));
    root.append(g);
  }
  // schedule marks under the axis
  for (const v of visits) {
    if (v.status === "planned" && day(v.due) > x1) continue;
    const cx = X(Math.min(day(v.due), x1)), cy = H - PAD.bottom + 30;
    const g = svg("g", { class: `visit ${v.status}`, "data-status": v.status });
    g.append(titled(svg("rect", { x: cx - 5, y: cy - 5, width: 10, height: 10 }),
      `${v.label}: ${v.status}${v.done ? " " + v.done : ""} (due ${v.due})`));
    if (v.status === "overdue" || v.status === "due") g.append(svg("text", { x: cx + 8, y: cy + 4 }, v.status));
    root.append(g);
  }
  // the series
  root.append(svg("polyline", { class: "series", points: series.map((p) => `${X(day(p.date))},${Y(p.value)}`).join(" ") }));
  series.forEach((p, i) => {
    root.append(titled(svg("circle", { cx: X(day(p.date)), cy: Y(p.value), r: 4, class: "point" + (i === series.length - 1 ? " last" : ""),
      "data-value": p.value, "data-date": p.date }), `${p.reported} on ${p.date}`));
  });
  return root;
}

function table(panel) {
  const t = el("table", { class: "values" }, el("caption", {}, `${panel.display}: values (${panel.unit})`));
  t.append(el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Date"), el("th", { scope: "col" }, `Value (${panel.unit})`),
    el("th", { scope: "col" }, "As reported"), el("th", { scope: "col" }, "Lines crossed"))));
  const body = el("tbody");
  for (const p of [...panel.series].reverse()) {
    const crossed = panel.lines.filter((l) => (l.direction === "below" ? p.value < l.value : p.value > l.value)).map((l) => l.label);
    body.append(el("tr", {}, el("td", {}, p.date), el("td", {}, fmt(p.value)), el("td", {}, p.reported),
      el("td", {}, crossed.join("; ") || "none")));
  }
  t.append(body);
  return el("details", { class: "table-view" }, el("summary", {}, "Values as a table"), t);
}

function schedules(state) {
  const section = el("section", { "aria-labelledby": "schedule-h", class: "schedules" }, el("h2", { id: "schedule-h" }, "Monitoring schedule"));
  const t = el("table", { class: "schedule" });
  t.append(el("thead", {}, el("tr", {}, el("th", { scope: "col" }, "Tests"), el("th", { scope: "col" }, "Now"),
    el("th", { scope: "col" }, "Visits"))));
  const body = el("tbody");
  for (const s of state.schedules) {
    const marks = el("ul", { class: "marks" });
    for (const v of s.visits) {
      marks.append(el("li", { class: `mark ${v.status}`, "data-status": v.status },
        `${v.label} (due ${v.due}): ${v.status}${v.done ? " " + v.done : ""}`));
    }
    body.append(el("tr", { "data-schedule": s.id, "data-state": s.state }, el("th", { scope: "row" }, s.display),
      el("td", { class: `state ${s.state.replace(/ /g, "-")}` }, s.state + (s.why ? ": " + s.why : "")), el("td", {}, marks)));
  }
  t.append(body);
  section.append(t);
  return section;
}

export function renderError(text) {
  const main = document.getElementById("main");
  main.replaceChildren(el("p", { class: "message error", role: "alert" }, text));
}

export function renderState(state) {
  const main = document.getElementById("main");
  const context = document.getElementById("context");
  context.textContent = state.drugs.length
    ? state.drugs.map((d) => `${d.name} since ${d.start || "an unknown date"}`).join("; ") + ` · as of ${state.today}`
    : `as of ${state.today}`;
  const parts = [];
  if (state.message) parts.push(el("p", { class: "message", role: "status" }, state.message));
  for (const why of state.unavailable) parts.push(el("p", { class: "message warning" }, "Part of the record could not be read: " + why));
  if (state.statements.length) {
    const list = el("ul", { class: "statements" });
    for (const s of state.statements) list.append(el("li", { class: s.indicator }, s.summary));
    parts.push(el("section", { "aria-labelledby": "says-h" }, el("h2", { id: "says-h" }, "What the rules say"), list));
  }
  const withValues = state.analytes.filter((a) => a.series.length);
  if (state.analytes.length && !withValues.length) {
    parts.push(el("p", { class: "message no-labs", role: "status" },
      "No laboratory results on record for the monitored tests (" + state.analytes.map((a) => a.display).join(", ") +
      "). Nothing to draw: the tests are listed in the schedule above."));
  }
  const scheduleOf = Object.fromEntries(state.schedules.map((s) => [s.id, s]));
  const grid = el("div", { class: "panels" });
  for (const panel of withValues) {
    const section = el("section", { class: "panel", "aria-labelledby": `h-${panel.id}`, "data-analyte": panel.id },
      el("h3", { id: `h-${panel.id}` }, `${panel.display} `, el("span", { class: "unit" }, `(${panel.unit})`)));
    section.append(chart(panel, state, scheduleOf[panel.schedule]));
    for (const u of panel.unreadable) section.append(el("p", { class: "message warning" }, `A result${u.date ? " of " + u.date : ""} could not be interpreted: ${u.why}`));
    section.append(table(panel));
    grid.append(section);
  }
  if (withValues.length) {
    const missing = state.analytes.filter((a) => !a.series.length);
    parts.push(el("section", { "aria-labelledby": "labs-h" }, el("h2", { id: "labs-h" }, "Laboratory results"), grid,
      ...missing.map((a) => el("p", { class: "message" }, a.message))));
  }
  if (state.schedules.length) parts.push(schedules(state));
  main.replaceChildren(...parts);
}
