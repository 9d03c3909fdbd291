// Rendering: one panel per analyte (an SVG chart and the same values as a table), the schedules with their
// visit marks, and what the service's rules say. A tiny hand-written SVG renderer: see ../README.md for why.
// Every word comes from the service (t: texts.js; the state's own texts are already in the same language).
import { t, stateWord, num, date } from "./texts.js";
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

// a visit as text: "week 4 (due 11 Oct): overdue", "... : done 9 Oct"
const visitText = (v) => (v.done ? t("visitDone", { visit: v.label, due: date(v.due), date: date(v.done) })
  : t("visit", { visit: v.label, due: date(v.due), state: stateWord(v.status) }));

// a label in the right margin, broken at spaces into lines of at most LABEL_CHARS (labels differ in length per
// language: "niet starten / onderbreken < 1 ×10⁹/L"), the lines centred on y
const LABEL_CHARS = 20, LINE_HEIGHT = 11;
function wrapped(text, x, y) {
  const lines = [];
  for (const word of text.split(" ")) {
    if (lines.length && (lines[lines.length - 1] + " " + word).length <= LABEL_CHARS) lines[lines.length - 1] += " " + word;
    else lines.push(word);
  }
  const node = svg("text", { x, y: y - ((lines.length - 1) * LINE_HEIGHT) / 2 });
  lines.forEach((line, i) => node.append(svg("tspan", { x, dy: i ? LINE_HEIGHT : 0 }, line)));
  return node;
}

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
  root.append(svg("title", { id: `${id}-t` }, t("chartTitle", { analyte: panel.display, unit: panel.unit })));
  const lineText = panel.lines.map((l) => `${l.label}`).join("; ");
  root.append(svg("desc", { id: `${id}-d` },
    t("chartDesc", { count: num(series.length), value: last.reported, date: date(last.date) }) + " " +
    (lineText ? t("chartLines", { lines: lineText }) : t("chartNoLines"))));
  // axes
  root.append(svg("line", { x1: PAD.left, y1: H - PAD.bottom, x2: W - PAD.right, y2: H - PAD.bottom, class: "axis" }));
  root.append(svg("line", { x1: PAD.left, y1: PAD.top, x2: PAD.left, y2: H - PAD.bottom, class: "axis" }));
  for (let i = 0; i <= 4; i++) {
    const v = y0 + ((y1 - y0) * i) / 4;
    root.append(svg("text", { x: PAD.left - 6, y: Y(v) + 4, class: "tick", "text-anchor": "end" }, num(v)));
  }
  for (const at of [x0 + 7 * DAY, (x0 + x1) / 2, x1 - 7 * DAY]) {
    root.append(svg("text", { x: X(at), y: H - PAD.bottom + 16, class: "tick", "text-anchor": "middle" },
      date(new Date(at).toISOString().slice(0, 10))));
  }
  // threshold lines
  for (const l of panel.lines) {
    if (l.value < y0 || l.value > y1) continue;
    const g = svg("g", { class: `threshold ${l.kind}`, "data-kind": l.kind, "data-value": l.value });
    g.append(titled(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: Y(l.value), y2: Y(l.value) }), l.label));
    g.append(wrapped(l.label, W - PAD.right + 4, Y(l.value) + 4));
    root.append(g);
  }
  // treatment start
  if (state.start) {
    const g = svg("g", { class: "start" });
    g.append(titled(svg("line", { x1: X(day(state.start)), x2: X(day(state.start)), y1: PAD.top, y2: H - PAD.bottom }),
      t("treatmentStart", { date: date(state.start) })));
    g.append(svg("text", { x: X(day(state.start)) + 3, y: PAD.top + 10 }, t("start")));
    root.append(g);
  }
  // schedule marks under the axis
  for (const v of visits) {
    if (v.status === "planned" && day(v.due) > x1) continue;
    const cx = X(Math.min(day(v.due), x1)), cy = H - PAD.bottom + 30;
    const g = svg("g", { class: `visit ${v.status}`, "data-status": v.status });
    g.append(titled(svg("rect", { x: cx - 5, y: cy - 5, width: 10, height: 10 }), visitText(v)));
    if (v.status === "overdue" || v.status === "due") g.append(svg("text", { x: cx + 8, y: cy + 4 }, stateWord(v.status)));
    root.append(g);
  }
  // the series
  root.append(svg("polyline", { class: "series", points: series.map((p) => `${X(day(p.date))},${Y(p.value)}`).join(" ") }));
  series.forEach((p, i) => {
    root.append(titled(svg("circle", { cx: X(day(p.date)), cy: Y(p.value), r: 4, class: "point" + (i === series.length - 1 ? " last" : ""),
      "data-value": p.value, "data-date": p.date }), t("pointTitle", { value: p.reported, date: date(p.date) })));
  });
  return root;
}

function table(panel) {
  const tab = el("table", { class: "values" }, el("caption", {}, t("tableCaption", { analyte: panel.display, unit: panel.unit })));
  tab.append(el("thead", {}, el("tr", {}, el("th", { scope: "col" }, t("colDate")),
    el("th", { scope: "col" }, t("colValue", { unit: panel.unit })),
    el("th", { scope: "col" }, t("colReported")), el("th", { scope: "col" }, t("colCrossed")))));
  const body = el("tbody");
  for (const p of [...panel.series].reverse()) {
    const crossed = panel.lines.filter((l) => (l.direction === "below" ? p.value < l.value : p.value > l.value)).map((l) => l.label);
    body.append(el("tr", {}, el("td", {}, date(p.date)), el("td", {}, num(p.value)), el("td", {}, p.reported),
      el("td", {}, crossed.join("; ") || t("none"))));
  }
  tab.append(body);
  return el("details", { class: "table-view" }, el("summary", {}, t("tableSummary")), tab);
}

function schedules(state) {
  const section = el("section", { "aria-labelledby": "schedule-h", class: "schedules" }, el("h2", { id: "schedule-h" }, t("schedule")));
  const tab = el("table", { class: "schedule" });
  tab.append(el("thead", {}, el("tr", {}, el("th", { scope: "col" }, t("colTests")), el("th", { scope: "col" }, t("colNow")),
    el("th", { scope: "col" }, t("colVisits")))));
  const body = el("tbody");
  for (const s of state.schedules) {
    const marks = el("ul", { class: "marks" });
    for (const v of s.visits) {
      marks.append(el("li", { class: `mark ${v.status}`, "data-status": v.status }, visitText(v)));
    }
    body.append(el("tr", { "data-schedule": s.id, "data-state": s.state }, el("th", { scope: "row" }, s.display),
      el("td", { class: `state ${s.state.replace(/ /g, "-")}` },
        s.why ? t("stateWhy", { state: stateWord(s.state), why: s.why }) : stateWord(s.state)), el("td", {}, marks)));
  }
  tab.append(body);
  section.append(tab);
  return section;
}

export function renderError(text) {
  const main = document.getElementById("main");
  main.replaceChildren(el("p", { class: "message error", role: "alert" }, text));
}

export function renderState(state) {
  const main = document.getElementById("main");
  const context = document.getElementById("context");
  const asOf = t("asOf", { date: date(state.today) });
  context.textContent = state.drugs.length
    ? state.drugs.map((d) => (d.start ? t("drugSince", { drug: d.name, date: date(d.start) })
      : t("drugSinceUnknown", { drug: d.name }))).join("; ") + " · " + asOf
    : asOf;
  const parts = [];
  if (state.message) parts.push(el("p", { class: "message", role: "status" }, state.message));
  for (const why of state.unavailable) parts.push(el("p", { class: "message warning" }, t("partUnreadable", { why })));
  if (state.statements.length) {
    const list = el("ul", { class: "statements" });
    for (const s of state.statements) list.append(el("li", { class: s.indicator }, s.summary));
    parts.push(el("section", { "aria-labelledby": "says-h" }, el("h2", { id: "says-h" }, t("rulesSay")), list));
  }
  const withValues = state.analytes.filter((a) => a.series.length);
  if (state.analytes.length && !withValues.length) {
    parts.push(el("p", { class: "message no-labs", role: "status" },
      t("noLabs", { tests: state.analytes.map((a) => a.display).join(", ") })));
  }
  const scheduleOf = Object.fromEntries(state.schedules.map((s) => [s.id, s]));
  const grid = el("div", { class: "panels" });
  for (const panel of withValues) {
    const section = el("section", { class: "panel", "aria-labelledby": `h-${panel.id}`, "data-analyte": panel.id },
      el("h3", { id: `h-${panel.id}` }, `${panel.display} `, el("span", { class: "unit" }, `(${panel.unit})`)));
    section.append(chart(panel, state, scheduleOf[panel.schedule]));
    for (const u of panel.unreadable) {
      section.append(el("p", { class: "message warning" }, u.date ? t("resultOfUnreadable", { date: date(u.date), why: u.why })
        : t("resultUnreadable", { why: u.why })));
    }
    section.append(table(panel));
    grid.append(section);
  }
  if (withValues.length) {
    const missing = state.analytes.filter((a) => !a.series.length);
    parts.push(el("section", { "aria-labelledby": "labs-h" }, el("h2", { id: "labs-h" }, t("labResults")), grid,
      ...missing.map((a) => el("p", { class: "message" }, a.message))));
  }
  if (state.schedules.length) parts.push(schedules(state));
  main.replaceChildren(...parts);
}
