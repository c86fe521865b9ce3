// The jobs page (table refreshed every 2 s, submit form, cancel) and one
// job's page (state, parameters, live loss/accuracy charts, log, checkpoint).
import { api, el, every, formatSeconds, formatTime, showError, stateBadge } from './api.js';
import { lineChart } from './charts.js';

const REFRESH_MS = 2000;
const ACTIVE = new Set(['queued', 'running']);

function progressBar(pct) {
  const p = Math.max(0, Math.min(100, Number(pct) || 0));
  const fill = el('div', { class: 'fill' });
  fill.style.width = `${p}%`;
  return el('div', { class: 'progress', role: 'progressbar', 'aria-valuenow': p.toFixed(1) }, fill,
            el('span', { class: 'label', text: `${p.toFixed(p < 10 ? 1 : 0)}%` }));
}

function epochText(job) {
  const total = job.params && job.params.epochs;
  return total ? `${job.epoch}/${total}` : String(job.epoch);
}

function jobRow(job, onCancel) {
  const cancel = ACTIVE.has(job.state)
    ? el('button', { class: 'cancel', text: 'Cancel', onclick: () => onCancel(job.id) })
    : null;
  return el('tr', { 'data-job-id': job.id },
    el('td', { class: 'num' }, el('a', { href: `#/jobs/${job.id}`, text: String(job.id) })),
    el('td', { text: job.model }),
    el('td', { text: job.dataset }),
    el('td', { class: 'state-cell', title: job.reason || '' }, stateBadge(job.state)),
    el('td', {}, progressBar(job.progress)),
    el('td', { class: 'num', text: epochText(job) }),
    el('td', { class: 'num', text: ACTIVE.has(job.state) ? formatSeconds(job.eta_seconds) : '—' }),
    el('td', { text: formatTime(job.created) }),
    el('td', {}, cancel));
}

function option(value, text) { return el('option', { value, text: text || value }); }

// The submit form; `onCreated(job)` after a 201.
function submitForm(errorBox, onCreated) {
  const model = el('select', { name: 'model', required: true });
  const dataset = el('select', { name: 'dataset', required: true });
  const num = (name, value, step, min) => el('input', { type: 'number', name, value, step, min, required: true });
  const epochs = num('epochs', 5, 1, 1), batch = num('batch', 64, 1, 1), lr = num('lr', 0.001, 'any', 0);
  const workers = num('workers', 2, 1, 1);
  const mode = el('select', { name: 'mode' }, option('sync'), option('async'), option('kavg'));
  // Elastic: the scheduler may change the workers between epochs, up to the pool's size.
  const elastic = el('input', { type: 'checkbox', name: 'elastic' });
  const submit = el('button', { class: 'primary', type: 'submit', text: 'Submit job' });
  const label = (text, input) => el('label', {}, text, input);
  const form = el('form', { class: 'inline', id: 'submit-job' },
    label('Model', model), label('Dataset', dataset), label('Epochs', epochs), label('Batch', batch),
    label('Learning rate', lr), label('Workers', workers), label('Mode', mode), label('Elastic', elastic), submit);
  const fill = async () => {
    try {
      const [models, datasets] = await Promise.all([api('GET', '/api/v1/models'), api('GET', '/api/v1/datasets')]);
      model.replaceChildren(...models.models.map((m) => option(m.name)));
      dataset.replaceChildren(...datasets.datasets.map((d) => option(d.name, `${d.name} (${d.train_samples} samples)`)));
      submit.disabled = models.models.length === 0 || datasets.datasets.length === 0;
      submit.title = submit.disabled ? 'register a model and a dataset first (dnnd ctl model create / dataset upload)' : '';
    } catch (e) { showError(errorBox, e); }
  };
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    submit.disabled = true;
    try {
      const job = await api('POST', '/api/v1/jobs', { body: {
        model: model.value, dataset: dataset.value, epochs: Number(epochs.value), batch: Number(batch.value),
        lr: Number(lr.value), workers: Number(workers.value), mode: mode.value, elastic: elastic.checked } });
      showError(errorBox, null);
      onCreated(job);
    } catch (e) { showError(errorBox, e); } finally { submit.disabled = false; }
  });
  fill();
  return form;
}

export function renderJobs(main) {
  const errorBox = el('div', { class: 'error', role: 'alert' });
  const body = el('tbody');
  const empty = el('p', { class: 'muted', text: 'No jobs yet.' });
  const table = el('table', { id: 'jobs' },
    el('thead', {}, el('tr', {}, ...['id', 'model', 'dataset', 'state', 'progress', 'epoch', 'ETA', 'created', '']
      .map((h, i) => el('th', { class: i === 0 || i === 5 || i === 6 ? 'num' : null, text: h })))), body);
  let refresh = () => {};
  const cancel = async (id) => {
    if (!window.confirm(`Cancel job ${id}?`)) return;
    try { await api('POST', `/api/v1/jobs/${id}/cancel`); showError(errorBox, null); } catch (e) { showError(errorBox, e); }
    refresh();
  };
  refresh = async () => {
    try {
      const { jobs } = await api('GET', '/api/v1/jobs');
      jobs.sort((a, b) => b.id - a.id);
      body.replaceChildren(...jobs.map((j) => jobRow(j, cancel)));
      empty.hidden = jobs.length > 0;
      table.dataset.loaded = 'true';
    } catch (e) { showError(errorBox, e); }
  };
  main.replaceChildren(el('h1', { text: 'Jobs' }), errorBox,
    el('div', { class: 'card' }, el('h2', { text: 'New job' }), submitForm(errorBox, () => refresh())), table, empty);
  return every(REFRESH_MS, refresh);
}

function paramsList(job) {
  const dl = el('dl', { class: 'params' });
  const add = (k, v) => dl.append(el('dt', { text: k }), el('dd', { text: v }));
  add('model', job.model);
  add('dataset', job.dataset);
  // Parameters are stored as float32 where the engine uses them: 0.01 comes back as 0.009999999776.
  const show = (v) => (typeof v === 'number' && !Number.isInteger(v) ? String(Number(v.toPrecision(6))) : String(v));
  for (const [k, v] of Object.entries(job.params || {})) if (k !== 'model' && k !== 'dataset') add(k, show(v));
  add('step', `${job.step} / ${job.total_steps}`);
  if (job.parallelism !== undefined) add('workers now', String(job.parallelism));
  add('attempts', String(job.attempts ?? 1));
  add('created', formatTime(job.created));
  add('started', formatTime(job.started));
  add('finished', formatTime(job.finished));
  return dl;
}

function charts(history) {
  const pts = (key) => history.filter((e) => typeof e[key] === 'number').map((e) => [e.epoch, e[key]]);
  const loss = lineChart({ title: 'Loss per epoch', yMin: 0, series: [
    { name: 'train loss', points: pts('train_loss') }, { name: 'test loss', points: pts('test_loss') }] });
  loss.id = 'chart-loss';
  const acc = lineChart({ title: 'Test accuracy per epoch', yMin: 0, yMax: 1, yFormat: (v) => `${(v * 100).toFixed(0)}%`,
                          series: [{ name: 'test accuracy', points: pts('test_accuracy') }] });
  acc.id = 'chart-accuracy';
  // Workers per epoch and epoch time: how an elastic job's scheduler moved.
  const time = lineChart({ title: 'Epoch time (s) and workers', yMin: 0, series: [
    { name: 'seconds', points: pts('seconds') }, { name: 'workers', points: pts('parallelism') }] });
  time.id = 'chart-parallelism';
  return [loss, acc, time];
}

export function renderJob(main, id) {
  const errorBox = el('div', { class: 'error', role: 'alert' });
  const head = el('div', { class: 'card', id: 'job-head' });
  const chartBox = el('div', { class: 'charts', id: 'charts' });
  const params = el('div', { class: 'card' });
  const log = el('pre', { class: 'log', id: 'job-log' });
  const download = el('a', { href: `/api/v1/jobs/${id}/checkpoint`, download: `job-${id}.safetensors`, id: 'checkpoint',
                             text: 'Download checkpoint (safetensors)' });
  main.replaceChildren(el('p', {}, el('a', { href: '#/jobs', text: '← all jobs' })), el('h1', { text: `Job ${id}` }),
    errorBox, head, chartBox, el('h2', { text: 'Parameters' }), params, el('h2', { text: 'Log' }), log,
    el('p', {}, download));
  let lastKey = '';
  let stop = () => {};
  const refresh = async () => {
    try {
      const job = await api('GET', `/api/v1/jobs/${id}`);
      head.replaceChildren(el('div', { class: 'row' }, stateBadge(job.state), progressBar(job.progress),
        el('span', { text: `epoch ${epochText(job)} · ETA ${ACTIVE.has(job.state) ? formatSeconds(job.eta_seconds) : '—'}` })));
      if (job.reason) head.append(el('p', { class: 'reason', text: job.reason }));
      head.dataset.state = job.state;
      // Redraw the charts only when the history changed.
      const key = JSON.stringify(job.history);
      if (key !== lastKey) { chartBox.replaceChildren(...charts(job.history)); lastKey = key; }
      params.replaceChildren(paramsList(job));
      const text = await api('GET', `/api/v1/jobs/${id}/logs`);
      const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
      log.textContent = text || '(empty)';
      if (atEnd) log.scrollTop = log.scrollHeight;
      showError(errorBox, null);
      if (!ACTIVE.has(job.state)) stop();  // finished: nothing will change any more
    } catch (e) { showError(errorBox, e); }
  };
  stop = every(REFRESH_MS, refresh);
  return () => stop();
}
