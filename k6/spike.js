// spike: a steady base rate, a sudden jump to SPIKE_RATE, back to the base
// rate, and a recovery window: does the node absorb the burst (backpressure,
// not collapse) and return to base-rate latency afterwards?
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e SPIKE_RATE=3000 k6/spike.js
//
// Env: BASE_URL, BASE_RATE (50 ops/s), WARM (20s), SPIKE_RATE (1500),
// SPIKE_RAMP (5s), SPIKE_HOLD (20s), RECOVERY (30s), ACCOUNTS (1000),
// FUND (1000000.00), MIX (transfer:60,credit:10,debit:10,balance:20),
// PRE_VUS (50), MAX_VUS (1000), P95_MS (250), P99_MS (1000),
// CORRECT_MIN (0.99), OUT_DIR.
import {
  env, envInt, fundAccounts, mixedOp, parseMix, summary, thresholds, toMinor, waitReady, TREND_STATS,
} from './lib/bursar.js';

const NAME = 'spike';
const MIX = parseMix(env('MIX', 'transfer:60,credit:10,debit:10,balance:20'));
const BASE = envInt('BASE_RATE', 50);
const SPIKE = envInt('SPIKE_RATE', 1500);
const RAMP = env('SPIKE_RAMP', '5s');

export const options = {
  scenarios: {
    spike: {
      executor: 'ramping-arrival-rate',
      startRate: BASE,
      timeUnit: '1s',
      preAllocatedVUs: envInt('PRE_VUS', 50),
      maxVUs: envInt('MAX_VUS', 1000),
      stages: [
        { target: BASE, duration: env('WARM', '20s') },
        { target: SPIKE, duration: RAMP },
        { target: SPIKE, duration: env('SPIKE_HOLD', '20s') },
        { target: BASE, duration: RAMP },
        { target: BASE, duration: env('RECOVERY', '30s') },
      ],
      gracefulStop: '30s',
    },
  },
  setupTimeout: '5m',
  summaryTrendStats: TREND_STATS,
  thresholds: thresholds(250, 1000),
};

export function setup() {
  waitReady();
  return { accounts: fundAccounts(envInt('ACCOUNTS', 1000), toMinor(env('FUND', '1000000.00'))) };
}

export default function (data) {
  mixedOp(MIX, data.accounts);
}

export const handleSummary = summary(NAME);
