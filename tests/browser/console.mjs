// The web console in a real browser (headless Chromium through playwright-core), one phase per
// run; tests/integration/test_console.py starts the control plane, the dataplanes and the mock
// upstream, sets up what each phase needs through the API, and checks through the API what the
// console did.
//
//   node console.mjs '<json: {phase, base, admin, viewer, out, chromium, node_modules, relays}>'
//
// Prints one JSON line of findings; exits 1 with the reason on the first check that fails. Any
// console error, uncaught exception or Content-Security-Policy violation in a page fails the run.
import {createRequire} from 'node:module';
import {mkdirSync} from 'node:fs';
import path from 'node:path';

const cfg = JSON.parse(process.argv[2]);
const require = createRequire(path.join(cfg.node_modules, 'noop.js'));
const {chromium} = require('playwright-core');

const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
const WIDE = {width: 1280, height: 800};
const PHONE = {width: 390, height: 844};
const found = {timings: {}};
let step = 'start';
const t0 = Date.now();
let stepStart = t0;
// marks the start of a step (for messages) and records how long the previous one took
function begin(name) {
  found.timings[step] = (Date.now() - stepStart) / 1000;
  step = name;
  stepStart = Date.now();
}

function check(cond, what) {
  if (!cond) throw new Error(`${step}: ${what}`);
}

// A page that records console errors, uncaught exceptions and CSP violations. `allowed` lists
// console error texts expected in this scenario (the browser logs a 401 answer as an error).
async function openPage(browser, viewport, allowed = []) {
  const context = await browser.newContext({viewport, deviceScaleFactor: 1});
  const page = await context.newPage();
  page.problems = [];
  page.on('console', m => {
    if (m.type() === 'error' && !allowed.some(a => m.text().includes(a))) page.problems.push('console error: ' + m.text());
  });
  page.on('pageerror', e => page.problems.push('uncaught: ' + e.message));
  // runs through the DevTools protocol, which the page's CSP does not govern
  await page.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', e => window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
  });
  return page;
}

async function finish(page) {
  const csp = await page.evaluate(() => window.__csp || []);
  check(csp.length === 0, 'Content-Security-Policy violations: ' + csp.join('; '));
  check(page.problems.length === 0, page.problems.join('; '));
  await page.context().close();
}

async function signIn(page, token) {
  const resp = await page.goto(cfg.base + '/ui/');
  const h = resp.headers();
  check(resp.status() === 200, `GET /ui/ answered ${resp.status()}`);
  check(h['content-security-policy'] === CSP, `CSP header is ${h['content-security-policy']}`);
  check(h['x-content-type-options'] === 'nosniff', 'no X-Content-Type-Options: nosniff');
  await page.fill('input[name=token]', token);
  await page.click('button[type=submit]');
}

// No horizontal page scroll (tables may scroll inside their own box).
async function fits(page, what) {
  const [sw, cw] = await page.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]);
  check(sw <= cw, `${what}: the page scrolls sideways (${sw} px wide in a ${cw} px window)`);
}

async function shoot(page, name) {
  mkdirSync(cfg.out, {recursive: true});
  await page.screenshot({path: path.join(cfg.out, name + '.png'), fullPage: false});
}

// Follows a link within the console (a hash change, as a click does) and waits for what shows the
// page is there: each page's section names itself (data-page; a version also its number).
async function goto(page, hash, ready) {
  await page.evaluate(h => { location.hash = h; }, hash);
  await page.waitForSelector(ready, {timeout: 10000});
}

function pageOf(hash) {
  const m = /^#\/versions\/(\d+)/.exec(hash);
  return m ? `section[data-page="version"][data-n="${m[1]}"]` : `section[data-page="${hash.slice(2)}"]`;
}

async function phaseSignin(browser) {
  begin('wrong token');
  let page = await openPage(browser, WIDE, ['status of 401']);
  await signIn(page, 'not-a-token-of-this-control-plane');
  await page.waitForSelector('.error', {timeout: 10000});
  const msg = await page.textContent('.error');
  check(/does not know this token/.test(msg), `the message is "${msg}"`);
  check(await page.evaluate(() => sessionStorage.getItem('pathway.token')) === null, 'a wrong token was kept');
  await shoot(page, 'signin-wrong-token');
  found.wrong_token_message = msg.trim();
  await finish(page);

  begin('viewer');
  page = await openPage(browser, WIDE);
  await signIn(page, cfg.viewer);
  await page.waitForSelector('.versions li.version', {timeout: 10000});
  check((await page.textContent('.who')).includes('viewer'), 'the header does not say viewer');
  for (const hash of ['#/versions', '#/versions/3', '#/versions/2', '#/rollouts', '#/fleet']) {
    await goto(page, hash, pageOf(hash) + (hash.startsWith('#/versions/') ? ' .yaml' : ' h1'));
    await page.waitForTimeout(200);
    const writes = await page.$$eval('button.write', b => b.map(x => x.textContent));
    check(writes.length === 0, `${hash} shows write buttons to a viewer: ${writes}`);
    const rb = await page.$$('text=Roll back to this version');
    check(rb.length === 0, `${hash} offers a rollback to a viewer`);
  }
  found.viewer_write_buttons = 0;
  await finish(page);

  begin('admin: versions');
  page = await openPage(browser, WIDE);
  await signIn(page, cfg.admin);
  await page.waitForSelector('.versions li.version', {timeout: 10000});
  const versions = await page.$$eval('.versions li.version', l => l.map(x => Number(x.dataset.version)));
  check(JSON.stringify(versions) === '[3,2,1]', `the timeline shows ${JSON.stringify(versions)}, not [3,2,1]`);
  found.versions = versions;

  begin('admin: diff');
  await page.click('.versions li[data-version="3"] a.vnum');
  await page.waitForSelector('.diff .change', {timeout: 10000});
  const changes = await page.$$eval('.diff .change code', l => l.map(x => x.textContent));
  check(changes.length === 1 && changes[0] === 'services.eth.pool.max_idle_per_host: 25 \u2192 5',
    `v3's diff against its parent is ${JSON.stringify(changes)}`);
  found.diff = changes;
  found.yaml_v3 = await page.textContent(pageOf('#/versions/3') + ' .yaml');
  check((await page.$$('button.write')).length === 2, 'an admin gets no Roll back and Tag buttons');
  // any other version: against v1 the idle pool was not set at all
  await page.fill('input[name=from]', '1');
  await page.click('text=Compare');
  await page.waitForSelector('text=From v1 to v3', {timeout: 10000});
  found.diff_v1 = await page.$$eval('.diff .change code', l => l.map(x => x.textContent));
  await shoot(page, 'version-wide');

  begin('admin: rollback');
  await goto(page, '#/versions/2', pageOf('#/versions/2') + ' .yaml');
  await page.click('text=Roll back to this version');
  await page.waitForSelector('.dialog .change', {timeout: 10000});
  const plan = await page.$$eval('.dialog .change code', l => l.map(x => x.textContent));
  check(plan.length === 1 && plan[0] === 'services.eth.pool.max_idle_per_host: 5 \u2192 25', `the rollback dialog announces ${JSON.stringify(plan)}`);
  found.rollback_plan = plan;
  await page.fill('.dialog input[name=message]', 'console: back to 25 idle');
  await shoot(page, 'rollback-dialog');
  await page.click('.dialog button[type=submit]');
  await page.waitForFunction(() => location.hash === '#/versions/4', null, {timeout: 10000});
  await page.waitForSelector(pageOf('#/versions/4') + ' .yaml', {timeout: 10000});
  found.after_rollback = await page.evaluate(() => location.hash);

  begin('admin: tag');
  await page.click('button.write:has-text("Tag")');
  await page.fill('.dialog input[name=tag]', 'stable');
  await page.waitForSelector('.dialog .change', {timeout: 10000});
  const tagPlan = await page.textContent('.dialog .change code');
  check(tagPlan === 'tags.stable: added v4', `the tag dialog announces "${tagPlan}"`);
  await page.fill('.dialog input[name=message]', 'known good');
  await page.click('.dialog button[type=submit]');
  await page.waitForSelector('.notice', {timeout: 10000});
  found.tag_notice = await page.textContent('.notice');
  await finish(page);
}

// JSON-RPC requests through the dataplanes (bounded: `n` in all, `par` at a time).
async function load(n, par) {
  let sent = 0, ok = 0;
  const one = async () => {
    while (sent < n) {
      const port = cfg.relays[sent++ % cfg.relays.length];
      try {
        const r = await fetch(`http://127.0.0.1:${port}/v1/eth`, {method: 'POST', headers: {'Content-Type': 'application/json'},
          body: JSON.stringify({jsonrpc: '2.0', id: sent, method: 'eth_blockNumber', params: []})});
        await r.arrayBuffer();
        if (r.ok) ok++;
      } catch {
        // counted as not ok
      }
    }
  };
  await Promise.all(Array.from({length: par}, one));
  return ok;
}

async function servedRequests(page) {
  const el = await page.$('.service[data-service="eth"]');
  return el ? Number(await el.getAttribute('data-requests')) : 0;
}

async function phaseFleet(browser) {
  begin('fleet');
  let page = await openPage(browser, WIDE);
  await signIn(page, cfg.admin);
  await page.waitForSelector('.versions li.version', {timeout: 10000});
  await goto(page, '#/fleet', pageOf('#/fleet') + ' tr.dp');
  const rows = await page.$$eval('tr.dp', l => l.map(r => ({id: r.dataset.dataplane, state: r.dataset.state, bad: r.classList.contains('bad'),
    error: (r.querySelector('.dp-error') || {}).textContent || '', bg: getComputedStyle(r).backgroundColor})));
  const rejected = rows.filter(r => r.state === 'rejected');
  check(rejected.length >= 1, `no dataplane is shown rejected: ${JSON.stringify(rows)}`);
  for (const r of rejected) {
    check(r.bad, `${r.id} is rejected but not flagged`);
    check(r.error.includes('rejected v5') && r.error.includes('ca_file'), `${r.id}'s error reads "${r.error}"`);
    check(r.bg !== 'rgba(0, 0, 0, 0)', `${r.id}'s row does not stand out (background ${r.bg})`);
  }
  for (const r of rows.filter(r => r.state !== 'rejected')) check(!r.bad, `${r.id} (${r.state}) is flagged`);
  found.fleet = rows.map(({id, state, bad}) => ({id, state, bad}));
  await goto(page, '#/versions', pageOf('#/versions') + ' li.version');
  const v5 = await page.textContent('.versions li[data-version="5"] .vfleet');
  const v4 = await page.textContent('.versions li[data-version="4"] .vfleet');
  check(v5.includes('\u2717 2') && v4.includes('\u2713 2'), `the timeline's fleet counts: v5 "${v5}", v4 "${v4}"`);
  check((await page.textContent('.versions li[data-version="4"] .vtags')).includes('stable'), 'v4 does not show its tag');
  await goto(page, '#/fleet', pageOf('#/fleet') + ' tr.dp');
  await fits(page, 'fleet at 1280 px');
  await shoot(page, 'fleet-wide');

  begin('traffic');
  await goto(page, '#/traffic', pageOf('#/traffic') + ' h1');
  await page.waitForTimeout(500);
  const before = await servedRequests(page);
  const ok = await load(cfg.requests, 4);
  check(ok === cfg.requests, `only ${ok} of ${cfg.requests} relayed requests succeeded`);
  const deadline = Date.now() + 30000;
  let after = before;
  while (Date.now() < deadline) {
    // the page refreshes itself every 10 s; reloading only makes the wait shorter
    await page.reload();
    await page.waitForSelector(pageOf('#/traffic') + ' h1', {timeout: 10000});
    await page.waitForTimeout(1500);
    after = await servedRequests(page);
    if (after >= before + cfg.requests) break;
  }
  check(after >= before + cfg.requests, `the eth chart shows ${after} requests after ${cfg.requests} more (before: ${before})`);
  const canvases = await page.$$eval('.service[data-service="eth"] canvas', l => l.length);
  check(canvases === 3, `the eth service has ${canvases} charts, not 3`);
  found.traffic = {before, after, max_rps: Number(await page.getAttribute('.service[data-service="eth"]', 'data-max-rps'))};
  await shoot(page, 'traffic-wide');
  await finish(page);

  begin('fleet (390 px)');
  page = await openPage(browser, PHONE);
  await signIn(page, cfg.admin);
  await page.waitForSelector('.versions li.version', {timeout: 10000});
  await goto(page, '#/fleet', pageOf('#/fleet') + ' tr.dp');
  await fits(page, 'fleet at 390 px');
  await shoot(page, 'fleet-phone');
  await finish(page);
}

async function phaseRollout(browser) {
  begin('rollout: viewer');
  let page = await openPage(browser, WIDE);
  await signIn(page, cfg.viewer);
  await page.waitForSelector('.versions li.version', {timeout: 10000});
  await goto(page, '#/rollouts', pageOf('#/rollouts') + ' .rollout.live');
  check((await page.$$('button.write')).length === 0, 'a viewer gets rollout buttons');
  await finish(page);

  begin('rollout: pause');
  page = await openPage(browser, WIDE);
  await signIn(page, cfg.admin);
  await page.waitForSelector('.versions li.version', {timeout: 10000});
  await goto(page, '#/rollouts', pageOf('#/rollouts') + ' .rollout.live[data-state="progressing"]');
  const buttons = await page.$$eval('button.write', l => l.map(b => b.textContent));
  check(JSON.stringify(buttons) === '["Pause","Promote","Abort"]', `a progressing rollout offers ${JSON.stringify(buttons)}`);
  await page.waitForSelector('tr.verdict', {timeout: 10000});
  await shoot(page, 'rollouts-wide');
  await page.click('button.write:has-text("Pause")');
  await page.click('.dialog button[type=submit]');
  await page.waitForSelector('.rollout.live[data-state="paused"]', {timeout: 10000});
  found.rollout_buttons_paused = await page.$$eval('button.write', l => l.map(b => b.textContent));
  check(JSON.stringify(found.rollout_buttons_paused) === '["Resume","Promote","Abort"]', `a paused rollout offers ${JSON.stringify(found.rollout_buttons_paused)}`);

  begin('filters');
  await goto(page, '#/versions', pageOf('#/versions') + ' li.version');
  await page.selectOption('select[name=kind]', 'rollback');
  await page.waitForFunction(() => [...document.querySelectorAll('.versions li.version')].map(x => x.dataset.version).join() === '4', null,
    {timeout: 10000}).catch(() => check(false, 'kind=rollback does not list v4 alone'));
  await goto(page, '#/events', pageOf('#/events') + ' tr.event');
  await page.selectOption('select[name=action]', 'nack');
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('tr.event')];
    return rows.length === 2 && rows.every(r => r.classList.contains('action-nack'));
  }, null, {timeout: 10000}).catch(() => check(false, 'action=nack does not list the two NACKs alone'));
  await finish(page);

  for (const [vp, tag] of [[WIDE, 'wide'], [PHONE, 'phone']]) {
    page = await openPage(browser, vp);
    await signIn(page, cfg.admin);
    await page.waitForSelector('.versions li.version', {timeout: 10000});
    const pages = [['versions', '#/versions', '.versions li.version'], ['version', '#/versions/3', '.diff'],
      ['traffic', '#/traffic', '.service canvas'], ['rollouts', '#/rollouts', 'tr.verdict'], ['events', '#/events', 'tr.event']];
    for (const [name, hash, ready] of pages) {
      begin(`screenshots: ${name} (${tag})`);
      await goto(page, hash, pageOf(hash) + ' ' + ready);
      await page.waitForTimeout(300);
      await fits(page, `${name} at ${vp.width} px`);
      if (!(name === 'traffic' && tag === 'wide') && !(name === 'rollouts' && tag === 'wide')) await shoot(page, `${name}-${tag}`);
    }
    await finish(page);
  }
}

const browser = await chromium.launch({executablePath: cfg.chromium, headless: true, args: ['--no-sandbox', '--disable-gpu']});
try {
  if (cfg.phase === 'signin') await phaseSignin(browser);
  else if (cfg.phase === 'fleet') await phaseFleet(browser);
  else if (cfg.phase === 'rollout') await phaseRollout(browser);
  else throw new Error('unknown phase ' + cfg.phase);
  begin('end');
  console.log(JSON.stringify(found));
} catch (e) {
  console.error(e.message);
  process.exitCode = 1;
} finally {
  await browser.close();
}
