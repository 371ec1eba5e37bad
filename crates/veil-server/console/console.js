// Veil console. Everything the server sends is inserted as text (textContent), never as
// markup: names, SQL and log details come from callers the operator does not control. The
// tokens live in this page's memory only.
'use strict';

const enc = new TextEncoder();
const GENESIS = '0'.repeat(64);

const $ = (id) => document.getElementById(id);

/** A number as the console shows it: four decimals; "—" when there is none. */
function fmt(x) {
  return typeof x === 'number' && Number.isFinite(x) ? x.toFixed(4) : '—';
}

function cell(text, cls) {
  const td = document.createElement('td');
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function row(tbody, cells) {
  const tr = document.createElement('tr');
  tr.append(...cells);
  tbody.append(tr);
  return tr;
}

function clear(tbody) {
  tbody.replaceChildren();
}

/** Calls the API; throws an Error carrying the server's kind and reason. */
async function api(path, token, body) {
  const init = { headers: { Authorization: 'Bearer ' + token }, cache: 'no-store' };
  if (body !== undefined) {
    init.method = 'POST';
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  let value = null;
  try {
    value = await response.json();
  } catch (_) {
    value = null;
  }
  if (!response.ok) {
    const why = value && typeof value.error === 'string' ? value.error : response.statusText;
    const kind = value && typeof value.kind === 'string' ? value.kind : String(response.status);
    throw new Error(kind + ': ' + why);
  }
  return value;
}

// ---- audit log verification (WebCrypto) ----

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, '0')).join('');
}

function unhex(text) {
  if (typeof text !== 'string' || text.length % 2 !== 0 || /[^0-9a-f]/.test(text)) {
    throw new Error('not hex');
  }
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function u64le(n) {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n), true);
  return b;
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

async function sha256hex(text) {
  return hex(await crypto.subtle.digest('SHA-256', enc.encode(text)));
}

/**
 * Verifies an audit view ({head, text}) as `veil attest verify-log` does: the head's
 * signature, then line by line the sequence, the hash chain and each entry's signature, and
 * that the line the head counts up to hashes to the head's last hash.
 * Returns {ok, reason, vouched, entries, key}.
 */
async function verifyLog(view) {
  const head = view.head;
  const fail = (reason, entries) => ({ ok: false, reason, entries: entries || [], key: head.public_key });
  let key;
  try {
    key = await crypto.subtle.importKey('raw', unhex(head.public_key), { name: 'Ed25519' }, false, ['verify']);
  } catch (e) {
    return fail('the writer\'s key is not an Ed25519 key (' + e.message + ')');
  }
  const message = concat(enc.encode('veil-audit-head v1\0'), u64le(head.entries), u64le(head.time), enc.encode(head.last_hash));
  let headOk = false;
  try {
    headOk = await crypto.subtle.verify({ name: 'Ed25519' }, key, unhex(head.signature), message);
  } catch (_) {
    headOk = false;
  }
  if (!headOk) return fail('the head\'s signature does not verify');
  const lines = view.text.split('\n');
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  if (lines.length < head.entries) {
    return fail('the log has ' + lines.length + ' entries; the signed head vouches for ' + head.entries + ' (cut short)');
  }
  if (head.entries === 0 && head.last_hash !== GENESIS) return fail('the empty log\'s head names a last entry');
  let prev = GENESIS;
  const entries = [];
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const at = 'line ' + (i + 1) + ': ';
    let entry;
    try {
      entry = JSON.parse(line);
    } catch (_) {
      return fail(at + 'not an audit entry', entries);
    }
    if (entry === null || typeof entry !== 'object') return fail(at + 'not an audit entry', entries);
    if (entry.seq !== i) return fail(at + 'sequence ' + entry.seq + ' where ' + i + ' was expected (entry dropped or reordered)', entries);
    if (entry.prev !== prev) return fail(at + 'chain broken (the previous entry was edited, dropped or reordered)', entries);
    if (typeof entry.sig !== 'string') return fail(at + 'unsigned entry', entries);
    // The signature covers the entry as written without its `sig`, which is the last field.
    const suffix = ',"sig":"' + entry.sig + '"}';
    if (!line.endsWith(suffix)) return fail(at + 'malformed signature field', entries);
    const unsigned = line.slice(0, line.length - suffix.length) + '}';
    let sigOk = false;
    try {
      sigOk = await crypto.subtle.verify({ name: 'Ed25519' }, key, unhex(entry.sig), enc.encode(unsigned));
    } catch (_) {
      sigOk = false;
    }
    if (!sigOk) return fail(at + 'the signature does not verify (entry edited or forged)', entries);
    prev = await sha256hex(line);
    if (i + 1 === head.entries && prev !== head.last_hash) {
      return fail(at + 'differs from the entry the signed head vouches for', entries);
    }
    entries.push(entry);
  }
  return { ok: true, reason: '', vouched: head.entries, entries, key: head.public_key };
}

// ---- the overview ----

const state = { operator: '', audits: new Map() };

function setStatus(text, phase) {
  const s = $('status');
  s.textContent = text;
  s.dataset.state = phase;
}

function renderDatasets(datasets) {
  const body = $('datasets').tBodies[0];
  const charges = $('charges').tBodies[0];
  clear(body);
  clear(charges);
  const select = $('query-dataset');
  const chosen = select.value;
  select.replaceChildren();
  for (const d of datasets) {
    const tr = row(body, [
      cell(d.name),
      cell(fmt(d.total_epsilon), 'num total-epsilon'),
      cell(fmt(d.remaining_epsilon), 'num remaining-epsilon'),
      cell(fmt(d.remaining_delta), 'num remaining-delta'),
    ]);
    tr.dataset.name = d.name;
    for (const c of d.charges) {
      const cr = row(charges, [
        cell(d.name),
        cell(c.analyst),
        cell(String(c.queries), 'num'),
        // A zCDP dataset is charged in ρ (its ε is the conversion of the total).
        cell(d.accounting === 'zcdp' ? 'ρ ' + fmt(c.rho) : fmt(c.epsilon), 'num spent-epsilon'),
        cell(fmt(c.delta), 'num'),
        cell(c.last_query, 'mono'),
      ]);
      cr.dataset.dataset = d.name;
      cr.dataset.analyst = c.analyst;
    }
    const option = document.createElement('option');
    option.value = d.name;
    option.textContent = d.name;
    select.append(option);
  }
  if (chosen) select.value = chosen;
  if (!datasets.length) row(body, [cell('no datasets ([dp] is not mounted or serves none)')]);
}

function renderModels(models, contexts) {
  const body = $('models').tBodies[0];
  clear(body);
  for (const m of models) {
    row(body, [
      cell(m.name),
      cell(m.packing),
      cell(String(m.input_len), 'num'),
      cell(String(m.output_len), 'num'),
      cell(String(m.samples_per_evaluation), 'num'),
      cell(String(m.degree), 'num'),
    ]);
  }
  if (!models.length) row(body, [cell('no models')]);
  $('contexts').textContent = contexts === null ? '' : 'Public contexts held: ' + contexts;
}

function renderRooms(rooms) {
  const body = $('rooms').tBodies[0];
  clear(body);
  for (const r of rooms) {
    const s = r.status;
    const waiting = s.parties.filter((p) => !p.uploaded).map((p) => p.name);
    const tr = row(body, [
      cell(r.name),
      cell(s.room_id.slice(0, 16) + '…', 'mono'),
      cell((s.parties.length - waiting.length) + ' of ' + s.parties.length, 'num'),
      cell(waiting.length ? waiting.join(', ') : 'nobody'),
      cell(s.ran ? 'yes' : 'no'),
      cell(String(s.audit_entries), 'num'),
    ]);
    tr.dataset.name = r.name;
  }
  if (!rooms.length) row(body, [cell('no rooms')]);
}

function showEntries(source) {
  const result = state.audits.get(source);
  const body = $('entries').tBodies[0];
  clear(body);
  $('entries-title').textContent = 'Latest entries of ' + source;
  if (!result) return;
  for (const e of result.entries.slice(-20).reverse()) {
    const when = typeof e.time === 'number' ? new Date(e.time * 1000).toISOString().replace('T', ' ').slice(0, 19) : '';
    row(body, [cell(String(e.seq), 'num'), cell(when), cell(String(e.event)), cell(JSON.stringify(e.details), 'mono')]);
  }
}

async function verifyAudits(sources) {
  const body = $('audit').tBodies[0];
  clear(body);
  state.audits.clear();
  for (const source of sources) {
    const verdict = cell('verifying…', 'verdict');
    const keyCell = cell('', 'mono');
    const button = document.createElement('button');
    button.type = 'button';
    button.textContent = 'Entries';
    button.addEventListener('click', () => showEntries(source));
    const tail = document.createElement('td');
    tail.append(button);
    const tr = row(body, [cell(source), verdict, keyCell, tail]);
    tr.dataset.source = source;
    let result;
    try {
      const view = await api('api/audit/' + source.split('/').map(encodeURIComponent).join('/'), state.operator);
      result = await verifyLog(view);
    } catch (e) {
      result = { ok: false, reason: e.message, entries: [], key: '' };
    }
    state.audits.set(source, result);
    keyCell.textContent = result.key;
    if (result.ok) {
      const extra = result.entries.length - result.vouched;
      verdict.textContent = '✓ verified: ' + result.entries.length + ' entries, chain intact, every entry signed, head signed'
        + (extra > 0 ? ' (' + extra + ' after the head)' : '');
      verdict.className = 'verdict ok';
    } else {
      verdict.textContent = '✗ ' + result.reason;
      verdict.className = 'verdict bad';
    }
    tr.dataset.verified = result.ok ? 'yes' : 'no';
  }
  if (!sources.length) row(body, [cell('no audit logs ([attest], [kbs] or rooms are not mounted)')]);
}

async function loadOverview() {
  if (!state.operator) return;
  setStatus('Loading…', 'loading');
  try {
    const o = await api('api/overview', state.operator);
    renderDatasets(o.datasets);
    renderModels(o.models, o.inference_contexts);
    renderRooms(o.rooms);
    await verifyAudits(o.audit_logs);
    setStatus('Loaded at ' + new Date().toISOString().slice(11, 19) + ' UTC.', 'loaded');
  } catch (e) {
    setStatus(e.message, 'error');
  }
}

// ---- the DP query box ----

function queryBody(dryRun) {
  return {
    dataset: $('query-dataset').value,
    sql: $('query-sql').value,
    epsilon: Number($('query-epsilon').value),
    delta: Number($('query-delta').value || 0),
    dry_run: dryRun,
  };
}

function showWarnings(list) {
  const ul = $('warnings');
  ul.replaceChildren();
  for (const w of list || []) {
    const li = document.createElement('li');
    li.textContent = w;
    ul.append(li);
  }
}

function queryError(e) {
  const p = $('query-error');
  p.textContent = e.message;
  p.hidden = false;
  $('query-section').dataset.state = 'error';
}

async function analystDatasets() {
  const token = $('analyst-token').value.trim();
  if (!token || $('query-dataset').options.length) return;
  try {
    const list = await api('/dp/datasets', token);
    for (const d of list) {
      const option = document.createElement('option');
      option.value = d.name;
      option.textContent = d.name;
      $('query-dataset').append(option);
    }
  } catch (e) {
    queryError(e);
  }
}

async function dryRun() {
  $('query-error').hidden = true;
  $('query-section').dataset.state = 'busy';
  try {
    await analystDatasets();
    const p = await api('/dp/query', $('analyst-token').value.trim(), queryBody(true));
    $('preview-epsilon').textContent = fmt(p.epsilon);
    $('preview-delta').textContent = fmt(p.delta);
    $('preview-remaining').textContent = fmt(p.remaining_epsilon);
    $('preview-affordable').textContent = p.affordable ? 'yes' : 'no';
    $('preview-accuracy').textContent = Object.entries(p.accuracy)
      .map(([column, half]) => column + ' ' + (half === null ? 'depends on the data' : '±' + fmt(half)))
      .join('; ');
    showWarnings(p.warnings);
    $('preview').hidden = false;
    $('query-section').dataset.state = 'previewed';
  } catch (e) {
    queryError(e);
  }
}

async function runQuery() {
  $('query-error').hidden = true;
  $('query-section').dataset.state = 'busy';
  try {
    await analystDatasets();
    const r = await api('/dp/query', $('analyst-token').value.trim(), queryBody(false));
    const table = $('result');
    const headRow = table.tHead.rows[0];
    headRow.replaceChildren();
    for (const c of r.columns) {
      const th = document.createElement('th');
      th.textContent = c;
      headRow.append(th);
    }
    const body = table.tBodies[0];
    clear(body);
    for (const values of r.rows) {
      row(body, values.map((v) => cell(v === null ? '' : String(v), typeof v === 'number' ? 'num' : '')));
    }
    $('answer-epsilon').textContent = fmt(r.epsilon);
    $('answer-remaining').textContent = fmt(r.remaining_epsilon);
    showWarnings(r.warnings);
    $('answer').hidden = false;
    await loadOverview();
    $('query-section').dataset.state = 'answered';
  } catch (e) {
    queryError(e);
  }
}

document.addEventListener('DOMContentLoaded', () => {
  $('operator-form').addEventListener('submit', (event) => {
    event.preventDefault();
    state.operator = $('operator-token').value.trim();
    loadOverview();
  });
  $('dry-run').addEventListener('click', dryRun);
  $('run').addEventListener('click', runQuery);
});
