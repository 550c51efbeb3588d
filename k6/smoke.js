// smoke: every endpoint once per iteration, at 1–2 VUs for ~10s, with the
// exact answers checked (balances included). It must pass its thresholds;
// smoke-ci.sh runs it in CI against a fresh node.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 k6/smoke.js
//
// Env: BASE_URL, VUS (2), DURATION (10s), P95_MS (250), P99_MS (1000),
// CORRECT_MIN (0.99), OUT_DIR (k6/out).
import {
  balance, balanceEventually, credit, debit, env, envInt, expect, expectBody, expectError, fmt, history,
  openAccount, raw, ref, summary, thresholds, transaction, transfer, transferReq, uuid4, waitReady,
  CURRENCY, TREND_STATS,
} from './lib/bursar.js';

const NAME = 'smoke';

export const options = {
  scenarios: {
    smoke: {
      executor: 'constant-vus',
      vus: envInt('VUS', 2),
      duration: env('DURATION', '10s'),
      gracefulStop: '10s',
    },
  },
  setupTimeout: '40s',
  summaryTrendStats: TREND_STATS,
  // Every check is exact, so even smoke holds the 99% line; latency limits
  // are loose because CI boxes are small and shared.
  thresholds: thresholds(250, 1000),
};

export function setup() {
  waitReady();
}

export default function () {
  // Health.
  expect('health', raw.health('/healthz'), 200, 'healthz ok', (b) => b.status === 'ok');
  expect('health', raw.health('/readyz'), 200, 'readyz ready', (b) => b.ready === true);

  // Open A (idempotent by key: a retry names the same account) and B (own
  // ID, 10.00 overdraft).
  const openKey = ref('open');
  const a = openAccount({ headers: { 'Idempotency-Key': openKey } });
  const bID = uuid4();
  const b = openAccount({ accountID: bID, overdraft: 1000, type: 'savings' });
  if (!a || !b) return;
  const A = a.account_id;
  const again = raw.open({ customer_id: a.customer_id, account_type: 'checking', currency: CURRENCY }, { headers: { 'Idempotency-Key': openKey } });
  expect('open', again, 201, 'open replayed, same account', (x) => x.account_id === A && again.headers['Idempotent-Replayed'] === 'true');

  // Money: +100.00, -30.00, 20.00 to B; each answer carries the balance.
  const c = credit(A, 10000);
  expectBody('credit', c, 'balance 100.00 after credit', (x) => x.current_balance === fmt(10000) && x.available_balance === fmt(10000));
  expectBody('debit', debit(A, 3000), 'balance 70.00 after debit', (x) => x.current_balance === fmt(7000));
  const t = transfer(A, bID, 2000);

  // Idempotency: the same key and request replays the original answer;
  // the same key with another request is refused.
  const key = ref('idem');
  const req = { account_id: A, amount: '5.00', currency: CURRENCY, description: 'smoke idem', reference_id: key };
  const hdr = { 'Idempotency-Key': key };
  const f = expect('credit', raw.credit(req, { headers: hdr }), 201, 'idempotent credit', (x) => x.status === 'completed' && x.current_balance === fmt(5500));
  const replay = raw.credit(req, { headers: hdr });
  expect('credit', replay, 201, 'credit replayed, same transaction', (x) =>
    f !== null && x.transaction_id === f.transaction_id && x.current_balance === fmt(5500) && replay.headers['Idempotent-Replayed'] === 'true');
  expectError('credit', raw.credit(Object.assign({}, req, { amount: '6.00' }), { headers: hdr, expected: [409] }), 409, 'IDEMPOTENCY_KEY_REUSED');

  // Refusals with their exact codes; none moves money.
  expectError('debit', raw.debit({ account_id: A, amount: '1000.00', currency: CURRENCY, description: 'too much', reference_id: ref('nsf') }, { expected: [422] }), 422, 'INSUFFICIENT_FUNDS');
  expectError('transfer', raw.transfer(transferReq(A, A, 100), { expected: [422] }), 422, 'SAME_ACCOUNT');
  expectError('credit', raw.credit({ account_id: A, amount: '1.234', currency: CURRENCY, description: 'bad', reference_id: ref('bad') }, { expected: [400] }), 400, 'INVALID_AMOUNT');
  expectError('balance', raw.balance(uuid4(), { expected: [404] }), 404, 'ACCOUNT_NOT_FOUND');

  // Reads: strong balances from the owner, history from PostgreSQL.
  balance(A, 5500);
  expectBody('balance', balance(bID, 2000), 'B available 30.00 (overdraft)', (x) => x.available_balance === fmt(3000));
  expect('account', raw.account(bID), 200, 'account B', (x) =>
    x.account_id === bID && x.account_type === 'savings' && x.overdraft_limit === fmt(1000) && x.current_balance === fmt(2000) && x.status === 'active');
  if (t) {
    transaction(t.transaction_id, (x) => x.type === 'transfer' && x.status === 'completed' && x.amount === fmt(2000) &&
      x.source_account_id === A && x.destination_account_id === bID && Array.isArray(x.legs) && x.legs.length === 2);
  }
  if (c) {
    transaction(c.transaction_id, (x) => x.type === 'credit' && x.status === 'completed' && x.account_id === A && x.balance_after === fmt(10000));
    history(A, (h) => h.transactions.some((x) => x.transaction_id === c.transaction_id));
  }

  // A transfer to a missing account: the destination refuses the credit
  // leg and A gets a refund, which lands after the answer.
  expectError('transfer', raw.transfer(transferReq(A, uuid4(), 100), { expected: [404] }), 404, 'ACCOUNT_NOT_FOUND');
  balanceEventually(A, 5500);
}

export const handleSummary = summary(NAME);
