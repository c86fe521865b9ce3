// Drives Debian's headless Chromium through a running controller's dashboard
// and checks what it rendered (run by dashboard_test.cc, which starts the
// controller and trains job --job first):
//   node browse.mjs --url http://127.0.0.1:PORT --job ID --out DIR
//                   --nodes-route yes|no --predict-route yes|no [--chromium PATH]
// Prints "screenshot <path>" per page and "ok <check>" per passed check;
// exits 1 at the first failed check, naming it.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import puppeteer from 'puppeteer-core';

const args = {};
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
for (const k of ['url', 'job', 'out', 'nodes-route', 'predict-route'])
  if (!args[k]) { console.error(`browse.mjs: --${k} is required`); process.exit(2); }
mkdirSync(args.out, { recursive: true });

const TIMEOUT = 15000;
let browser, page;
const pageErrors = [];
const start = Date.now();

function check(cond, what, detail = '') {
  if (!cond) throw new Error(`FAILED: ${what}${detail ? ': ' + detail : ''}`);
  console.log(`ok ${what} (${((Date.now() - start) / 1000).toFixed(1)} s)`);
}

async function shot(page, name) {
  const path = join(args.out, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  console.log(`screenshot ${path}`);
}

async function text(page, selector) {
  return page.$eval(selector, (e) => e.textContent.trim());
}

async function jobsPage(page) {
  await page.goto(`${args.url}/`, { waitUntil: 'networkidle0' });
  check(page.url().endsWith('/ui/'), 'GET / redirects to the dashboard', page.url());
  const row = `#jobs tr[data-job-id="${args.job}"]`;
  await page.waitForSelector(`${row} .state`, { timeout: TIMEOUT });
  const state = await text(page, `${row} .state`);
  check(state === 'succeeded', `jobs table shows job ${args.job} with its state`, state);
  check((await page.$eval(`${row} .state`, (e) => e.className)).includes('state-succeeded'), 'the state is coloured by class');
  check((await text(page, `${row} .progress .label`)) === '100%', 'the progress bar reads 100%');
  check((await page.$$eval(`${row} td`, (tds) => tds.map((t) => t.textContent)))[5] === '3/3', 'epoch column reads 3/3');
  await page.waitForFunction(() => document.querySelectorAll('#submit-job select[name=model] option').length > 0,
                             { timeout: TIMEOUT });
  await shot(page, 'jobs');

  // Submit a long job through the form, then cancel it from its row.
  await page.$eval('#submit-job input[name=epochs]', (e) => { e.value = '100000'; });
  await page.$eval('#submit-job input[name=workers]', (e) => { e.value = '1'; });
  await page.click('#submit-job button[type=submit]');
  const next = `#jobs tr[data-job-id="${Number(args.job) + 1}"]`;
  await page.waitForSelector(`${next} button.cancel`, { timeout: TIMEOUT });
  check(true, 'a job submitted with the form appears in the table');
  page.once('dialog', (d) => d.accept());
  await page.click(`${next} button.cancel`);
  await page.waitForFunction((sel) => document.querySelector(sel)?.textContent === 'cancelled',
                             { timeout: TIMEOUT }, `${next} .state`);
  check(true, 'the cancel button cancels it');

  // A bad submission shows the API's own error message.
  await page.$eval('#submit-job input[name=batch]', (e) => { e.value = '0'; e.min = '0'; });
  await page.click('#submit-job button[type=submit]');
  await page.waitForFunction(() => document.querySelector('.error')?.textContent.includes("'batch'"), { timeout: TIMEOUT });
  check(true, 'an API error is shown to the user', await text(page, '.error'));
}

async function jobPage(page) {
  await page.goto(`${args.url}/ui/#/jobs/${args.job}`, { waitUntil: 'networkidle0' });
  await page.waitForSelector('#job-head[data-state]', { timeout: TIMEOUT });
  check((await page.$eval('#job-head', (e) => e.dataset.state)) === 'succeeded', 'job page shows the state');
  await page.waitForSelector('#chart-loss circle.point', { timeout: TIMEOUT });
  const loss = await page.$$eval('#chart-loss circle.point', (cs) => cs.map((c) => Number(c.dataset.y)));
  check(loss.length === 6 && loss.every(Number.isFinite), 'loss chart has train and test loss for 3 epochs', JSON.stringify(loss));
  const acc = await page.$$eval('#chart-accuracy circle.point', (cs) => cs.map((c) => Number(c.dataset.y)));
  check(acc.length === 3 && acc.every((a) => a >= 0 && a <= 1), 'accuracy chart has 3 points', JSON.stringify(acc));
  const api = await page.evaluate(async (id) => (await (await fetch(`/api/v1/jobs/${id}`)).json()).history, args.job);
  check(Math.abs(api[2].train_loss - loss[2]) < 1e-9, 'chart points are the API history', `${api[2].train_loss} vs ${loss[2]}`);
  await page.waitForFunction(() => document.querySelector('#job-log')?.textContent.includes('succeeded'), { timeout: TIMEOUT });
  check(true, 'the job log is shown');
  const ckpt = await page.$eval('#checkpoint', async (a) => (await fetch(a.href)).status);
  check(ckpt === 200, 'the checkpoint link downloads', String(ckpt));
  await shot(page, 'job');
}

async function nodesPage(page) {
  await page.goto(`${args.url}/ui/#/nodes`, { waitUntil: 'networkidle0' });
  if (args['nodes-route'] === 'yes') {
    await page.waitForFunction(() => !document.querySelector('#no-nodes').hidden ||
                               document.querySelectorAll('#nodes tbody tr').length > 0, { timeout: TIMEOUT });
    const rows = await page.$$eval('#nodes tbody tr', (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));
    const api = await page.evaluate(async () => (await (await fetch('/api/v1/nodes')).json()).nodes);
    check(rows.length === api.length || (api.length === 0 && rows.length === 0),
          'nodes table has a row per node of GET /api/v1/nodes', `${rows.length} rows, ${api.length} nodes`);
    for (const n of api) check(rows.some((r) => r[0] === n.name && r[1] === n.state), `node ${n.name} is listed with state ${n.state}`);
  } else {
    await page.waitForSelector('#no-nodes:not([hidden])', { timeout: TIMEOUT });
    check((await text(page, '#no-nodes')).startsWith('No nodes registered'), 'without the pool API, "no nodes registered" is shown');
  }
  await shot(page, 'nodes');
}

async function predictPage(page) {
  await page.goto(`${args.url}/ui/#/predict`, { waitUntil: 'networkidle0' });
  await page.waitForFunction(() => document.querySelectorAll('#predict-model option').length > 0, { timeout: TIMEOUT });
  // Draw a thick "T" (white on black).
  const box = await (await page.$('#draw')).boundingBox();
  const stroke = async (pts) => {
    await page.mouse.move(box.x + pts[0][0] * box.width, box.y + pts[0][1] * box.height);
    await page.mouse.down();
    for (const [x, y] of pts.slice(1)) await page.mouse.move(box.x + x * box.width, box.y + y * box.height, { steps: 8 });
    await page.mouse.up();
  };
  await stroke([[0.2, 0.2], [0.8, 0.2]]);
  await stroke([[0.5, 0.2], [0.5, 0.85]]);
  const litShare = () => page.$eval('#draw', (c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) n += d[i] > 128 ? 1 : 0;
    return n / (c.width * c.height);
  });
  const lit = await litShare();
  check(lit > 0.05 && lit < 0.5, 'drawing puts white ink on the black canvas', lit.toFixed(3));
  await page.click('#predict-go');
  if (args['predict-route'] === 'yes') {
    await page.waitForSelector('#predict-result .class', { timeout: TIMEOUT });
    const cls = await text(page, '#predict-result .class');
    const bars = await page.$$eval('#predict-result rect.bar', (rs) => rs.map((r) => Number(r.dataset.p)));
    check(cls.length > 0, 'a predicted class is shown', cls);
    check(bars.length >= 2 && Math.abs(bars.reduce((a, b) => a + b, 0) - 1) < 1e-3, 'probability bars sum to 1', JSON.stringify(bars));
  } else {
    await page.waitForFunction(() => document.querySelector('.error')?.textContent.length > 0, { timeout: TIMEOUT });
    const err = await text(page, '.error');
    check(err.includes('no route') && err.includes('404'), 'without the predict route, the API error is shown', err);
  }
  check((await page.$eval('#preview', (c) => [c.width, c.height].join('x'))) === '28x28', 'the image sent is 28x28');
  await shot(page, 'predict');
  // An image file replaces the drawing (the jobs page's screenshot: mostly light grey).
  await page.click('#predict-clear');
  check((await litShare()) === 0, 'Clear blanks the canvas');
  await (await page.$('#predict-file')).uploadFile(join(args.out, 'jobs.png'));
  await page.waitForFunction(() => {
    const c = document.querySelector('#draw');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) n += d[i] > 128 ? 1 : 0;
    return n > 0.5 * c.width * c.height;
  }, { timeout: TIMEOUT });
  check(true, 'an uploaded image is drawn on the canvas');
}

try {
  browser = await puppeteer.launch({
    executablePath: args.chromium || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--headless=new', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 900 });
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  await jobsPage(page);
  await jobPage(page);
  await nodesPage(page);
  await predictPage(page);
  check(pageErrors.length === 0, 'no uncaught JavaScript errors', pageErrors.join('; '));
  console.log('browse: all checks passed');
} catch (e) {
  console.error(e.message);
  if (pageErrors.length) console.error(`page errors: ${pageErrors.join('; ')}`);
  if (page) await shot(page, 'failure').catch(() => {});
  process.exitCode = 1;
} finally {
  if (browser) await browser.close();
}
