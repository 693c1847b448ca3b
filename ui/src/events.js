// Events: the audit log, newest first, filtered by actor and action, paged.
import {html, useState} from './preact-htm.js';
import {ErrorBox, fmtTime, usePaged} from './ui.js';

const ACTIONS = ['apply', 'patch', 'rollback', 'tag', 'tag_delete', 'ack', 'nack', 'forget', 'rollout_start', 'rollout_step',
  'rollout_pause', 'rollout_resume', 'rollout_promote', 'rollout_abort', 'rollout_rollback', 'rollout_gate_fail'];
const PAGE = 50;

export function EventsPage() {
  const [filters, setFilters] = useState({actor: '', action: ''});
  const [actor, setActor] = useState('');
  const {items: events, next, error, loading, more} = usePaged('/v1/events', 'events', PAGE, filters);
  return html`<section data-page="events">
    <div class="page-head">
      <h1>Events</h1>
      <form class="filters" onSubmit=${e => { e.preventDefault(); setFilters({...filters, actor: actor.trim()}); }}>
        <label>Actor <input name="actor" value=${actor} onInput=${e => setActor(e.target.value)} onChange=${e => setFilters({...filters, actor: e.target.value.trim()})} placeholder="any" size="10" /></label>
        <label>Action <select name="action" value=${filters.action} onChange=${e => setFilters({...filters, action: e.target.value})}>
          <option value="">any</option>${ACTIONS.map(a => html`<option value=${a}>${a}</option>`)}
        </select></label>
      </form>
    </div>
    <${ErrorBox} error=${error} />
    ${!loading && !error && !events.length ? html`<p class="muted">No event${filters.actor || filters.action ? ' matches these filters' : ''}.</p>` : null}
    ${events.length
      ? html`<div class="table-box"><table class="events">
          <thead><tr><th>#</th><th>Time</th><th>Actor</th><th>Action</th><th>Version</th><th>Message</th></tr></thead>
          <tbody>${events.map(e => html`<tr class=${'event action-' + e.action}><td>${e.id}</td><td class="nowrap">${fmtTime(e.time)}</td><td class="nowrap">${e.actor}</td>
            <td><span class=${'action action-' + e.action}>${e.action}</span></td>
            <td>${e.version ? html`<a href=${'#/versions/' + e.version}>v${e.version}</a>` : ''}</td><td class="msg">${e.message}</td></tr>`)}</tbody>
        </table></div>`
      : null}
    <div class="pager">${next ? html`<button type="button" onClick=${more} disabled=${loading}>Older events</button>` : null}</div>
  </section>`;
}
