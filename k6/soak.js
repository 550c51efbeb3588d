// soak: a moderate constant arrival rate for a long time (30 minutes by
// default), to catch what only time shows: memory growth, slow leaks in the
// reply registry or actor residency, flush lag, latency creep. Watch the
// node's /metrics alongside.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e DURATION=2h k6/soak.js
//
// Env: BASE_URL, RATE (200 ops/s), DURATION (30m), ACCOUNTS (5000),
// FUND (1000000.00), MIX (transfer:60,credit:10,debit:10,balance:20),
// PRE_VUS (20), MAX_VUS (300), P95_MS (50), P99_MS (100),
// CORRECT_MIN (0.999), OUT_DIR.
import {
  env, envInt, fundAccounts, mixedOp, parseMix, summary, thresholds, toMinor, waitReady, TREND_STATS,
} from './lib/bursar.js';

const NAME = 'soak';
const MIX = parseMix(env('MIX', 'transfer:60,credit:10,debit:10,balance:20'));

export const options = {
  scenarios: {
    soak: {
      executor: 'constant-arrival-rate',
      rate: envInt('RATE', 200),
      timeUnit: '1s',
      duration: env('DURATION', '30m'),
      preAllocatedVUs: envInt('PRE_VUS', 20),
      maxVUs: envInt('MAX_VUS', 300),
      gracefulStop: '30s',
    },
  },
  setupTimeout: '5m',
  summaryTrendStats: TREND_STATS,
  // A long run at a rate well inside capacity: hold it to a higher
  // standard of correctness than the bursty scenarios.
  thresholds: thresholds(50, 100, 0.999),
};

export function setup() {
  waitReady();
  return { accounts: fundAccounts(envInt('ACCOUNTS', 5000), toMinor(env('FUND', '1000000.00'))) };
}

export default function (data) {
  mixedOp(MIX, data.accounts);
}

export const handleSummary = summary(NAME);
