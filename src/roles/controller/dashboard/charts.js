// SVG charts drawn by hand: a line chart of series over epochs, and a bar
// chart of class probabilities. Each returns an <svg class="chart"> element;
// data points are <circle class="point"> and bars <rect class="bar"> with
// data-x/data-y (or data-class/data-p) attributes, so tests and users'
// scripts can read what was drawn.

const NS = 'http://www.w3.org/2000/svg';

function svg(tag, attrs = {}, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// The y range: the data's, padded by 5% on the sides the caller left open
// (a loss chart pins 0, an accuracy chart 0 and 1).
function yRange(ys, yMin, yMax) {
  let lo = yMin ?? Math.min(...ys), hi = yMax ?? Math.max(...ys);
  if (lo === hi) { lo -= lo === 0 ? 1 : Math.abs(lo) * 0.1; hi += hi === 0 ? 1 : Math.abs(hi) * 0.1; }
  const pad = (hi - lo) * 0.05;
  return [yMin ?? lo - pad, yMax ?? hi + pad];
}

const fmt = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toFixed(3));

// lineChart({title, series: [{name, points: [[x, y], ...]}], yMin, yMax, yFormat})
// yMin/yMax pin the axis (else it fits the data).
export function lineChart({ title, series, yMin, yMax, yFormat = fmt, width = 460, height = 260 }) {
  const m = { l: 52, r: 14, t: 14 + 14 * Math.max(1, series.length), b: 40 };  // room for the legend
  const w = width - m.l - m.r, h = height - m.t - m.b;
  const root = svg('svg', { class: 'chart', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title });
  root.append(svg('text', { class: 'title', x: m.l, y: 18 }, title));
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) {
    root.append(svg('text', { x: m.l + w / 2, y: m.t + h / 2, 'text-anchor': 'middle' }, 'no epochs yet'));
    return root;
  }
  const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
  const [x0, x1] = [Math.min(...xs, 1) - 0.5, Math.max(...xs) + 0.5];
  const [y0, y1] = yRange(ys, yMin, yMax);
  const X = (x) => m.l + ((x - x0) / (x1 - x0)) * w;
  const Y = (y) => m.t + h - ((y - y0) / (y1 - y0)) * h;
  // Grid and y ticks.
  for (let i = 0; i <= 4; ++i) {
    const v = y0 + ((y1 - y0) * i) / 4;
    root.append(svg('line', { class: 'grid', x1: m.l, x2: m.l + w, y1: Y(v), y2: Y(v) }));
    root.append(svg('text', { x: m.l - 6, y: Y(v) + 4, 'text-anchor': 'end' }, yFormat(v)));
  }
  // X ticks: whole epochs, at most ~10 labels.
  const step = Math.max(1, Math.ceil((Math.max(...xs) - Math.min(...xs) + 1) / 10));
  for (let e = Math.ceil(x0); e <= x1; e += step) {
    root.append(svg('text', { x: X(e), y: m.t + h + 16, 'text-anchor': 'middle' }, String(e)));
  }
  root.append(svg('line', { class: 'axis', x1: m.l, x2: m.l + w, y1: m.t + h, y2: m.t + h }));
  root.append(svg('line', { class: 'axis', x1: m.l, x2: m.l, y1: m.t, y2: m.t + h }));
  root.append(svg('text', { x: m.l + w / 2, y: height - 6, 'text-anchor': 'middle' }, 'epoch'));
  series.forEach((s, i) => {
    if (s.points.length === 0) return;
    const g = svg('g', { class: `series s${i}`, 'data-series': s.name });
    g.append(svg('polyline', { points: s.points.map(([x, y]) => `${X(x)},${Y(y)}`).join(' ') }));
    for (const [x, y] of s.points) {
      const c = svg('circle', { class: 'point', cx: X(x), cy: Y(y), r: 3, 'data-x': x, 'data-y': y });
      c.append(svg('title', {}, `${s.name}, epoch ${x}: ${yFormat(y)}`));
      g.append(c);
    }
    root.append(g);
    // Legend, top right.
    const lx = m.l + w - 110, ly = 14 + i * 14;
    root.append(svg('rect', { class: `s${i}`, x: lx, y: ly - 8, width: 10, height: 3 }));
    root.append(svg('text', { x: lx + 14, y: ly - 3 }, s.name));
  });
  return root;
}

// barChart({title, values: [p...], labels: [name...], top: index})
export function barChart({ title, values, labels, top, width = 460, height = 240 }) {
  const m = { l: 40, r: 10, t: 28, b: 52 };
  const w = width - m.l - m.r, h = height - m.t - m.b;
  const root = svg('svg', { class: 'chart', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': title });
  root.append(svg('text', { class: 'title', x: m.l, y: 18 }, title));
  const max = Math.max(1e-9, ...values);
  const slot = w / Math.max(1, values.length), bw = slot * 0.7;
  for (let i = 0; i <= 4; ++i) {
    const v = (max * i) / 4, y = m.t + h - (v / max) * h;
    root.append(svg('line', { class: 'grid', x1: m.l, x2: m.l + w, y1: y, y2: y }));
    root.append(svg('text', { x: m.l - 4, y: y + 4, 'text-anchor': 'end' }, `${Math.round(v * 100)}%`));
  }
  values.forEach((p, i) => {
    const bh = (p / max) * h, x = m.l + i * slot + (slot - bw) / 2;
    const r = svg('rect', { class: i === top ? 'bar top' : 'bar', x, y: m.t + h - bh, width: bw, height: Math.max(bh, 0.5),
                            'data-class': i, 'data-p': p });
    r.append(svg('title', {}, `${labels[i]}: ${(p * 100).toFixed(1)}%`));
    root.append(r);
    const label = svg('text', { x: x + bw / 2, y: m.t + h + 14, 'text-anchor': 'end',
                                transform: `rotate(-35 ${x + bw / 2} ${m.t + h + 14})` }, labels[i]);
    root.append(label);
  });
  root.append(svg('line', { class: 'axis', x1: m.l, x2: m.l + w, y1: m.t + h, y2: m.t + h }));
  return root;
}
