// batch: transfers sent in batches through POST /api/v1/transactions/batch,
// at a constant rate of batches, each of BATCH transfers between random
// pairs of funded accounts. Every item of every answer is checked (201,
// "transfer", the requested accounts and amount); a batch's answer counts
// as one response, each item as one more (op batch_item). Only transfers
// among the script's own accounts run, so teardown checks that their
// balances still add up to what setup deposited (money is conserved).
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e RATE=50 -e BATCH=1000 k6/batch.js
//
// Env: BASE_URL, RATE (5 batches/s), BATCH (100 transfers per batch, at
// most the node's --batch-items-max), DURATION (30s), ACCOUNTS (1000),
// FUND (1000000.00 each), PRE_VUS (10), MAX_VUS (100), P95_MS (500),
// P99_MS (1000), CORRECT_MIN (0.99), OUT_DIR.
import http from 'k6/http';
import { sleep } from 'k6';
import {
  balanceMismatch, batchTransfers, env, envInt, fmt, fundAccounts, pair, randomMinor, summary, thresholds, toMinor,
  waitReady, BASE_URL, TREND_STATS,
} from './lib/bursar.js';

const NAME = 'batch';
const BATCH = envInt('BATCH', 100);
if (BATCH < 1) throw new Error('BATCH must be at least 1');

export const options = {
  scenarios: {
    batch: {
      executor: 'constant-arrival-rate',
      rate: envInt('RATE', 5),
      timeUnit: '1s',
      duration: env('DURATION', '30s'),
      preAllocatedVUs: envInt('PRE_VUS', 10),
      maxVUs: envInt('MAX_VUS', 100),
      gracefulStop: '30s',
    },
  },
  setupTimeout: '5m',
  teardownTimeout: '2m',
  summaryTrendStats: TREND_STATS,
  // A batch's latency is its slowest item's plus the batch's own work.
  thresholds: Object.assign(thresholds(500, 1000), { balance_mismatches: ['count==0'] }),
};

export function setup() {
  waitReady();
  const fund = toMinor(env('FUND', '1000000.00'));
  const accounts = fundAccounts(envInt('ACCOUNTS', 1000), fund);
  return { accounts, total: fund * accounts.length };
}

export default function (data) {
  const triples = [];
  for (let i = 0; i < BATCH; i++) {
    const [a, b] = pair(data.accounts);
    triples.push([a, b, randomMinor(1, 1000)]);
  }
  batchTransfers(triples);
}

// teardown: the accounts' balances add up to what setup deposited.
export function teardown(data) {
  sleep(1); // let the last credit legs land
  let sum = 0;
  for (let i = 0; i < data.accounts.length; i += 50) {
    const reqs = data.accounts.slice(i, i + 50).map((id) => ['GET', `${BASE_URL}/api/v1/accounts/${id}/balance`, null, { tags: { op: 'balance', phase: 'teardown' } }]);
    for (const r of http.batch(reqs)) {
      const v = r.status === 200 ? toMinor(JSON.parse(r.body).current_balance) : null;
      if (v === null) {
        balanceMismatch.add(1);
        console.error(`teardown: balance read ${r.status} ${r.body}`);
        return;
      }
      sum += v;
    }
  }
  if (sum !== data.total) {
    balanceMismatch.add(1);
    console.error(`teardown: the accounts hold ${fmt(sum)}, setup deposited ${fmt(data.total)}`);
  }
}

export const handleSummary = summary(NAME);
