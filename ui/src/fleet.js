// Fleet: every dataplane the control plane knows, refreshed every 10 s. Rejected and drifted ones
// stand out (a red row with the reason under it).
import {html} from './preact-htm.js';
import {get, query} from './api.js';
import {Badge, ErrorBox, ago, fmtTime, useLoad} from './ui.js';

const BAD = new Set(['rejected', 'drifted']);
const STATE_HELP = {
  synced: 'runs the version it was handed',
  applying: 'was handed a version and has not answered yet',
  rejected: 'rejected (NACKed) the version it was handed',
  drifted: 'reports a document other than the version it acknowledged',
  stale: 'has not reported within the heartbeat timeout',
  disconnected: 'has not been heard from for a long time',
};

// Every page of GET /v1/dataplanes (it pages by id).
async function loadAll() {
  let after, all = [], active = 0;
  for (let i = 0; i < 50; i++) {
    const data = await get('/v1/dataplanes' + query({limit: 500, after}));
    active = data.active_version;
    all = all.concat(data.dataplanes);
    if (!data.next_after) break;
    after = data.next_after;
  }
  return {active, dataplanes: all};
}

function Labels({labels}) {
  const e = Object.entries(labels || {});
  if (!e.length) return html`<span class="muted">–</span>`;
  return html`<span class="labels">${e.map(([k, v]) => html`<span class="label">${k}=${v}</span>`)}</span>`;
}

function Endpoints({endpoints}) {
  if (!endpoints) return html`<span class="muted" title="its heartbeats carry no endpoint health">–</span>`;
  const e = Object.entries(endpoints);
  if (!e.length) return html`<span class="muted">–</span>`;
  return html`<span class="health">${e.map(([svc, h]) => {
    const cls = h.panic ? 'panic' : h.up < h.total ? 'degraded' : 'up';
    return html`<span class=${'ep ep-' + cls} title=${h.panic ? 'no endpoint up: panic mode' : `${h.up} of ${h.total} endpoints up`}>${svc} ${h.up}/${h.total}</span>`;
  })}</span>`;
}

export function FleetPage() {
  const [data, error] = useLoad(loadAll, [], 10000);
  const dps = data ? data.dataplanes : [];
  const counts = {};
  for (const d of dps) counts[d.state] = (counts[d.state] || 0) + 1;
  return html`<section data-page="fleet">
    <div class="page-head">
      <h1>Fleet</h1>
      ${data ? html`<p class="summary">Active version <a href=${'#/versions/' + data.active}>v${data.active}</a> · ${dps.length} dataplane${dps.length === 1 ? '' : 's'}
        ${Object.entries(counts).map(([s, n]) => html` · <span class=${'count count-' + s}>${n} ${s}</span>`)}</p>` : null}
    </div>
    <${ErrorBox} error=${error} />
    ${data && !dps.length ? html`<p class="muted">No dataplane has asked this control plane for its config yet.</p>` : null}
    ${dps.length
      ? html`<div class="table-box"><table class="fleet-table">
          <thead><tr><th>Dataplane</th><th>Labels</th><th>Applied</th><th>State</th><th>Last seen</th><th>Endpoints</th></tr></thead>
          <tbody>${dps.map(d => html`<tr class=${'dp state-' + d.state + (BAD.has(d.state) ? ' bad' : '')} data-dataplane=${d.id} data-state=${d.state}>
            <td class="dp-id" data-label="Dataplane"><b>${d.id}</b></td>
            <td data-label="Labels"><${Labels} labels=${d.labels} /></td>
            <td data-label="Applied">${d.applied_version ? html`<a href=${'#/versions/' + d.applied_version}>v${d.applied_version}</a>` : html`<span class="muted">none</span>`}</td>
            <td class="dp-state" data-label="State">
              <${Badge} kind=${'state-' + d.state} title=${STATE_HELP[d.state] || ''}>${d.state}<//>
              ${d.rejected_version ? html`<div class="dp-error">rejected <a href=${'#/versions/' + d.rejected_version}>v${d.rejected_version}</a>: ${d.error || '(no error given)'}</div>` : null}
              ${d.state === 'drifted' ? html`<div class="dp-error">serves hash ${(d.reported_hash || '').slice(0, 12)}…, expected ${(d.expected_hash || '').slice(0, 12)}…</div>` : null}
            </td>
            <td data-label="Last seen" title=${fmtTime(d.last_seen)}>${ago(d.last_seen)}</td>
            <td data-label="Endpoints"><${Endpoints} endpoints=${d.endpoints} /></td>
          </tr>`)}</tbody>
        </table></div>`
      : null}
  </section>`;
}
