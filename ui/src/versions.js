// Versions: the timeline (newest first, paged, filtered by author and kind, rollback arrows drawn
// from each rollback to its target) and one version (its YAML document, its diff against any other
// version, and for admins "Roll back to this version" and "Tag").
import {html, useEffect, useLayoutEffect, useRef, useState} from './preact-htm.js';
import {api, get, query} from './api.js';
import {Badge, Changes, ConfirmDialog, ErrorBox, fmtTime, useLoad, usePaged} from './ui.js';
import {toYaml} from './yaml.js';

const PAGE = 20;
const KINDS = ['apply', 'patch', 'rollback'];

function Fleet({fleet}) {
  if (!fleet) return html`<span class="muted">–</span>`;
  const parts = [];
  if (fleet.synced) parts.push(html`<span class="fleet-synced" title="dataplanes running it">✓ ${fleet.synced}</span>`);
  if (fleet.applying) parts.push(html`<span class="fleet-applying" title="dataplanes handed it that have not answered yet">… ${fleet.applying}</span>`);
  if (fleet.rejected) parts.push(html`<span class="fleet-rejected" title="dataplanes that rejected it (NACK)">✗ ${fleet.rejected}</span>`);
  return parts.length ? html`<span class="fleet">${parts}</span>` : html`<span class="muted" title="no dataplane runs it">–</span>`;
}

function Tags({tags}) {
  if (!tags || !tags.length) return null;
  return html`<span class="tags">${tags.map(t => html`<${Badge} kind="tag">${t}<//>`)}</span>`;
}

// The rollback arrows: an SVG beside the rows, each arrow from a rollback row to the row of the
// version it restored (or off the bottom when that one is not loaded yet). Rows are measured after
// layout and again whenever the list resizes, so wrapped rows on a phone keep their arrows.
function Arrows({items, listRef}) {
  const [geo, setGeo] = useState({height: 0, rows: {}});
  useLayoutEffect(() => {
    const list = listRef.current;
    if (!list) return;
    const measure = () => {
      const rows = {};
      for (const el of list.querySelectorAll('[data-version]')) rows[el.dataset.version] = el.offsetTop + Math.min(el.offsetHeight / 2, 18);
      setGeo({height: list.offsetHeight, rows});
    };
    measure();
    const ro = new ResizeObserver(measure);
    ro.observe(list);
    return () => ro.disconnect();
  }, [items]);
  const arrows = items
    .filter(v => v.kind === 'rollback' && v.source_version)
    .map((v, i) => {
      const y1 = geo.rows[v.version];
      if (y1 === undefined) return null;
      const known = geo.rows[v.source_version] !== undefined;
      const y2 = known ? geo.rows[v.source_version] : geo.height - 2;
      const x = 30 - (i % 3) * 9; // lanes, so that nested arrows stay apart
      const d = `M 36 ${y1} C ${x - 14} ${y1}, ${x - 14} ${y2}, 36 ${y2}`;
      return html`<path class=${'arrow' + (known ? '' : ' arrow-off')} d=${d} marker-end="url(#arrowhead)"
        data-from=${v.version} data-to=${v.source_version}><title>v${v.version} rolled back to v${v.source_version}</title></path>`;
    });
  return html`<svg class="arrows" width="40" height=${geo.height} aria-hidden="true">
    <defs><marker id="arrowhead" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
      <path class="arrowhead" d="M 0 0 L 10 5 L 0 10 z" /></marker></defs>
    ${arrows}
  </svg>`;
}

export function VersionsPage() {
  const [filters, setFilters] = useState({author: '', kind: ''});
  const [author, setAuthor] = useState('');
  const {items, next, error, loading, more} = usePaged('/v1/versions', 'versions', PAGE, filters);
  const listRef = useRef(null);

  return html`<section data-page="versions">
    <div class="page-head">
      <h1>Versions</h1>
      <form class="filters" onSubmit=${e => { e.preventDefault(); setFilters({...filters, author: author.trim()}); }}>
        <label>Author <input name="author" value=${author} onInput=${e => setAuthor(e.target.value)} onChange=${e => setFilters({...filters, author: e.target.value.trim()})} placeholder="any" size="10" /></label>
        <label>Kind <select name="kind" value=${filters.kind} onChange=${e => setFilters({...filters, kind: e.target.value})}>
          <option value="">any</option>${KINDS.map(k => html`<option value=${k}>${k}</option>`)}
        </select></label>
      </form>
    </div>
    <${ErrorBox} error=${error} />
    ${!loading && !error && items.length === 0 ? html`<p class="muted">No version${filters.author || filters.kind ? ' matches these filters' : ' yet: nothing was applied to this control plane'}.</p>` : null}
    <div class="timeline">
      <${Arrows} items=${items} listRef=${listRef} />
      <ol class="versions" ref=${listRef}>
        ${items.map(v => html`<li class=${'version kind-' + v.kind} data-version=${v.version}>
          <a class="vnum" href=${'#/versions/' + v.version}>v${v.version}</a>
          <span class="vkind"><${Badge} kind=${v.kind}>${v.kind}<//>${v.source_version ? html` <span class="muted" title="source version">← <a href=${'#/versions/' + v.source_version}>v${v.source_version}</a></span>` : null}</span>
          <span class="vtime" title=${v.created_at}>${fmtTime(v.created_at)}</span>
          <span class="vauthor">${v.author}</span>
          <span class="vmsg">${v.message || html`<span class="muted">(no message)</span>`}</span>
          <span class="vtags"><${Tags} tags=${v.tags} /></span>
          <span class="vfleet"><${Fleet} fleet=${v.fleet} /></span>
        </li>`)}
      </ol>
    </div>
    <div class="pager">
      ${next ? html`<button type="button" onClick=${more} disabled=${loading}>Older versions</button>` : items.length ? html`<span class="muted">The first version is shown.</span>` : null}
    </div>
  </section>`;
}

function RollbackDialog({v, onClose}) {
  const [plan, setPlan] = useState(null); // {active, changes}
  const [error, setError] = useState(null);
  useEffect(() => {
    (async () => {
      const h = await get('/healthz');
      const active = h.active_version;
      const diff = active ? await get(`/v1/versions/${v.version}/diff` + query({from: active})) : null;
      setPlan({active, changes: diff ? diff.changes : []});
    })().catch(setError);
  }, []);
  const confirm = async message => {
    const body = {to: v.version};
    if (message) body.message = message;
    const r = await api('POST', '/v1/rollback', body);
    onClose(r.status === 201 ? r.data.version : null, r.status === 201 ? null : `Nothing changed: v${v.version}'s document is the active one.`);
  };
  return html`<${ConfirmDialog} title=${`Roll back to v${v.version}`} confirmLabel="Roll back" onConfirm=${confirm} onClose=${() => onClose()}
      extra=${{invalid: !plan}}>
    <p>A new version of kind <b>rollback</b> will carry v${v.version}'s document, and every dataplane will be handed it.</p>
    <${ErrorBox} error=${error} />
    ${plan
      ? html`<p class="muted">What changes from the active version v${plan.active}:</p><${Changes} changes=${plan.changes} empty=${`None: v${v.version}'s document is the active one.`} />`
      : error ? null : html`<p class="muted">Working out what will change…</p>`}
  <//>`;
}

const TAG_NAME = /^[A-Za-z0-9_.-]{1,64}$/;

function TagDialog({v, onClose}) {
  const [name, setName] = useState('');
  // every tag now (one call, so that typing a new name asks nothing that would answer 404)
  const [tags, tagsError] = useLoad(async () => new Map((await get('/v1/tags')).tags.map(t => [t.name, t])), []);
  const valid = TAG_NAME.test(name) && !/^[0-9]+$/.test(name);
  const current = tags ? tags.get(name) || null : undefined; // undefined: not known yet; null: a new tag
  const confirm = async message => {
    const body = {version: v.version};
    if (message) body.message = message;
    await api('PUT', '/v1/tags/' + encodeURIComponent(name), body);
    onClose(v.version, null);
  };
  let what = null;
  if (!name) what = html`<p class="muted">A tag names a version, so that rollbacks and rollouts can say "stable" instead of a number.</p>`;
  else if (!valid) what = html`<p class="error">A tag name is 1 to 64 letters, digits, "_", "." or "-", and not only digits.</p>`;
  else if (current === null) what = html`<ul class="changes"><li class="change op-add"><code>tags.${name}: added v${v.version}</code></li></ul>`;
  else if (current && current.version === v.version) what = html`<p class="muted">${name} already points at v${v.version}.</p>`;
  else if (current) what = html`<ul class="changes"><li class="change op-replace"><code>tags.${name}: v${current.version} \u2192 v${v.version}</code></li></ul>`;
  return html`<${ConfirmDialog} title=${`Tag v${v.version}`} confirmLabel="Tag" onConfirm=${confirm} onClose=${() => onClose()}
      extra=${{invalid: !valid || current === undefined}}>
    <${ErrorBox} error=${tagsError} />
    <label class="field">Tag name <input name="tag" value=${name} onInput=${e => setName(e.target.value.trim())} placeholder="stable" maxlength="64" /></label>
    ${what}
  <//>`;
}

export function VersionPage({n, from, admin}) {
  const [v, error] = useLoad(() => get('/v1/versions/' + n), [n]);
  const [against, setAgainst] = useState(from !== null && from !== undefined && from !== '' ? Number(from) : n - 1);
  const [againstInput, setAgainstInput] = useState(String(against));
  const [diff, diffError] = useLoad(() => get(`/v1/versions/${n}/diff` + query({from: against})), [n, against]);
  const [dialog, setDialog] = useState(null);
  const [done, setDone] = useState(null);

  const closed = (newVersion, note) => {
    setDialog(null);
    if (note) setDone(note);
    if (dialog === 'rollback' && newVersion) location.hash = '#/versions/' + newVersion;
    else if (dialog === 'tag' && newVersion) setDone(`Tagged v${newVersion}.`);
  };
  const compare = e => {
    e.preventDefault();
    const m = Number(againstInput);
    if (Number.isInteger(m) && m >= 0) setAgainst(m);
  };

  if (error) return html`<section><p><a href="#/versions">← Versions</a></p><${ErrorBox} error=${error} /></section>`;
  if (!v) return html`<section><p class="muted">Loading v${n}…</p></section>`;
  return html`<section class="version-page" data-page="version" data-n=${v.version}>
    <p><a href="#/versions">← Versions</a></p>
    <div class="page-head">
      <h1>v${v.version} <${Badge} kind=${v.kind}>${v.kind}<//> <${Tags} tags=${v.tags} /></h1>
      ${admin
        ? html`<div class="actions">
            <button type="button" class="write primary" onClick=${() => { setDone(null); setDialog('rollback'); }}>Roll back to this version</button>
            <button type="button" class="write" onClick=${() => { setDone(null); setDialog('tag'); }}>Tag</button>
          </div>`
        : null}
    </div>
    ${done ? html`<div class="notice" role="status">${done}</div>` : null}
    <dl class="meta">
      <dt>Created</dt><dd>${fmtTime(v.created_at)}</dd>
      <dt>Author</dt><dd>${v.author}</dd>
      <dt>Message</dt><dd>${v.message || html`<span class="muted">(none)</span>`}</dd>
      ${v.source_version ? html`<dt>Source</dt><dd><a href=${'#/versions/' + v.source_version}>v${v.source_version}</a></dd>` : null}
      <dt>Fleet</dt><dd><${Fleet} fleet=${v.fleet} /></dd>
      <dt>Hash</dt><dd><code class="hash">${v.hash}</code></dd>
    </dl>
    <h2>Changes</h2>
    <form class="filters" onSubmit=${compare}>
      <label>Against version <input name="from" type="number" min="0" value=${againstInput} onInput=${e => setAgainstInput(e.target.value)} size="5" /></label>
      <button type="submit">Compare</button>
      <span class="muted">${against === n - 1 ? '(its parent)' : ''}${against === 0 ? ' (0 = the empty document)' : ''}</span>
    </form>
    <${ErrorBox} error=${diffError} />
    ${diff ? html`<div class="diff"><p class="muted">From v${diff.from} to v${diff.to}: ${diff.changes.length} change${diff.changes.length === 1 ? '' : 's'}</p><${Changes} changes=${diff.changes} empty="The two documents are the same." /></div>` : null}
    <h2>Document</h2>
    <pre class="yaml">${toYaml(v.document)}</pre>
    ${dialog === 'rollback' ? html`<${RollbackDialog} v=${v} onClose=${closed} />` : null}
    ${dialog === 'tag' ? html`<${TagDialog} v=${v} onClose=${closed} />` : null}
  </section>`;
}
