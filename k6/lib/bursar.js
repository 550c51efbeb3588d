// Shared code of the Bursar k6 scenarios: configuration from __ENV, funded
// accounts for setup(), one helper per endpoint, strict checks, and the
// end-of-test summary (JSON + text; k6's jslib summary is not reachable
// offline, so the text renderer is our own).
//
// A response counts as correct only when it has the exact status the
// operation should return AND the body fields that prove it did the work
// (for a transfer: 201, status "completed", type "transfer", a transaction_id,
// the requested amount). Anything else is an error, counted by its wire code
// (error.code) or, without one, by its HTTP status. "Anything but 500" is
// never a success.
import http from 'k6/http';
import { check, fail, sleep } from 'k6';
import exec from 'k6/execution';
import { Counter, Rate, Trend } from 'k6/metrics';

// ---------------------------------------------------------------- config

export function env(name, def) {
  const v = __ENV[name];
  return v === undefined || v === '' ? def : v;
}

export function envInt(name, def) {
  const v = env(name, '');
  if (v === '') return def;
  const n = parseInt(v, 10);
  if (!(n >= 0) || String(n) !== String(v).trim()) {
    throw new Error(`${name} must be a non-negative integer, got "${v}"`);
  }
  return n;
}

export function envFloat(name, def) {
  const v = env(name, '');
  if (v === '') return def;
  const n = Number(v);
  if (!isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number, got "${v}"`);
  return n;
}

export const BASE_URL = env('BASE_URL', 'http://127.0.0.1:8080').replace(/\/+$/, '');
export const CURRENCY = env('CURRENCY', 'USD');
// Decimal places of CURRENCY (ISO 4217). The scripts do their money
// arithmetic in integer minor units, as the server does.
export const EXP = envInt('CURRENCY_EXPONENT', { JPY: 0, KRW: 0, BHD: 3, KWD: 3, JOD: 3, OMR: 3, TND: 3 }[CURRENCY] ?? 2);
// Where handleSummary writes <scenario>-summary.{json,txt}; the make
// targets and smoke-ci.sh pass an absolute path.
export const OUT_DIR = env('OUT_DIR', 'k6/out').replace(/\/+$/, '');
// Each write waits for its answer; the server answers 202 after its own
// wait timeout (5s by default), so 15s only trips on a hung server.
const TIMEOUT = env('HTTP_TIMEOUT', '15s');

// Percentiles every Trend reports in the summary.
export const TREND_STATS = ['avg', 'min', 'med', 'max', 'p(90)', 'p(95)', 'p(99)', 'p(99.9)', 'count'];

// A run ID keeps reference_id / idempotency keys unique across runs against
// the same database. setup() and every VU have their own JS runtime, so it
// is minted per runtime; the VU number in each key keeps them apart.
const RUN = (Date.now() % 2176782336).toString(36) + Math.floor(Math.random() * 46656).toString(36);
let seq = 0;

// ref returns a fresh reference_id: 1–128 of [A-Za-z0-9._:-].
export function ref(tag) {
  seq++;
  const vu = exec.vu.idInTest || 0; // 0 in setup/teardown
  return `k6-${RUN}-${vu}-${seq}-${tag}`;
}

// uuid4 returns a random (version 4) UUID.
export function uuid4() {
  if (typeof crypto !== 'undefined' && typeof crypto.randomUUID === 'function') {
    return crypto.randomUUID();
  }
  const h = [];
  for (let i = 0; i < 16; i++) h.push(Math.floor(Math.random() * 256));
  h[6] = (h[6] & 0x0f) | 0x40;
  h[8] = (h[8] & 0x3f) | 0x80;
  const x = h.map((b) => (b + 0x100).toString(16).slice(1)).join('');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

// ---------------------------------------------------------------- money

// toMinor parses a decimal string ("12.34", "-0.50", "7") into integer
// minor units without floating point; null if it is not one.
export function toMinor(text, exp = EXP) {
  if (typeof text !== 'string') return null;
  const m = /^(-?)(\d+)(?:\.(\d+))?$/.exec(text);
  if (!m) return null;
  const frac = m[3] || '';
  if (frac.length > exp) return null;
  const v = parseInt(m[2] + frac.padEnd(exp, '0'), 10);
  if (!Number.isSafeInteger(v)) return null;
  return m[1] === '-' && v !== 0 ? -v : v;
}

// fmt renders integer minor units as the server does: exactly exp decimals.
export function fmt(minor, exp = EXP) {
  const neg = minor < 0;
  let s = String(Math.abs(minor));
  if (exp > 0) {
    s = s.padStart(exp + 1, '0');
    s = `${s.slice(0, s.length - exp)}.${s.slice(s.length - exp)}`;
  }
  return neg ? `-${s}` : s;
}

// randomMinor returns a random amount in [lo, hi] minor units.
export function randomMinor(lo, hi) {
  return lo + Math.floor(Math.random() * (hi - lo + 1));
}

// ---------------------------------------------------------------- metrics

// correct_responses: the share of measured requests that got exactly the
// expected answer. Every scenario thresholds it.
export const correct = new Rate('correct_responses');

const OPS = ['open', 'credit', 'debit', 'transfer', 'batch', 'balance', 'account', 'transaction', 'history', 'health'];
const opLatency = {};
for (const op of OPS) opLatency[op] = new Trend(`op_${op}_duration`, true);

// Wrong answers by wire error code; custom metrics must be declared in the
// init context, so the codes of ledger/codes.go are listed here, and
// anything else lands in unexpected_other (no error body: a transport
// error, a 202 pending, a 2xx with the wrong body).
const CODES = [
  'MALFORMED_REQUEST', 'MISSING_FIELD', 'INVALID_FIELD', 'INVALID_AMOUNT', 'UNSUPPORTED_CURRENCY',
  'ACCOUNT_NOT_FOUND', 'TRANSACTION_NOT_FOUND', 'ACCOUNT_EXISTS', 'IDEMPOTENCY_KEY_REUSED',
  'INSUFFICIENT_FUNDS', 'CURRENCY_MISMATCH', 'ACCOUNT_CLOSED', 'SAME_ACCOUNT', 'BALANCE_LIMIT_EXCEEDED',
  'PAYLOAD_TOO_LARGE', 'NOT_FOUND', 'METHOD_NOT_ALLOWED', 'UNSUPPORTED_MEDIA_TYPE', 'RATE_LIMITED',
  'UNAVAILABLE', 'INTERNAL', 'HEADERS_TOO_LARGE', 'REQUEST_TIMEOUT', 'TOO_MANY_CONNECTIONS',
  'STORAGE_FULL', 'DATABASE_UNAVAILABLE', 'UNAUTHENTICATED', 'FORBIDDEN',
];
const wrongByCode = {};
for (const c of CODES) wrongByCode[c] = new Counter(`wrong_${c}`);
const wrongOther = new Counter('wrong_other');
const wrongPending = new Counter('wrong_pending_202');
const wrongTransport = new Counter('wrong_transport_error');
// Money checks the scripts make beyond a single response (retail: the final
// balance equals the script's own arithmetic).
export const balanceMismatch = new Counter('balance_mismatches');

// ---------------------------------------------------------------- HTTP

// API_KEY (bsk_…) is sent as the bearer token of every request but
// /readyz; `bursar apikey create --scopes all` makes one.
const API_KEY = env('API_KEY', '');
const JSON_HEADERS = API_KEY
  ? { 'Content-Type': 'application/json', Authorization: `Bearer ${API_KEY}` }
  : { 'Content-Type': 'application/json' };

function params(op, phase, extraHeaders, expectedStatuses) {
  const p = {
    headers: extraHeaders ? Object.assign({}, JSON_HEADERS, extraHeaders) : JSON_HEADERS,
    tags: { op, phase },
    timeout: TIMEOUT,
  };
  if (expectedStatuses) p.responseCallback = http.expectedStatuses(...expectedStatuses);
  return p;
}

export function body(res) {
  if (!res || !res.body) return null;
  try {
    return JSON.parse(res.body);
  } catch (e) {
    return null;
  }
}

let warned = 0;
const WARN_MAX = envInt('WARN_MAX', 20);

// judge records one answer: ok must already include the exact status and
// the body checks. Wrong answers are counted by code and the first WARN_MAX
// per VU are logged with their body.
function judge(op, res, ok, what) {
  correct.add(ok, { op });
  if (ok) return;
  const b = body(res);
  if (res.error_code && res.status === 0) {
    wrongTransport.add(1, { op });
  } else if (b && b.error && wrongByCode[b.error.code]) {
    wrongByCode[b.error.code].add(1, { op });
  } else if (res.status === 202) {
    wrongPending.add(1, { op });
  } else {
    wrongOther.add(1, { op });
  }
  if (warned < WARN_MAX) {
    warned++;
    console.warn(`${op}: expected ${what}; got ${res.status} ${res.error || ''} ${String(res.body || '').slice(0, 300)}`);
  }
}

// expect checks status and body predicate, records the metrics and returns
// the parsed body when correct (null otherwise).
export function expect(op, res, status, what, pred) {
  const b = body(res);
  const ok = check(res, {
    [`${op}: ${what}`]: (r) => r.status === status && b !== null && pred(b),
  });
  opLatency[op] && opLatency[op].add(res.timings.duration);
  judge(op, res, ok, `${status} ${what}`);
  return ok ? b : null;
}

// expectBody checks a further property of an answer already judged
// correct (b is its parsed body; null counts as wrong).
export function expectBody(op, b, what, pred) {
  const ok = check(b, { [`${op}: ${what}`]: (x) => x !== null && pred(x) });
  correct.add(ok, { op });
  if (!ok) {
    wrongOther.add(1, { op });
    if (warned < WARN_MAX) {
      warned++;
      console.warn(`${op}: expected ${what}; got ${JSON.stringify(b).slice(0, 300)}`);
    }
  }
  return ok ? b : null;
}

// expectError checks for an exact refusal: status and error.code.
export function expectError(op, res, status, code) {
  return expect(op, res, status, `error ${code}`, (b) => !!b.error && b.error.code === code && typeof b.error.request_id === 'string');
}

function post(path, payload, op, phase, headers, expected) {
  return http.post(`${BASE_URL}${path}`, JSON.stringify(payload), params(op, phase, headers, expected));
}

function get(path, op, phase, expected) {
  return http.get(`${BASE_URL}${path}`, params(op, phase, null, expected));
}

// Raw requests, for scripts that expect an error or judge the body
// themselves. opts: {phase, headers, expected: [statuses k6 counts as not
// failed in http_req_failed]}.
export const raw = {
  open: (a, o = {}) => post('/api/v1/accounts', a, 'open', o.phase || 'main', o.headers, o.expected),
  credit: (a, o = {}) => post('/api/v1/transactions/credit', a, 'credit', o.phase || 'main', o.headers, o.expected),
  debit: (a, o = {}) => post('/api/v1/transactions/debit', a, 'debit', o.phase || 'main', o.headers, o.expected),
  transfer: (a, o = {}) => post('/api/v1/transactions/transfer', a, 'transfer', o.phase || 'main', o.headers, o.expected),
  batch: (a, o = {}) => post('/api/v1/transactions/batch', a, 'batch', o.phase || 'main', o.headers, o.expected),
  balance: (id, o = {}) => get(`/api/v1/accounts/${id}/balance`, 'balance', o.phase || 'main', o.expected),
  account: (id, o = {}) => get(`/api/v1/accounts/${id}`, 'account', o.phase || 'main', o.expected),
  transaction: (id, o = {}) => get(`/api/v1/transactions/${id}`, 'transaction', o.phase || 'main', o.expected),
  history: (id, q, o = {}) => get(`/api/v1/accounts/${id}/transactions${q ? `?${q}` : ''}`, 'history', o.phase || 'main', o.expected),
  health: (path, o = {}) => get(path, 'health', o.phase || 'main', o.expected),
};

const isID = (s) => typeof s === 'string' && /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(s);
const isBal = (s) => toMinor(s) !== null;

// ---------------------------------------------------------------- operations
//
// Each returns the parsed body when the answer is exactly right, else null
// (already counted). amounts are integer minor units.

export function openAccount(opts = {}) {
  const req = {
    customer_id: opts.customer || `k6-cust-${RUN}-${exec.vu.idInTest || 0}-${++seq}`,
    account_type: opts.type || 'checking',
    currency: opts.currency || CURRENCY,
  };
  if (opts.overdraft) req.overdraft_limit = fmt(opts.overdraft);
  if (opts.accountID) req.account_id = opts.accountID;
  const res = raw.open(req, { phase: opts.phase, headers: opts.headers });
  return expect('open', res, 201, 'account opened', (b) =>
    isID(b.account_id) && (!opts.accountID || b.account_id === opts.accountID) &&
    b.currency === req.currency && b.status === 'active' &&
    b.current_balance === fmt(0) && b.available_balance === fmt(opts.overdraft || 0) &&
    b.customer_id === req.customer_id);
}

function moneyOK(kind, account, amount) {
  return (b) => isID(b.transaction_id) && b.status === 'completed' && b.type === kind &&
    b.account_id === account && b.amount === fmt(amount) && b.currency === CURRENCY &&
    isBal(b.current_balance) && isBal(b.available_balance);
}

export function credit(account, amount, opts = {}) {
  const res = raw.credit({ account_id: account, amount: fmt(amount), currency: CURRENCY, description: opts.description || 'k6 deposit', reference_id: opts.ref || ref('c') },
    { phase: opts.phase, headers: opts.headers });
  return expect('credit', res, 201, 'credit completed', moneyOK('credit', account, amount));
}

export function debit(account, amount, opts = {}) {
  const res = raw.debit({ account_id: account, amount: fmt(amount), currency: CURRENCY, description: opts.description || 'k6 withdrawal', reference_id: opts.ref || ref('d') },
    { phase: opts.phase, headers: opts.headers });
  return expect('debit', res, 201, 'debit completed', moneyOK('debit', account, amount));
}

export function transferReq(src, dst, amount, opts = {}) {
  return {
    source_account_id: src, destination_account_id: dst, amount: fmt(amount), currency: CURRENCY,
    description: opts.description || 'k6 transfer', reference_id: opts.ref || ref('t'),
  };
}

export function transfer(src, dst, amount, opts = {}) {
  const res = raw.transfer(transferReq(src, dst, amount, opts), { phase: opts.phase, headers: opts.headers });
  return expect('transfer', res, 201, 'transfer completed', (b) =>
    isID(b.transaction_id) && b.status === 'completed' && b.type === 'transfer' &&
    b.source_account_id === src && b.destination_account_id === dst &&
    b.amount === fmt(amount) && b.currency === CURRENCY);
}

// Batch items, each judged like an answer of its own (op batch_item):
// correct only with status 201 and the transfer's fields.
export const batchItems = new Counter('batch_items');

// batchTransfers posts one batch of transfers ([src, dst, amount] triples,
// amounts in minor units) and checks the envelope (200, one result per
// item, in order) and then every item. It returns the number of items that
// completed.
export function batchTransfers(triples, opts = {}) {
  const items = triples.map(([src, dst, amount]) => Object.assign({ type: 'transfer' }, transferReq(src, dst, amount, opts)));
  const res = raw.batch({ items }, { phase: opts.phase, headers: opts.headers });
  const b = expect('batch', res, 200, `results for ${items.length} items`, (x) =>
    Array.isArray(x.results) && x.results.length === items.length && x.results.every((r, i) => r.index === i));
  if (!b) return 0;
  let done = 0;
  b.results.forEach((r, i) => {
    const [src, dst, amount] = triples[i];
    batchItems.add(1);
    const ok = check(r, {
      'batch item: 201 transfer completed': (x) => x.status === 201 && !x.error && isID(x.transaction_id) &&
        x.type === 'transfer' && x.source_account_id === src && x.destination_account_id === dst &&
        x.amount === fmt(amount) && x.currency === CURRENCY,
    });
    correct.add(ok, { op: 'batch_item' });
    if (ok) {
      done++;
      return;
    }
    if (r.error && wrongByCode[r.error.code]) {
      wrongByCode[r.error.code].add(1, { op: 'batch_item' });
    } else if (r.status === 202) {
      wrongPending.add(1, { op: 'batch_item' });
    } else {
      wrongOther.add(1, { op: 'batch_item' });
    }
    if (warned < WARN_MAX) {
      warned++;
      console.warn(`batch item ${i}: expected 201 transfer completed; got ${JSON.stringify(r).slice(0, 300)}`);
    }
  });
  return done;
}

// balance reads an account's balance; with want (minor units) the current
// balance must equal it.
export function balance(account, want, opts = {}) {
  const res = raw.balance(account, { phase: opts.phase });
  const what = want === undefined ? 'balance' : `balance ${fmt(want)}`;
  return expect('balance', res, 200, what, (b) =>
    b.account_id === account && b.currency === CURRENCY && isBal(b.current_balance) &&
    isBal(b.available_balance) && typeof b.version === 'number' &&
    (want === undefined || toMinor(b.current_balance) === want));
}

// balanceEventually polls an account's balance until it equals want
// (minor units), for effects that land after the answer (a transfer's
// refund), up to waitMs; it judges the last answer.
export function balanceEventually(account, want, waitMs = 3000) {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const res = raw.balance(account);
    const b = body(res);
    if ((res.status === 200 && b && toMinor(b.current_balance) === want) || Date.now() >= deadline) {
      return expect('balance', res, 200, `balance ${fmt(want)}`, (x) => x.account_id === account && toMinor(x.current_balance) === want);
    }
    sleep(0.05);
  }
}

// transaction fetches a transaction from PostgreSQL, which lags the answer
// by the flush interval: it polls while the answer is 404
// TRANSACTION_NOT_FOUND (or a transfer still "pending"), up to waitMs, and
// judges only the last answer.
export function transaction(id, pred, waitMs = 3000) {
  const deadline = Date.now() + waitMs;
  let res;
  for (;;) {
    res = raw.transaction(id, { expected: [200, 404] });
    const b = body(res);
    const lagging = (res.status === 404 && b && b.error && b.error.code === 'TRANSACTION_NOT_FOUND') ||
      (res.status === 200 && b && b.status === 'pending');
    if (!lagging || Date.now() >= deadline) break;
    sleep(0.05);
  }
  return expect('transaction', res, 200, 'transaction found', (b) => b.transaction_id === id && pred(b));
}

// history reads an account's history (PostgreSQL, lags by the flush
// interval): it polls until pred holds on the body, up to waitMs, and
// judges the last answer.
export function history(account, pred, waitMs = 3000) {
  const deadline = Date.now() + waitMs;
  let res;
  for (;;) {
    res = raw.history(account, 'limit=50');
    const b = body(res);
    if ((res.status === 200 && b && Array.isArray(b.transactions) && pred(b)) || Date.now() >= deadline) break;
    sleep(0.05);
  }
  return expect('history', res, 200, 'history', (b) => b.account_id === account && Array.isArray(b.transactions) && pred(b));
}

// ---------------------------------------------------------------- setup

// fundAccounts opens n accounts and deposits fund (minor units) into each,
// in parallel batches, and returns their IDs. It fails the test (setup is
// not measured) if any answer is wrong.
export function fundAccounts(n, fund, opts = {}) {
  const batch = opts.batch || 50;
  const ids = [];
  for (let i = 0; i < n; i += batch) {
    const k = Math.min(batch, n - i);
    const opens = [];
    for (let j = 0; j < k; j++) {
      opens.push(['POST', `${BASE_URL}/api/v1/accounts`, JSON.stringify({
        customer_id: `k6-setup-${RUN}-${i + j}`, account_type: opts.type || 'checking', currency: CURRENCY,
      }), params('open', 'setup')]);
    }
    const got = http.batch(opens).map((r) => {
      const b = body(r);
      if (r.status !== 201 || !b || !isID(b.account_id)) fail(`setup: open account: ${r.status} ${r.body}`);
      return b.account_id;
    });
    if (fund > 0) {
      const credits = got.map((id) => ['POST', `${BASE_URL}/api/v1/transactions/credit`, JSON.stringify({
        account_id: id, amount: fmt(fund), currency: CURRENCY, description: 'k6 setup funding', reference_id: ref('fund'),
      }), params('credit', 'setup')]);
      http.batch(credits).forEach((r) => {
        const b = body(r);
        if (r.status !== 201 || !b || b.status !== 'completed' || b.current_balance !== fmt(fund)) {
          fail(`setup: fund account: ${r.status} ${r.body}`);
        }
      });
    }
    ids.push(...got);
  }
  return ids;
}

// waitReady polls /readyz (up to waitS seconds) so a scenario started right
// after the node gets a clear error instead of a flood of refusals.
export function waitReady(waitS = envInt('READY_WAIT_S', 30)) {
  const deadline = Date.now() + waitS * 1000;
  for (;;) {
    const r = http.get(`${BASE_URL}/readyz`, { tags: { op: 'health', phase: 'setup' }, timeout: '5s', responseCallback: http.expectedStatuses(200, 503) });
    if (r.status === 200) return;
    if (Date.now() >= deadline) fail(`no ready Bursar node at ${BASE_URL} (GET /readyz: ${r.status} ${r.error || r.body})`);
    sleep(0.5);
  }
}

// pick returns a random element; pair two distinct random elements.
export function pick(a) {
  return a[Math.floor(Math.random() * a.length)];
}

export function pair(a) {
  const i = Math.floor(Math.random() * a.length);
  let j = Math.floor(Math.random() * (a.length - 1));
  if (j >= i) j++;
  return [a[i], a[j]];
}

// ---------------------------------------------------------------- mixes

// parseMix reads "transfer:60,credit:10,debit:10,balance:20" into a
// cumulative table for mixedOp.
export function parseMix(text) {
  const table = [];
  let total = 0;
  for (const part of text.split(',')) {
    const [op, w] = part.split(':');
    const n = Number(w);
    if (!['transfer', 'credit', 'debit', 'balance'].includes(op) || !(n >= 0)) {
      throw new Error(`MIX: bad entry "${part}" (ops: transfer, credit, debit, balance)`);
    }
    total += n;
    table.push([op, total]);
  }
  if (total <= 0) throw new Error('MIX: weights sum to zero');
  return { table, total };
}

// mixedOp runs one operation drawn from mix on the funded accounts. Amounts
// are small against the funding, so no run of bounded length can drain an
// account and every write should complete.
export function mixedOp(mix, accounts) {
  const r = Math.random() * mix.total;
  let op = mix.table[mix.table.length - 1][0];
  for (const [name, upto] of mix.table) {
    if (r < upto) {
      op = name;
      break;
    }
  }
  switch (op) {
    case 'transfer': {
      const [a, b] = pair(accounts);
      return transfer(a, b, randomMinor(1, 1000));
    }
    case 'credit':
      return credit(pick(accounts), randomMinor(1, 1000));
    case 'debit':
      return debit(pick(accounts), randomMinor(1, 1000));
    default:
      return balance(pick(accounts));
  }
}

// ---------------------------------------------------------------- thresholds

// thresholds are the pass/fail criteria every scenario shares; latency
// limits in ms. Only the measured phase counts (setup is tagged apart).
// P95_MS, P99_MS and CORRECT_MIN override the scenario's defaults.
export function thresholds(p95, p99, correctMin = 0.99) {
  p95 = envFloat('P95_MS', p95);
  p99 = envFloat('P99_MS', p99);
  correctMin = envFloat('CORRECT_MIN', correctMin);
  return {
    'http_req_duration{phase:main}': [`p(95)<${p95}`, `p(99)<${p99}`],
    correct_responses: [`rate>${correctMin}`],
    checks: [`rate>${correctMin}`],
  };
}

// ---------------------------------------------------------------- summary

function fmtNum(v, unit) {
  if (v === undefined || v === null) return '-';
  if (unit === 'ms') {
    if (v >= 1000) return `${(v / 1000).toFixed(2)}s`;
    if (v >= 1) return `${v.toFixed(2)}ms`;
    return `${(v * 1000).toFixed(0)}µs`;
  }
  if (unit === '%') return `${(v * 100).toFixed(2)}%`;
  if (Number.isInteger(v)) return String(v);
  return v.toFixed(2);
}

function pad(s, n) {
  s = String(s);
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}

function collectChecks(group, out) {
  for (const c of group.checks || []) out.push(c);
  for (const g of group.groups || []) collectChecks(g, out);
  return out;
}

// textSummary renders the end-of-test data as plain text: verdict,
// thresholds, checks, throughput, latency, wrong answers by code.
export function textSummary(name, data) {
  const m = data.metrics;
  const L = [];
  const thr = [];
  for (const [metric, v] of Object.entries(m)) {
    for (const [expr, t] of Object.entries(v.thresholds || {})) thr.push([metric, expr, t.ok]);
  }
  const passed = thr.every((t) => t[2]);
  const secs = (data.state.testRunDurationMs || 0) / 1000;
  L.push(`bursar k6 ${name}: ${passed ? 'PASS' : 'FAIL'} (thresholds ${thr.filter((t) => t[2]).length}/${thr.length})`);
  L.push(`target ${BASE_URL}, ran ${secs.toFixed(1)}s`);
  L.push('');
  L.push('thresholds');
  for (const [metric, expr, ok] of thr.sort()) L.push(`  ${ok ? 'ok  ' : 'FAIL'} ${metric} ${expr}`);
  L.push('');
  L.push('checks');
  for (const c of collectChecks(data.root_group, [])) {
    const total = c.passes + c.fails;
    L.push(`  ${c.fails === 0 ? 'ok  ' : 'FAIL'} ${pad(c.name, 44)} ${c.passes}/${total}`);
  }
  L.push('');
  const count = (k) => (m[k] ? m[k].values.count : 0);
  const rate = (k) => (m[k] ? m[k].values.rate : 0);
  L.push('throughput');
  L.push(`  iterations         ${count('iterations')} (${fmtNum(rate('iterations'))}/s)`);
  L.push(`  http requests      ${count('http_reqs')} (${fmtNum(rate('http_reqs'))}/s, setup included)`);
  if (m.dropped_iterations) {
    L.push(`  dropped iterations ${count('dropped_iterations')} (the arrival rate outran the VUs: the server fell behind or maxVUs is too low)`);
  }
  if (m.correct_responses) {
    const c = m.correct_responses.values;
    L.push(`  correct responses  ${fmtNum(c.rate, '%')} (${c.passes} ok, ${c.fails} wrong)`);
  }
  L.push('');
  L.push(`latency (ms)         ${['avg', 'med', 'p(90)', 'p(95)', 'p(99)', 'p(99.9)', 'max'].map((s) => pad(s, 9)).join(' ')}  count`);
  const trendRow = (label, key) => {
    if (!m[key]) return;
    const v = m[key].values;
    L.push(`  ${pad(label, 19)}${['avg', 'med', 'p(90)', 'p(95)', 'p(99)', 'p(99.9)', 'max'].map((s) => pad(fmtNum(v[s], 'ms'), 9)).join(' ')}  ${v.count === undefined ? '' : v.count}`);
  };
  trendRow('all (main phase)', 'http_req_duration{phase:main}');
  for (const op of OPS) trendRow(op, `op_${op}_duration`);
  trendRow('iteration', 'iteration_duration');
  const wrong = Object.keys(m).filter((k) => k.startsWith('wrong_') && count(k) > 0);
  if (wrong.length > 0 || count('balance_mismatches') > 0) {
    L.push('');
    L.push('wrong answers');
    for (const k of wrong.sort()) L.push(`  ${pad(k.slice('wrong_'.length), 24)} ${count(k)}`);
    if (count('balance_mismatches') > 0) L.push(`  ${pad('balance mismatches', 24)} ${count('balance_mismatches')}`);
  }
  L.push('');
  return L.join('\n');
}

// summary returns a handleSummary for the named scenario: JSON and text to
// OUT_DIR/<name>-summary.{json,txt}, the text to stdout.
export function summary(name) {
  return (data) => {
    const text = textSummary(name, data);
    return {
      stdout: `\n${text}`,
      [`${OUT_DIR}/${name}-summary.json`]: JSON.stringify(data, null, 2),
      [`${OUT_DIR}/${name}-summary.txt`]: text,
    };
  };
}
