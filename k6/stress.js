// stress: an arrival rate that climbs in steps past what the node can
// serve, to find where latency and correctness break and to see that the
// node sheds load with clear refusals (503 UNAVAILABLE, 202 pending)
// rather than wrong answers or a crash. Failing its thresholds at the top
// steps is the expected finding; read the per-step picture in the JSON.
//
//   k6 run -e BASE_URL=http://127.0.0.1:8080 -e STEPS=500,1000,2000,4000 k6/stress.js
//
// Env: BASE_URL, STEPS (250,500,1000,2000,4000 ops/s), STEP_RAMP (10s),
// STEP_HOLD (30s), RAMP_DOWN (10s), ACCOUNTS (2000), FUND (1000000.00),
// MIX (transfer:60,credit:10,debit:10,balance:20), PRE_VUS (50),
// MAX_VUS (1000), P95_MS (250), P99_MS (1000), CORRECT_MIN (0.99), OUT_DIR.
import {
  env, envInt, fundAccounts, mixedOp, parseMix, summary, thresholds, toMinor, waitReady, TREND_STATS,
} from './lib/bursar.js';

const NAME = 'stress';
const MIX = parseMix(env('MIX', 'transfer:60,credit:10,debit:10,balance:20'));

function stages() {
  const out = [];
  for (const s of env('STEPS', '250,500,1000,2000,4000').split(',')) {
    const rate = parseInt(s, 10);
    if (!(rate > 0)) throw new Error(`STEPS: bad rate "${s}"`);
    out.push({ target: rate, duration: env('STEP_RAMP', '10s') });
    out.push({ target: rate, duration: env('STEP_HOLD', '30s') });
  }
  out.push({ target: 0, duration: env('RAMP_DOWN', '10s') });
  return out;
}

export const options = {
  scenarios: {
    stress: {
      executor: 'ramping-arrival-rate',
      startRate: 10,
      timeUnit: '1s',
      preAllocatedVUs: envInt('PRE_VUS', 50),
      maxVUs: envInt('MAX_VUS', 1000),
      stages: stages(),
      gracefulStop: '30s',
    },
  },
  setupTimeout: '5m',
  summaryTrendStats: TREND_STATS,
  thresholds: thresholds(250, 1000),
};

export function setup() {
  waitReady();
  return { accounts: fundAccounts(envInt('ACCOUNTS', 2000), toMinor(env('FUND', '1000000.00'))) };
}

export default function (data) {
  mixedOp(MIX, data.accounts);
}

export const handleSummary = summary(NAME);
