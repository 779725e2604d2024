// How to run: k6 run -e BASE_URL=http://127.0.0.1:8080 benches/load/k6.js   (against ./scripts/demo; VUS=5 DURATION=30s)
//
// Each virtual user registers an account of its own (POST /account), logs in (POST /login) and
// then calls both demo services with its bearer token: service1 (auth: required, the backend must
// see the user in X-Forwarded-User) and service2 (auth: none). Any failed check or failed request
// fails the run (thresholds), so it doubles as a load smoke of the whole demo.
//
// Env: BASE_URL (default the demo, http://127.0.0.1:8080), VUS, DURATION, CONTROL_HOST (Host for
// /account and /login: any host no service claims; behind the Helm chart's ingress that is
// gatehouse.my-company.com), SERVICE1_HOST, SERVICE2_HOST.
// The demo throttles logins to 10 a minute per client IP (auth.limits): for more than ~10 VUs
// set `auth: { limits: { login_per_minute: 0, register_per_minute: 0 } }` in the config.
import http from 'k6/http';
import { check, fail } from 'k6';
import exec from 'k6/execution';

const BASE_URL = (__ENV.BASE_URL || 'http://127.0.0.1:8080').replace(/\/+$/, '');
const CONTROL_HOST = __ENV.CONTROL_HOST || '';
const SERVICES = [
  { name: 'service1', host: __ENV.SERVICE1_HOST || 'service1.my-company.com', auth: true },
  { name: 'service2', host: __ENV.SERVICE2_HOST || 'service2.my-company.com', auth: false },
];

export const options = {
  scenarios: {
    users: {
      executor: 'constant-vus',
      vus: Number(__ENV.VUS || 5),
      duration: __ENV.DURATION || '30s',
    },
  },
  thresholds: {
    checks: ['rate==1'],
    http_req_failed: ['rate==0'],
  },
};

// Module state is per VU (each VU runs its own copy of this script), so this is one user's token.
let session = null;

function controlParams(name) {
  const headers = { 'Content-Type': 'application/json' };
  if (CONTROL_HOST) headers.Host = CONTROL_HOST;
  return { headers, tags: { name } };
}

function signUp() {
  // Unique across VUs and runs; 3-32 characters of [A-Za-z0-9_.-], as POST /account requires.
  const suffix = Math.floor(Math.random() * 0xffffff).toString(36);
  const username = `k6_${exec.vu.idInTest}_${Date.now().toString(36)}_${suffix}`;
  const email = `${username}@example.com`;
  const password = `pw-${username}`;

  const created = http.post(`${BASE_URL}/account`, JSON.stringify({ username, email, password }),
    controlParams('POST /account'));
  if (!check(created, { 'register: 201': (r) => r.status === 201 })) {
    fail(`POST /account answered ${created.status}: ${created.body}`);
  }
  const login = http.post(`${BASE_URL}/login`, JSON.stringify({ email, password }),
    controlParams('POST /login'));
  const ok = check(login, {
    'login: 200 with a bearer token': (r) => r.status === 200 && r.json('token_type') === 'Bearer'
      && typeof r.json('access_token') === 'string',
  });
  if (!ok) fail(`POST /login answered ${login.status}: ${login.body}`);
  return { username, token: login.json('access_token') };
}

export default function () {
  if (session === null) session = signUp();
  for (const svc of SERVICES) {
    const res = http.get(`${BASE_URL}/hello`, {
      headers: { Host: svc.host, Authorization: `Bearer ${session.token}` },
      tags: { name: `${svc.name} GET /hello`, service: svc.name },
    });
    check(res, {
      [`${svc.name}: 200`]: (r) => r.status === 200,
      // The test backend echoes what it received: service1 must have been told who the user is.
      [`${svc.name}: backend saw the right user`]: (r) => !svc.auth
        || (r.status === 200 && r.json('headers.x-forwarded-user') === session.username),
    });
  }
}
