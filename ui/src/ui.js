// Small pieces every page uses: formatting, error boxes, the confirm dialog, polling.
import {html, useEffect, useRef, useState} from './preact-htm.js';
import {get, query} from './api.js';

export {html};

const pad2 = n => String(n).padStart(2, '0');

// An API timestamp (RFC 3339, UTC) in the browser's local time: 2026-12-01 22:30:05.
export function fmtTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

// How long ago, in words: "12 s ago", "5 min ago".
export function ago(iso, now = Date.now()) {
  if (!iso) return 'never';
  const s = Math.round((now - new Date(iso).getTime()) / 1000);
  if (!isFinite(s)) return iso;
  if (s < 2) return 'just now';
  if (s < 90) return `${s} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 172800) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function pct(x) {
  if (x === null || x === undefined) return '–';
  return (x * 100).toFixed(x < 0.01 && x > 0 ? 2 : 1) + '%';
}

export function num(x, digits = 1) {
  if (x === null || x === undefined) return '–';
  return Number.isInteger(x) ? String(x) : x.toFixed(digits);
}

// A change of a diff as people read it: "services.eth.pool.max_idle_per_host: 25 → 5".
export function changeText(c) {
  const v = x => (x === undefined ? '' : typeof x === 'string' ? x : JSON.stringify(x));
  if (c.op === 'add') return `${c.path}: added ${v(c.to)}`;
  if (c.op === 'remove') return `${c.path}: removed (was ${v(c.from)})`;
  return `${c.path}: ${v(c.from)} \u2192 ${v(c.to)}`;
}

export function Changes({changes, empty}) {
  if (!changes) return null;
  if (changes.length === 0) return html`<p class="muted changes-empty">${empty || 'No change.'}</p>`;
  return html`<ul class="changes">
    ${changes.map(c => html`<li class=${'change op-' + c.op}><code>${changeText(c)}</code>${c.note ? html` <span class="muted">(${c.note})</span>` : null}</li>`)}
  </ul>`;
}

export function ErrorBox({error}) {
  if (!error) return null;
  return html`<div class="error" role="alert">
    ${error.message || String(error)}
    ${error.errors && error.errors.length ? html`<ul>${error.errors.map(e => html`<li>${e}</li>`)}</ul>` : null}
  </div>`;
}

export function Badge({kind, children, title}) {
  return html`<span class=${'badge badge-' + kind} title=${title}>${children}</span>`;
}

// Runs `load` now, when `deps` change, and every `everyMs` (0 = never again); returns
// [data, error, reload]. A load that fails keeps the last data and shows the error.
export function useLoad(load, deps, everyMs = 0) {
  const [state, setState] = useState({data: null, error: null});
  const seq = useRef(0);
  const run = async () => {
    const my = ++seq.current;
    try {
      const data = await load();
      if (my === seq.current) setState({data, error: null});
    } catch (error) {
      if (my === seq.current) setState(s => ({data: s.data, error}));
    }
  };
  useEffect(() => {
    run();
    if (!everyMs) return () => ++seq.current;
    const id = setInterval(run, everyMs);
    return () => {
      clearInterval(id);
      ++seq.current;
    };
  }, deps);
  return [state.data, state.error, run];
}

// A newest-first list of the API paged by ?before= (versions, events): `path`, the member of the
// answer holding the items (`key`), and the filters (`params`, reloaded from the first page when
// they change). Returns {items, next, error, loading, more}; more() appends the next page.
export function usePaged(path, key, limit, params) {
  const [state, setState] = useState({items: [], next: null, error: null, loading: true});
  const load = async (before, append) => {
    setState(s => ({...s, loading: true}));
    try {
      const data = await get(path + query({limit, before, ...params}));
      setState(s => ({items: append ? s.items.concat(data[key]) : data[key], next: data.next_before || null, error: null, loading: false}));
    } catch (error) {
      setState(s => ({...s, error, loading: false}));
    }
  };
  useEffect(() => {
    load(undefined, false);
  }, [JSON.stringify(params)]);
  return {...state, more: () => load(state.next, true)};
}

// A modal: what an admin action will do, a message field, and Confirm / Cancel. `onConfirm`
// (message) returns a promise; its rejection is shown in the dialog.
export function ConfirmDialog({title, children, confirmLabel, onConfirm, onClose, needMessage = true, extra}) {
  const [message, setMessage] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const input = useRef(null);
  useEffect(() => {
    if (input.current) input.current.focus();
    const esc = e => e.key === 'Escape' && onClose();
    window.addEventListener('keydown', esc);
    return () => window.removeEventListener('keydown', esc);
  }, []);
  const submit = async e => {
    e.preventDefault();
    if (extra && extra.invalid) return;
    setBusy(true);
    setError(null);
    try {
      await onConfirm(message.trim());
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };
  return html`<div class="overlay" onClick=${e => e.target === e.currentTarget && onClose()}>
    <form class="dialog" role="dialog" aria-modal="true" aria-label=${title} onSubmit=${submit}>
      <h2>${title}</h2>
      ${children}
      ${needMessage
        ? html`<label class="field">Message (why; stored with the change)
            <input ref=${input} name="message" value=${message} onInput=${e => setMessage(e.target.value)} maxlength="1024"
              placeholder="e.g. p99 doubled after v7" />
          </label>`
        : null}
      <${ErrorBox} error=${error} />
      <div class="buttons">
        <button type="button" onClick=${onClose}>Cancel</button>
        <button type="submit" class="primary" disabled=${busy || (extra && extra.invalid)}>${busy ? 'Working…' : confirmLabel}</button>
      </div>
    </form>
  </div>`;
}
