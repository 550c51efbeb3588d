// retail: a retail-banking customer journey per iteration: open an account,
// get paid (deposit), withdraw cash, pay a merchant (transfer), have a card
// payment declined for want of funds, and check the balance. Every answer
// carries or is checked against the balance the script computes itself, so
// a lost or doubled write shows up as a balance mismatch.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e RATE=50 k6/retail.js
//
// Env: BASE_URL, RATE (20 customers/s, ~6 requests each), DURATION (1m),
// MERCHANTS (50), PRE_VUS (20), MAX_VUS (200), P95_MS (50), P99_MS (100),
// CORRECT_MIN (0.99), OUT_DIR.
import {
  balanceMismatch, credit, debit, env, envInt, expect, expectBody, expectError, fmt, fundAccounts,
  openAccount, pick, randomMinor, raw, ref, summary, thresholds, toMinor, transfer, waitReady,
  CURRENCY, TREND_STATS,
} from './lib/bursar.js';

const NAME = 'retail';

export const options = {
  scenarios: {
    retail: {
      executor: 'constant-arrival-rate',
      rate: envInt('RATE', 20),
      timeUnit: '1s',
      duration: env('DURATION', '1m'),
      preAllocatedVUs: envInt('PRE_VUS', 20),
      maxVUs: envInt('MAX_VUS', 200),
      gracefulStop: '30s',
    },
  },
  setupTimeout: '2m',
  summaryTrendStats: TREND_STATS,
  thresholds: Object.assign(thresholds(50, 100), { balance_mismatches: ['count==0'] }),
};

export function setup() {
  waitReady();
  // Merchants only receive, so they need no funds.
  return { merchants: fundAccounts(envInt('MERCHANTS', 50), 0, { type: 'merchant' }) };
}

// balanceIs judges a balance the script expects and counts a mismatch
// apart from other wrong answers.
function balanceIs(step, b, want) {
  if (b && toMinor(b.current_balance) !== want) {
    balanceMismatch.add(1);
  }
  return expectBody(step, b, 'balance matches the script\'s arithmetic', (x) =>
    toMinor(x.current_balance) === want && toMinor(x.available_balance) === want);
}

export default function (data) {
  balanceMismatch.add(0);
  const acc = openAccount();
  if (!acc) return;
  const id = acc.account_id;
  let want = 0;

  const pay = randomMinor(50000, 500000); // 500.00–5,000.00
  want += pay;
  if (!balanceIs('credit', credit(id, pay, { description: 'salary' }), want)) return;

  const cash = randomMinor(1000, Math.floor(want / 4)); // ATM
  want -= cash;
  if (!balanceIs('debit', debit(id, cash, { description: 'ATM withdrawal' }), want)) return;

  const bill = randomMinor(100, Math.floor(want / 2));
  if (!transfer(id, pick(data.merchants), bill, { description: 'card payment' })) return;
  want -= bill;

  // One more than the balance: declined, and nothing moves.
  expectError('debit', raw.debit({
    account_id: id, amount: fmt(want + 1), currency: CURRENCY, description: 'declined card payment', reference_id: ref('decl'),
  }, { expected: [422] }), 422, 'INSUFFICIENT_FUNDS');

  const res = raw.balance(id);
  const b = expect('balance', res, 200, 'balance read', (x) => x.account_id === id && x.currency === CURRENCY);
  balanceIs('balance', b, want);
}

export const handleSummary = summary(NAME);
