// The dashboard's entry point: hash routes to pages, the token indicator.
//   #/jobs  #/jobs/<id>  #/nodes  #/predict
// Each page renders into <main> and returns a stop() that ends its polling
// when the user leaves it.
import { el, setToken, token } from './api.js';
import { renderJob, renderJobs } from './jobs.js';
import { renderNodes } from './nodes.js';
import { renderPredict } from './predict.js';

const main = document.getElementById('main');
let stopPage = () => {};

function route() {
  stopPage();
  const hash = location.hash.replace(/^#/, '') || '/jobs';
  const parts = hash.split('/').filter(Boolean);
  let page = parts[0];
  if (page === 'jobs' && parts[1]) stopPage = renderJob(main, decodeURIComponent(parts[1]));
  else if (page === 'nodes') stopPage = renderNodes(main);
  else if (page === 'predict') stopPage = renderPredict(main);
  else { page = 'jobs'; stopPage = renderJobs(main); }
  for (const a of document.querySelectorAll('header nav a')) a.classList.toggle('active', a.dataset.page === page);
}

function showAuth() {
  const box = document.getElementById('auth');
  box.replaceChildren(token() ? el('span', {}, 'token set', el('button', { text: 'Forget', onclick: () => setToken('') })) : '');
}

window.addEventListener('hashchange', route);
window.addEventListener('dnnd-token', showAuth);
showAuth();
route();
