// The predict page: draw on a canvas (white on black by default, like
// Fashion-MNIST) or load an image file onto it, then POST it as a PNG scaled
// to the model's input size to /api/v1/models/{name}/predict and show the
// predicted class with a bar chart of the probabilities.
import { api, el, showError } from './api.js';
import { barChart } from './charts.js';

const VIEW = 280;  // drawing surface, in canvas pixels (10x a 28x28 input)

// [height, width] of the image the model takes: the last two dims of its
// input shape ([1, 28, 28] -> 28x28; a flat [784] -> 28x28); 28x28 if unknown.
export function inputSize(shape) {
  if (Array.isArray(shape) && shape.length >= 2) return [shape[shape.length - 2], shape[shape.length - 1]];
  if (Array.isArray(shape) && shape.length === 1 && Number.isInteger(Math.sqrt(shape[0]))) {
    const s = Math.sqrt(shape[0]);
    return [s, s];
  }
  return [28, 28];
}

function drawingCanvas() {
  const canvas = el('canvas', { id: 'draw', width: VIEW, height: VIEW });
  const ctx = canvas.getContext('2d');
  const state = { brush: 24, invert: false, drawing: false, last: null };
  const colors = () => (state.invert ? ['#fff', '#000'] : ['#000', '#fff']);  // [background, ink]
  const clear = () => { ctx.fillStyle = colors()[0]; ctx.fillRect(0, 0, VIEW, VIEW); };
  const at = (ev) => {
    const r = canvas.getBoundingClientRect();
    return [((ev.clientX - r.left) * VIEW) / r.width, ((ev.clientY - r.top) * VIEW) / r.height];
  };
  const stroke = (from, to) => {
    ctx.strokeStyle = ctx.fillStyle = colors()[1];
    ctx.lineWidth = state.brush;
    ctx.lineCap = ctx.lineJoin = 'round';
    ctx.beginPath();
    ctx.moveTo(...from);
    ctx.lineTo(...to);
    ctx.stroke();
  };
  canvas.addEventListener('pointerdown', (ev) => {
    canvas.setPointerCapture(ev.pointerId);
    state.drawing = true;
    state.last = at(ev);
    stroke(state.last, state.last);
  });
  canvas.addEventListener('pointermove', (ev) => {
    if (!state.drawing) return;
    const p = at(ev);
    stroke(state.last, p);
    state.last = p;
  });
  const end = () => { state.drawing = false; };
  canvas.addEventListener('pointerup', end);
  canvas.addEventListener('pointercancel', end);
  // An image file, scaled to fit (aspect kept) on the background.
  const load = async (file) => {
    const bmp = await createImageBitmap(file);
    clear();
    const k = Math.min(VIEW / bmp.width, VIEW / bmp.height);
    const w = bmp.width * k, h = bmp.height * k;
    ctx.drawImage(bmp, (VIEW - w) / 2, (VIEW - h) / 2, w, h);
  };
  clear();
  return { canvas, state, clear, load };
}

// The drawing scaled to `size` ([h, w]) as a PNG Blob; `preview` shows it.
function scaledPng(source, [h, w], preview) {
  preview.width = w;
  preview.height = h;
  const ctx = preview.getContext('2d');
  ctx.imageSmoothingEnabled = true;
  ctx.imageSmoothingQuality = 'high';
  ctx.drawImage(source, 0, 0, w, h);
  return new Promise((resolve, reject) =>
    preview.toBlob((b) => (b ? resolve(b) : reject(new Error('the canvas could not be encoded as PNG'))), 'image/png'));
}

function resultView(resp) {
  const pred = (resp.predictions || [])[0];
  if (!pred) return el('p', { class: 'muted', text: 'The controller answered without a prediction.' });
  const probs = pred.probabilities || [];
  const names = resp.classes || resp.class_names || [];
  const label = (k) => (names[k] !== undefined ? String(names[k]) : k === pred.class && pred.class_name ? pred.class_name : `class ${k}`);
  const k = pred.class;
  return el('div', { class: 'result', id: 'predict-result', 'data-class': k },
    el('div', { class: 'class', text: label(k) }),
    el('p', { class: 'muted', text: `${probs[k] !== undefined ? (probs[k] * 100).toFixed(1) + '% · ' : ''}model ${resp.model}` +
                                    (resp.job !== undefined && resp.job !== null ? ` · trained by job ${resp.job}` : '') }),
    barChart({ title: 'Class probabilities', values: probs, labels: probs.map((_, i) => label(i)), top: k }));
}

export function renderPredict(main) {
  const errorBox = el('div', { class: 'error', role: 'alert' });
  const model = el('select', { id: 'predict-model' });
  const info = el('span', { class: 'muted' });
  const pad = drawingCanvas();
  const brush = el('input', { type: 'range', min: 4, max: 60, value: pad.state.brush, id: 'brush' });
  brush.addEventListener('input', () => { pad.state.brush = Number(brush.value); });
  const invert = el('input', { type: 'checkbox', id: 'invert' });
  invert.addEventListener('change', () => { pad.state.invert = invert.checked; pad.clear(); });
  const file = el('input', { type: 'file', accept: 'image/png,image/jpeg', id: 'predict-file' });
  file.addEventListener('change', () => {
    if (file.files[0]) pad.load(file.files[0]).catch((e) => showError(errorBox, `cannot read that image: ${e.message}`));
  });
  const preview = el('canvas', { id: 'preview', class: 'preview', title: 'what is sent' });
  const out = el('div', { id: 'predict-out' }, el('p', { class: 'muted', text: 'Draw or load an image, then Predict.' }));
  const models = new Map();
  const go = el('button', { class: 'primary', id: 'predict-go', text: 'Predict', onclick: async () => {
    go.disabled = true;
    try {
      const name = model.value;
      if (!name) throw new Error('no model registered');
      const png = await scaledPng(pad.canvas, inputSize(models.get(name)?.input), preview);
      const resp = await api('POST', `/api/v1/models/${encodeURIComponent(name)}/predict`, { body: png, contentType: 'image/png' });
      showError(errorBox, null);
      out.replaceChildren(resultView(resp));
    } catch (e) {
      out.replaceChildren();
      showError(errorBox, e);
    } finally { go.disabled = false; }
  } });
  model.addEventListener('change', () => {
    const [h, w] = inputSize(models.get(model.value)?.input);
    info.textContent = `input ${h}×${w}`;
  });
  main.replaceChildren(el('h1', { text: 'Predict' }), errorBox,
    el('div', { class: 'predict' },
      el('div', { class: 'card' },
        el('div', { class: 'tools' }, el('label', {}, 'Model ', model), info),
        pad.canvas,
        el('div', { class: 'tools' }, el('label', {}, 'Brush ', brush), el('label', {}, invert, ' black on white'),
           el('button', { text: 'Clear', id: 'predict-clear', onclick: () => pad.clear() })),
        el('div', { class: 'tools' }, el('label', {}, 'or an image: ', file)),
        el('div', { class: 'tools' }, go, el('span', { class: 'muted' }, 'sent: '), preview)),
      el('div', { class: 'card' }, out)));
  api('GET', '/api/v1/models').then(({ models: list }) => {
    for (const m of list) models.set(m.name, m);
    model.replaceChildren(...list.map((m) => el('option', { value: m.name, text: m.name })));
    model.dispatchEvent(new Event('change'));
    if (list.length === 0) showError(errorBox, 'No models registered yet (dnnd ctl model create).');
  }).catch((e) => showError(errorBox, e));
  return () => {};
}
