// hot-account: one account on one side of every transfer (a merchant's
// settlement account, a payroll account), the case that serializes on a
// single account and collapses row-locking designs. The other side is a
// random funded account; HOT_DIRECTION picks who pays. Only transfers among
// the script's own accounts run, so teardown checks that their balances
// still add up to what setup deposited (money is conserved).
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e RATE=1000 k6/hot-account.js
//
// Env: BASE_URL, RATE (300 transfers/s), RAMP (10s), HOLD (1m),
// ACCOUNTS (1000 counterparties), FUND (1000000.00 each),
// HOT_FUND (100000000.00), HOT_DIRECTION (both|out|in), PRE_VUS (20),
// MAX_VUS (300), P95_MS (50), P99_MS (100), CORRECT_MIN (0.99), OUT_DIR.
import http from 'k6/http';
import { sleep } from 'k6';
import {
  balanceMismatch, env, envInt, fmt, fundAccounts, pick, randomMinor, summary, thresholds, toMinor,
  transfer, waitReady, BASE_URL, TREND_STATS,
} from './lib/bursar.js';

const NAME = 'hot-account';
const DIRECTION = env('HOT_DIRECTION', 'both');
if (!['both', 'out', 'in'].includes(DIRECTION)) throw new Error(`HOT_DIRECTION must be both, out or in, got "${DIRECTION}"`);
const RATE = envInt('RATE', 300);

export const options = {
  scenarios: {
    hot: {
      executor: 'ramping-arrival-rate',
      startRate: Math.min(10, RATE),
      timeUnit: '1s',
      preAllocatedVUs: envInt('PRE_VUS', 20),
      maxVUs: envInt('MAX_VUS', 300),
      stages: [
        { target: RATE, duration: env('RAMP', '10s') },
        { target: RATE, duration: env('HOLD', '1m') },
      ],
      gracefulStop: '30s',
    },
  },
  setupTimeout: '5m',
  teardownTimeout: '2m',
  summaryTrendStats: TREND_STATS,
  thresholds: Object.assign(thresholds(50, 100), { balance_mismatches: ['count==0'] }),
};

export function setup() {
  waitReady();
  const fund = toMinor(env('FUND', '1000000.00'));
  const hotFund = toMinor(env('HOT_FUND', '100000000.00'));
  const [hot] = fundAccounts(1, hotFund);
  const others = fundAccounts(envInt('ACCOUNTS', 1000), fund);
  return { hot, others, total: hotFund + fund * others.length };
}

export default function (data) {
  const other = pick(data.others);
  const out = DIRECTION === 'out' || (DIRECTION === 'both' && Math.random() < 0.5);
  const amount = randomMinor(1, 1000);
  if (out) transfer(data.hot, other, amount);
  else transfer(other, data.hot, amount);
}

// sumBalances reads every account's balance (strong reads from the owner).
function sumBalances(ids) {
  let sum = 0;
  for (let i = 0; i < ids.length; i += 100) {
    const reqs = ids.slice(i, i + 100).map((id) => ['GET', `${BASE_URL}/api/v1/accounts/${id}/balance`, null, { tags: { op: 'balance', phase: 'teardown' } }]);
    for (const r of http.batch(reqs)) {
      const b = r.status === 200 ? JSON.parse(r.body) : null;
      if (!b || toMinor(b.current_balance) === null) return null;
      sum += toMinor(b.current_balance);
    }
  }
  return sum;
}

// teardown: every transfer was answered, but one answered 202 (pending)
// may still be moving; allow 10s for the sum to settle.
export function teardown(data) {
  const ids = [data.hot].concat(data.others);
  const deadline = Date.now() + 10000;
  let sum;
  for (;;) {
    sum = sumBalances(ids);
    if (sum === data.total || Date.now() >= deadline) break;
    sleep(0.5);
  }
  if (sum !== data.total) {
    console.error(`money not conserved among the script's accounts: balances sum to ${sum === null ? 'unreadable' : fmt(sum)}, deposited ${fmt(data.total)}`);
    balanceMismatch.add(1);
  } else {
    balanceMismatch.add(0);
  }
}

export const handleSummary = summary(NAME);
