// The worker pool: GET /api/v1/nodes every 2 s. A controller without the
// pool API (404 on the route) shows the same "no nodes registered" state as
// an empty pool, saying why.
import { api, el, every, formatSeconds, showError, stateBadge } from './api.js';

export function renderNodes(main) {
  const errorBox = el('div', { class: 'error', role: 'alert' });
  const body = el('tbody');
  const table = el('table', { id: 'nodes' },
    el('thead', {}, el('tr', {}, ...['name', 'state', 'job', 'index', 'threads', 'last seen', 'address']
      .map((h) => el('th', { text: h })))), body);
  const none = el('div', { class: 'notice', id: 'no-nodes', hidden: true });
  main.replaceChildren(el('h1', { text: 'Nodes' }), errorBox, none, table);
  const showNone = (why) => {
    none.replaceChildren(el('strong', { text: 'No nodes registered. ' }), why);
    none.hidden = false;
    table.hidden = true;
  };
  return every(2000, async () => {
    try {
      const { nodes } = await api('GET', '/api/v1/nodes');
      showError(errorBox, null);
      if (nodes.length === 0) {
        showNone('Start workers with worker.controller = "<this host:port>" and they appear here.');
        return;
      }
      none.hidden = true;
      table.hidden = false;
      body.replaceChildren(...nodes.map((n) => el('tr', { 'data-node': n.name },
        el('td', { text: n.name }),
        el('td', { class: 'state-cell' }, stateBadge(n.state)),
        el('td', {}, n.job === null || n.job === undefined ? '—' : el('a', { href: `#/jobs/${n.job}`, text: String(n.job) })),
        el('td', { class: 'num', text: n.index ?? '—' }),
        el('td', { class: 'num', text: String(n.threads) }),
        el('td', { text: `${formatSeconds(n.last_seen_seconds)} ago` }),
        el('td', { text: n.address }))));
    } catch (e) {
      if (e.status === 404) showNone(`This controller has no worker pool API (${e.message}).`);
      else showError(errorBox, e);
    }
  });
}
