// The pbxbridge console: the admin API in a page (docs/console.md). Everything the PBX or the
// CRM sent is shown as text (textContent), never as HTML.
'use strict';

const $ = (id) => document.getElementById(id);

// el makes an element; strings among children become text nodes.
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k === 'onclick') e.addEventListener('click', v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c);
  return e;
}

async function api(method, path) {
  const r = await fetch('-/api/pbx/' + path, { method, credentials: 'same-origin' });
  const body = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error((body && body.error) || r.status + ' ' + r.statusText);
  return body;
}

function say(text, bad) {
  const m = $('message');
  m.textContent = text;
  m.className = bad ? 'bad' : '';
}

const fmtTime = (s) => new Date(s).toISOString().replace('T', ' ').slice(0, 19) + 'Z';

function fmtAge(seconds) {
  if (!seconds) return '-';
  if (seconds < 60) return Math.round(seconds) + 's';
  if (seconds < 3600) return Math.round(seconds / 60) + 'm';
  return (seconds / 3600).toFixed(1) + 'h';
}

function fmtBytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n) + ' ' + units[i];
}

// --- targets, live -----------------------------------------------------------------------

// snapshots of the last minute, for the delivered and failed rates.
const snapshots = [];
let deadLetterCounts = '';

function rates(name) {
  const first = snapshots[0], last = snapshots[snapshots.length - 1];
  const a = first.st.targets.find((t) => t.name === name);
  const b = last.st.targets.find((t) => t.name === name);
  const minutes = (last.at - first.at) / 60000;
  if (!a || !b || minutes <= 0) return ['-', '-'];
  return [((b.delivered - a.delivered) / minutes).toFixed(1), ((b.failed - a.failed) / minutes).toFixed(1)];
}

function showStatus(st) {
  const now = Date.now();
  snapshots.push({ at: now, st });
  while (snapshots.length > 1 && now - snapshots[0].at > 60000) snapshots.shift();

  const q = $('queue');
  q.textContent = st.ready ? 'queue ready' : 'queue not ready' + (st.store_error ? ': ' + st.store_error : '');
  q.className = 'pill ' + (st.ready ? 'ok' : 'bad');
  $('store').textContent = 'store ' + fmtBytes(st.store_bytes) + ' of ' + fmtBytes(st.max_store);

  const rows = st.targets.slice().sort((a, b) => a.name.localeCompare(b.name)).map((t) => {
    const [delivered, failed] = rates(t.name);
    const action = t.paused
      ? el('button', { id: 'resume-' + t.name, onclick: () => pause(t.name, 'resume') }, 'Resume')
      : el('button', { id: 'pause-' + t.name, onclick: () => pause(t.name, 'pause') }, 'Pause');
    return el('tr', { id: 'target-' + t.name },
      el('td', {}, t.name),
      el('td', { class: 'num' }, String(t.depth)),
      el('td', { class: 'num' }, fmtAge(t.oldest_age_seconds)),
      el('td', { class: 'num' }, String(t.in_flight)),
      el('td', { class: 'num' }, String(t.held)),
      el('td', {}, el('span', { class: 'pill ' + (t.circuit_open ? 'bad' : 'ok') }, t.circuit_open ? 'OPEN' : 'closed'),
        t.circuit_reason ? el('span', { class: 'muted' }, ' ' + t.circuit_reason) : ''),
      el('td', { class: 'paused' }, t.paused ? el('span', { class: 'pill warn' }, 'PAUSED') : 'no'),
      el('td', { class: 'num' }, String(t.dead_letters)),
      el('td', { class: 'num' }, delivered),
      el('td', { class: 'num' }, failed),
      el('td', {}, action));
  });
  $('targets').tBodies[0].replaceChildren(...rows);

  const sel = $('f-target');
  for (const t of st.targets) {
    if (![...sel.options].some((o) => o.value === t.name)) sel.append(el('option', { value: t.name }, t.name));
  }
  const counts = st.targets.map((t) => t.name + ':' + t.dead_letters).join(',');
  if (counts !== deadLetterCounts) {
    deadLetterCounts = counts;
    loadDeadLetters();
  }
}

async function pause(name, what) {
  try {
    await api('POST', 'targets/' + encodeURIComponent(name) + '/' + what);
    say((what === 'pause' ? 'paused ' : 'resumed ') + name);
  } catch (e) {
    say(what + ' ' + name + ': ' + e.message, true);
  }
}

function live() {
  const es = new EventSource('-/live');
  const l = $('live');
  es.addEventListener('status', (e) => {
    const st = JSON.parse(e.data);
    if (st.error) {
      l.textContent = st.error;
      l.className = 'pill bad';
      return;
    }
    l.textContent = 'live';
    l.className = 'pill ok';
    showStatus(st);
  });
  es.onerror = () => {
    l.textContent = es.readyState === EventSource.CLOSED ? 'disconnected: reload the page' : 'reconnecting…';
    l.className = 'pill bad';
  };
}

// --- dead letters ------------------------------------------------------------------------

let deadLetters = [];

async function loadDeadLetters() {
  try {
    deadLetters = await api('GET', 'dead-letters');
  } catch (e) {
    say('dead letters: ' + e.message, true);
    return;
  }
  const types = $('f-type');
  for (const t of new Set(deadLetters.map((d) => d.type))) {
    if (![...types.options].some((o) => o.value === t)) types.append(el('option', { value: t }, t));
  }
  renderDeadLetters();
}

function filtered() {
  const target = $('f-target').value, type = $('f-type').value, call = $('f-call').value.trim();
  const since = $('f-since').value ? new Date($('f-since').value) : null;
  const until = $('f-until').value ? new Date($('f-until').value) : null;
  return deadLetters.filter((d) =>
    (!target || d.target === target) && (!type || d.type === type) && (!call || d.call_id.includes(call)) &&
    (!since || new Date(d.dead_at) >= since) && (!until || new Date(d.dead_at) <= until));
}

function renderDeadLetters() {
  const shown = filtered();
  $('dl-count').textContent = shown.length + ' of ' + deadLetters.length;
  $('replay-all').disabled = !$('f-target').value;
  $('select-all').checked = false;
  const rows = shown.map((d) => {
    const [target, id] = splitID(d.id);
    return el('tr', { 'data-id': d.id },
      el('td', {}, el('input', { type: 'checkbox', class: 'pick', 'aria-label': 'select ' + d.id })),
      el('td', { class: 'time' }, fmtTime(d.dead_at)),
      el('td', {}, d.target),
      el('td', {}, d.type),
      el('td', {}, d.call_id),
      el('td', { class: 'num' }, String(d.attempts)),
      el('td', { class: 'err' }, d.last_error),
      el('td', {},
        el('button', { class: 'show', onclick: () => show(target, id) }, 'Show'), ' ',
        el('button', { class: 'replay', onclick: () => replay([d.id]) }, 'Replay'), ' ',
        el('button', { class: 'delete', onclick: () => remove([d.id]) }, 'Delete')));
  });
  $('dead-letters').tBodies[0].replaceChildren(...rows);
}

const splitID = (id) => [id.slice(0, id.indexOf('/')), id.slice(id.indexOf('/') + 1)];
const dlPath = (id) => 'dead-letters/' + splitID(id).map(encodeURIComponent).join('/');

function selected() {
  return [...document.querySelectorAll('#dead-letters input.pick:checked')].map((c) => c.closest('tr').dataset.id);
}

async function each(ids, verb, op) {
  let done = 0;
  for (const id of ids) {
    try {
      await op(id);
      done++;
    } catch (e) {
      say(verb + ' ' + id + ': ' + e.message + ' (' + done + ' of ' + ids.length + ' done)', true);
      loadDeadLetters();
      return;
    }
  }
  say(verb + ' ' + done + ' dead letter' + (done === 1 ? '' : 's'));
  loadDeadLetters();
}

const replay = (ids) => each(ids, 'replayed', (id) => api('POST', dlPath(id) + '/replay'));

function remove(ids) {
  if (ids.length && confirm('Delete ' + ids.length + ' dead letter(s)? The events are gone for good.')) {
    each(ids, 'deleted', (id) => api('DELETE', dlPath(id)));
  }
}

async function replayAll() {
  const target = $('f-target').value;
  if (!target || !confirm('Replay every dead letter of ' + target + '?')) return;
  try {
    const r = await api('POST', 'dead-letters/replay?target=' + encodeURIComponent(target));
    say('replayed ' + r.replayed + ' dead letters of ' + target);
  } catch (e) {
    say('replay all of ' + target + ': ' + e.message, true);
  }
  loadDeadLetters();
}

async function show(target, id) {
  try {
    const dl = await api('GET', 'dead-letters/' + encodeURIComponent(target) + '/' + encodeURIComponent(id));
    $('event-id').textContent = dl.id;
    $('event-json').textContent = JSON.stringify(dl, null, 2);
    $('event-panel').hidden = false;
  } catch (e) {
    say('show ' + target + '/' + id + ': ' + e.message, true);
  }
}

// --- find a call -------------------------------------------------------------------------

async function findCall(ev) {
  ev.preventDefault();
  const by = $('find-by').value, q = $('find-q').value.trim();
  let calls;
  try {
    calls = await api('GET', 'calls?' + by + '=' + encodeURIComponent(q));
  } catch (e) {
    say('find a call: ' + e.message, true);
    return;
  }
  const out = calls.map((c) => el('div', { class: 'call', 'data-call': c.call_id },
    el('h3', {}, 'call ' + c.call_id, el('span', { class: 'muted' }, '  ' + (c.from || '?') + ' → ' + (c.to || '?'))),
    el('table', {},
      el('thead', {}, el('tr', {}, ...['event', 'type', 'target', 'attempt', 'at', 'result', 'status', 'took', 'error'].map((h) => el('th', {}, h)))),
      el('tbody', {}, ...c.events.flatMap((e) => e.attempts.map((a, i) => el('tr', { class: 'attempt', 'data-event': e.id },
        el('td', {}, i ? '' : e.id),
        el('td', {}, i ? '' : e.type),
        el('td', {}, a.target),
        el('td', { class: 'num' }, String(a.attempt)),
        el('td', { class: 'time' }, fmtTime(a.at)),
        el('td', {}, el('span', { class: 'pill ' + (a.result === 'success' ? 'ok' : a.result === 'retry' ? 'warn' : 'bad') }, a.result)),
        el('td', { class: 'num' }, a.status ? String(a.status) : '-'),
        el('td', { class: 'num' }, Math.round(a.duration_seconds * 1000) + ' ms'),
        el('td', { class: 'err' }, a.error || ''))))))));
  $('calls').replaceChildren(...(out.length ? out : [el('p', { class: 'muted' }, 'no deliveries of such a call in the history')]));
}

// --- wiring ------------------------------------------------------------------------------

document.addEventListener('DOMContentLoaded', () => {
  for (const id of ['f-target', 'f-type', 'f-call', 'f-since', 'f-until']) $(id).addEventListener('input', renderDeadLetters);
  $('dl-refresh').addEventListener('click', loadDeadLetters);
  $('replay-selected').addEventListener('click', () => replay(selected()));
  $('delete-selected').addEventListener('click', () => remove(selected()));
  $('replay-all').addEventListener('click', replayAll);
  $('select-all').addEventListener('change', (e) => {
    for (const c of document.querySelectorAll('#dead-letters input.pick')) c.checked = e.target.checked;
  });
  $('event-close').addEventListener('click', () => { $('event-panel').hidden = true; });
  $('find').addEventListener('submit', findCall);
  live();
});
