// The REST API client of the dashboard, and the few DOM helpers every page uses.
//
// Errors: a non-2xx answer becomes an ApiError carrying the API's
// {"error":{"code","message"}} (or the HTTP status and body text when the
// body is not that), so a page can show the controller's own words.
//
// Auth: mutating requests (POST/PUT/DELETE) carry `Authorization: Bearer
// <token>` when a token is kept in sessionStorage. A 401 "unauthorized"
// answer to one asks the user for the token once, keeps it for the tab's
// life and retries the request; reads need no token.

const TOKEN_KEY = 'dnnd.token';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
  toString() { return `${this.message} (HTTP ${this.status}${this.code ? ', ' + this.code : ''})`; }
}

export function token() { return sessionStorage.getItem(TOKEN_KEY) || ''; }
export function setToken(t) {
  if (t) sessionStorage.setItem(TOKEN_KEY, t); else sessionStorage.removeItem(TOKEN_KEY);
  window.dispatchEvent(new Event('dnnd-token'));
}

const isMutating = (method) => method !== 'GET' && method !== 'HEAD';

async function errorOf(res) {
  const text = await res.text();
  try {
    const e = JSON.parse(text).error;
    if (e && typeof e.message === 'string') return new ApiError(res.status, e.code || '', e.message);
  } catch (_) { /* not JSON: fall through to the text */ }
  return new ApiError(res.status, '', text.trim() || res.statusText || 'request failed');
}

// api('GET', '/api/v1/jobs') -> parsed JSON (or text for non-JSON answers).
// options: body (an object, sent as JSON; or a Blob/string with contentType),
// contentType, raw (return the Response itself).
export async function api(method, path, { body, contentType, raw } = {}) {
  const send = () => {
    const headers = {};
    let payload;
    if (body !== undefined) {
      headers['Content-Type'] = contentType || 'application/json';
      payload = contentType ? body : JSON.stringify(body);
    }
    if (isMutating(method) && token()) headers['Authorization'] = 'Bearer ' + token();
    return fetch(path, { method, headers, body: payload });
  };
  let res;
  try {
    res = await send();
  } catch (e) {
    throw new ApiError(0, 'unreachable', `cannot reach the controller: ${e.message}`);
  }
  if (res.status === 401 && isMutating(method)) {
    const err = await errorOf(res);
    if (err.code !== 'unauthorized') throw err;
    const t = window.prompt(`${err.message}\n\nThis controller needs a bearer token for changes. Token:`, '');
    if (!t) throw err;
    setToken(t.trim());
    res = await send();
    if (res.status === 401) setToken('');  // a wrong token is not kept
  }
  if (!res.ok) throw await errorOf(res);
  if (raw) return res;
  const type = res.headers.get('Content-Type') || '';
  return type.includes('json') ? res.json() : res.text();
}

// el('td', {class: 'num', text: '3'}, child...) -> an element.
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') e.textContent = v;
    else if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

// Shows an error (ApiError or anything else) in `box`; showError(box, null) clears it.
export function showError(box, err) {
  box.textContent = err ? String(err instanceof ApiError ? err : err.message || err) : '';
}

export function stateBadge(state) {
  return el('span', { class: `state state-${state}`, text: state });
}

export function formatSeconds(s) {
  if (s === null || s === undefined || !isFinite(s)) return '—';
  s = Math.round(s);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function formatTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  return isNaN(d) ? String(iso) : d.toLocaleString();
}

// Runs `tick` now and every `ms` until the returned stop() is called; ticks
// never overlap (a slow controller delays the next one instead of piling up).
export function every(ms, tick) {
  let timer = null, stopped = false;
  const run = async () => {
    try { await tick(); } finally { if (!stopped) timer = setTimeout(run, ms); }
  };
  run();
  return () => { stopped = true; clearTimeout(timer); };
}
