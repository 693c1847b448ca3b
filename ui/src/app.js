// The Pathway console: sign-in, hash routing (#/versions, #/versions/7, #/fleet, #/traffic,
// #/rollouts, #/events) and the page frame. Each page is its own module.
import {html, render, useEffect, useState} from './preact-htm.js';
import {api, forgetToken, saveToken, token, whenUnauthorized, UNKNOWN_TOKEN} from './api.js';
import {ErrorBox} from './ui.js';
import {VersionsPage, VersionPage} from './versions.js';
import {FleetPage} from './fleet.js';
import {TrafficPage} from './traffic.js';
import {RolloutsPage} from './rollouts.js';
import {EventsPage} from './events.js';

const PAGES = [
  ['versions', 'Versions'],
  ['fleet', 'Fleet'],
  ['traffic', 'Traffic'],
  ['rollouts', 'Rollouts'],
  ['events', 'Events'],
];

// "#/versions/7?from=5" -> {page: 'versions', id: '7', params: URLSearchParams}
function parseHash() {
  const h = location.hash.replace(/^#\/?/, '');
  const [path, q] = h.split('?', 2);
  const [page, id] = path.split('/');
  return {page: PAGES.some(p => p[0] === page) ? page : 'versions', id: id || null, params: new URLSearchParams(q || '')};
}

function SignIn({onSignedIn, notice}) {
  const [value, setValue] = useState('');
  const [error, setError] = useState(notice ? {message: notice} : null);
  const [busy, setBusy] = useState(false);
  const submit = async e => {
    e.preventDefault();
    const t = value.trim();
    if (!t) {
      setError({message: 'Paste a token first: an admin or viewer token of this control plane.'});
      return;
    }
    setBusy(true);
    setError(null);
    try {
      const {data} = await api('GET', '/v1/whoami', undefined, t);
      if (data.role !== 'admin' && data.role !== 'viewer') {
        throw new Error(`Token "${data.name}" has role ${data.role}: the console needs an admin or a viewer token.`);
      }
      saveToken(t);
      onSignedIn(data);
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };
  return html`<main class="signin">
    <form class="card" onSubmit=${submit}>
      <h1>Pathway console</h1>
      <p class="muted">Paste a token of this control plane. A viewer token sees everything; an admin token may also roll back, tag and steer rollouts. The token stays in this browser tab only.</p>
      <label class="field">Token
        <input type="password" name="token" autocomplete="off" spellcheck="false" value=${value}
          onInput=${e => setValue(e.target.value)} autofocus />
      </label>
      <${ErrorBox} error=${error} />
      <div class="buttons"><button type="submit" class="primary" disabled=${busy}>${busy ? 'Checking…' : 'Sign in'}</button></div>
    </form>
  </main>`;
}

function Shell({who, route, onSignOut}) {
  const admin = who.role === 'admin';
  let page;
  switch (route.page) {
    case 'fleet': page = html`<${FleetPage} />`; break;
    case 'traffic': page = html`<${TrafficPage} />`; break;
    case 'rollouts': page = html`<${RolloutsPage} admin=${admin} />`; break;
    case 'events': page = html`<${EventsPage} />`; break;
    default:
      page = route.id
        ? html`<${VersionPage} n=${Number(route.id)} from=${route.params.get('from')} admin=${admin} key=${route.id} />`
        : html`<${VersionsPage} />`;
  }
  return html`<div class="shell">
    <header class="top">
      <a class="brand" href="#/versions">Pathway</a>
      <nav>
        ${PAGES.map(([id, label]) => html`<a href=${'#/' + id} class=${route.page === id ? 'active' : ''}>${label}</a>`)}
      </nav>
      <div class="who">
        <span class=${'role role-' + who.role} title="the token's name and role">${who.name} · ${who.role}</span>
        <button type="button" class="link" onClick=${onSignOut}>Sign out</button>
      </div>
    </header>
    <main class="page">${page}</main>
  </div>`;
}

function App() {
  const [route, setRoute] = useState(parseHash());
  const [who, setWho] = useState(null);
  const [checking, setChecking] = useState(!!token());
  const [notice, setNotice] = useState(null);

  useEffect(() => {
    const on = () => setRoute(parseHash());
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);

  useEffect(() => whenUnauthorized(() => {
    forgetToken();
    setWho(null);
    setNotice(UNKNOWN_TOKEN);
  }), []);

  useEffect(() => {
    if (!token()) return;
    api('GET', '/v1/whoami')
      .then(({data}) => setWho(data))
      .catch(err => {
        forgetToken();
        setNotice(err.message);
      })
      .finally(() => setChecking(false));
  }, []);

  if (checking) return html`<p class="boot">Checking the token…</p>`;
  if (!who) return html`<${SignIn} notice=${notice} onSignedIn=${w => { setNotice(null); setWho(w); }} />`;
  return html`<${Shell} who=${who} route=${route} onSignOut=${() => { forgetToken(); setWho(null); setNotice(null); }} />`;
}

const root = document.getElementById('app');
root.textContent = ''; // the no-JavaScript note
render(html`<${App} />`, root);
