# How to run: BASE_URL=http://127.0.0.1:8080 locust -f benches/load/locustfile.py --headless -u 5 -r 5 -t 30s   (against ./scripts/demo)
"""Demo users for Locust: each registers its own account, logs in, then calls both services.

service1 (auth: required) must answer 200 and its backend must have been told the user
(X-Forwarded-User in the test backend's JSON echo); service2 (auth: none) must answer 200. Every
other outcome is recorded as a Locust failure, so `locust --headless` exits non-zero on any.
scripts/load-smoke runs this file against a throwaway demo stack in CI.

Env: BASE_URL (default the demo, http://127.0.0.1:8080; --host overrides it), CONTROL_HOST (Host
for /account and /login: any host no service claims, e.g. gatehouse.my-company.com behind the
Helm chart's ingress), SERVICE1_HOST, SERVICE2_HOST.
The demo throttles logins to 10 a minute per client IP (auth.limits): for more than ~10 users set
`auth: { limits: { login_per_minute: 0, register_per_minute: 0 } }` in the config.
"""

import os
import uuid

from locust import HttpUser, between, task
from locust.exception import StopUser

CONTROL_HOST = os.environ.get("CONTROL_HOST", "")
SERVICE1_HOST = os.environ.get("SERVICE1_HOST", "service1.my-company.com")
SERVICE2_HOST = os.environ.get("SERVICE2_HOST", "service2.my-company.com")


def body(response):
    """The JSON object answered, or {} (a non-JSON answer fails the check, not the user)."""
    try:
        parsed = response.json()
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


class DemoUser(HttpUser):
    host = os.environ.get("BASE_URL", "http://127.0.0.1:8080")
    wait_time = between(0.01, 0.05)

    def on_start(self):
        # Unique across users and runs; POST /account takes 3-32 of [A-Za-z0-9_.-].
        self.username = f"locust_{uuid.uuid4().hex[:20]}"
        email = f"{self.username}@example.com"
        password = f"pw-{self.username}"
        headers = {"Host": CONTROL_HOST} if CONTROL_HOST else {}
        account = {"username": self.username, "email": email, "password": password}
        with self.client.post("/account", json=account, headers=headers, name="POST /account", catch_response=True) as r:
            if r.status_code != 201:
                r.failure(f"register: {r.status_code} {r.text[:200]}")
                raise StopUser()
        with self.client.post("/login", json={"email": email, "password": password}, headers=headers,
                              name="POST /login", catch_response=True) as r:
            token = body(r).get("access_token") if r.status_code == 200 else None
            if not token:
                r.failure(f"login: {r.status_code} {r.text[:200]}")
                raise StopUser()
        self.auth = {"Authorization": f"Bearer {token}"}

    @task
    def service1(self):
        with self.client.get("/hello", headers={"Host": SERVICE1_HOST, **self.auth},
                             name="service1 GET /hello", catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"service1: {r.status_code} {r.text[:200]}")
            elif body(r).get("headers", {}).get("x-forwarded-user") != self.username:
                r.failure("service1: the backend was not told the user (X-Forwarded-User)")

    @task
    def service2(self):
        with self.client.get("/hello", headers={"Host": SERVICE2_HOST, **self.auth},
                             name="service2 GET /hello", catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"service2: {r.status_code} {r.text[:200]}")
