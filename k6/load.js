// load: a ramping arrival rate of mixed operations (transfers between
// random pairs of funded accounts, deposits, withdrawals, balance reads):
// ramp up to RATE ops/s, hold it, ramp down. Open loop: k6 starts
// iterations on schedule whatever the latency, and reports the ones it
// could not start as dropped_iterations.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e RATE=500 -e HOLD=2m k6/load.js
//
// Env: BASE_URL, START_RATE (10), RATE (300 ops/s), RAMP (30s), HOLD (1m),
// RAMP_DOWN (10s), ACCOUNTS (1000), FUND (1000000.00 per account),
// MIX (transfer:60,credit:10,debit:10,balance:20), PRE_VUS (20),
// MAX_VUS (300), P95_MS (50), P99_MS (100), CORRECT_MIN (0.99), OUT_DIR.
import {
  env, envInt, fundAccounts, mixedOp, parseMix, summary, thresholds, toMinor, waitReady, TREND_STATS,
} from './lib/bursar.js';

const NAME = 'load';
const MIX = parseMix(env('MIX', 'transfer:60,credit:10,debit:10,balance:20'));

export const options = {
  scenarios: {
    load: {
      executor: 'ramping-arrival-rate',
      startRate: envInt('START_RATE', 10),
      timeUnit: '1s',
      preAllocatedVUs: envInt('PRE_VUS', 20),
      maxVUs: envInt('MAX_VUS', 300),
      stages: [
        { target: envInt('RATE', 300), duration: env('RAMP', '30s') },
        { target: envInt('RATE', 300), duration: env('HOLD', '1m') },
        { target: 0, duration: env('RAMP_DOWN', '10s') },
      ],
      gracefulStop: '30s',
    },
  },
  setupTimeout: '5m',
  summaryTrendStats: TREND_STATS,
  thresholds: thresholds(50, 100),
};

export function setup() {
  waitReady();
  return { accounts: fundAccounts(envInt('ACCOUNTS', 1000), toMinor(env('FUND', '1000000.00'))) };
}

export default function (data) {
  mixedOp(MIX, data.accounts);
}

export const handleSummary = summary(NAME);
