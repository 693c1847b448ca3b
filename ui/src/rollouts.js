// Rollouts: the live rollout (step, the gate's verdicts with canary vs baseline figures, and for
// admins pause / resume / promote / abort), then the recent ones. Refreshed every 5 s.
import {html, useState} from './preact-htm.js';
import {api, get, query} from './api.js';
import {Badge, ConfirmDialog, ErrorBox, ago, fmtTime, num, pct, useLoad} from './ui.js';

const SHOWN = 12; // verdicts listed: the latest

const ACTIONS = {
  pause: {label: 'Pause', when: ['progressing'], what: 'The current set keeps its version; the gate and the hold stop until you resume.'},
  resume: {label: 'Resume', when: ['paused'], what: 'The hold goes on from where it stopped; the gate starts a new window.'},
  promote: {label: 'Promote', when: ['progressing', 'paused'], what: 'Every dataplane gets the version at once, whatever the gate says.'},
  abort: {label: 'Abort', when: ['progressing', 'paused'], what: 'A new version of kind rollback carries the previous document, and every dataplane gets it.'},
};

function Figures({f}) {
  if (!f) return html`<span class="muted">–</span>`;
  return html`<span class="figures">${f.requests} req · ${pct(f.error_rate)} err · p99 ${num(f.p99_ms, 0)} ms</span>`;
}

function Live({r, admin, reload}) {
  const [action, setAction] = useState(null);
  const steps = r.steps || [];
  const all = r.verdicts || [];
  const verdicts = all.slice(-SHOWN).reverse(); // the latest first
  return html`<article class="rollout live" data-rollout=${r.id} data-state=${r.state}>
    <div class="page-head">
      <h2>Rollout ${r.id}: <a href=${'#/versions/' + r.from_version}>v${r.from_version}</a> → <a href=${'#/versions/' + r.version}>v${r.version}</a> <${Badge} kind=${'ro-' + r.state}>${r.state}<//></h2>
      ${admin
        ? html`<div class="actions">${Object.entries(ACTIONS)
            .filter(([, a]) => a.when.includes(r.state))
            .map(([k, a]) => html`<button type="button" class=${'write' + (k === 'abort' ? ' danger' : '')} onClick=${() => setAction(k)}>${a.label}</button>`)}</div>`
        : null}
    </div>
    <ol class="steps">
      ${steps.map((s, i) => html`<li class=${i < r.step ? 'done' : i === r.step ? 'current' : ''}>${s.percent}%<span class="muted"> hold ${s.hold}</span></li>`)}
    </ol>
    <dl class="meta">
      <dt>Step</dt><dd>${r.step + 1} of ${steps.length} (${r.step_percent}% of the fleet), since ${ago(r.step_started_at)}</dd>
      <dt>Canary set</dt><dd>${(r.dataplanes || []).join(', ') || html`<span class="muted">none</span>`}</dd>
      <dt>Gate</dt><dd>${r.failures} failure${r.failures === 1 ? '' : 's'}, ${r.step_passes} pass${r.step_passes === 1 ? '' : 'es'} this step</dd>
      <dt>Started</dt><dd>${fmtTime(r.created_at)} by ${r.author}</dd>
    </dl>
    <h3>Gate verdicts${all.length > SHOWN ? html` <span class="muted">(the latest ${SHOWN} of ${all.length})</span>` : null}</h3>
    ${verdicts.length
      ? html`<div class="table-box"><table>
          <thead><tr><th>At</th><th>Step</th><th>Result</th><th>Canary</th><th>Baseline</th><th>Reason</th></tr></thead>
          <tbody>${verdicts.map(v => html`<tr class=${'verdict verdict-' + v.result}>
            <td class="nowrap">${fmtTime(v.at)}</td><td>${v.step + 1}</td><td><${Badge} kind=${'verdict-' + v.result}>${v.result}<//></td>
            <td><${Figures} f=${v.canary} /></td><td><${Figures} f=${v.baseline_compared || v.baseline} />${v.baseline_source && v.baseline_source !== 'window' ? html` <span class="muted">(${v.baseline_source})</span>` : null}</td>
            <td>${v.reason || ''}${v.dataplane ? ` (${v.dataplane})` : ''}</td></tr>`)}</tbody>
        </table></div>`
      : html`<p class="muted">No gate window has ended yet.</p>`}
    ${action
      ? html`<${ConfirmDialog} title=${`${ACTIONS[action].label} rollout ${r.id}`} confirmLabel=${ACTIONS[action].label} needMessage=${false}
          onClose=${() => setAction(null)}
          onConfirm=${async () => { await api('POST', `/v1/rollouts/${r.id}/${action}`); setAction(null); reload(); }}>
          <p>${ACTIONS[action].what}</p><//>`
      : null}
  </article>`;
}

export function RolloutsPage({admin}) {
  const [data, error, reload] = useLoad(async () => {
    const list = await get('/v1/rollouts' + query({limit: 10}));
    const live = list.current ? await get('/v1/rollouts/' + list.current) : null;
    return {list, live};
  }, [], 5000);
  return html`<section data-page="rollouts">
    <div class="page-head"><h1>Rollouts</h1></div>
    <${ErrorBox} error=${error} />
    ${data && data.live ? html`<${Live} r=${data.live} admin=${admin} reload=${reload} />` : data ? html`<p class="muted">No rollout in progress. A write with a "rollout" (or the configured default) starts one.</p>` : null}
    ${data && data.list.rollouts.length
      ? html`<h2>Recent rollouts</h2><div class="table-box"><table>
          <thead><tr><th>Id</th><th>Versions</th><th>State</th><th>Author</th><th>Updated</th><th>Reason</th></tr></thead>
          <tbody>${data.list.rollouts.map(r => html`<tr><td>${r.id}</td><td>v${r.from_version} → <a href=${'#/versions/' + r.version}>v${r.version}</a></td>
            <td><${Badge} kind=${'ro-' + r.state}>${r.state}<//></td><td>${r.author}</td><td>${fmtTime(r.updated_at)}</td><td>${r.reason || ''}</td></tr>`)}</tbody>
        </table></div>`
      : null}
  </section>`;
}
