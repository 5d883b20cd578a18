"""`helm test` check: predict through the router, see a cache hit, read /metrics.

Runs inside the router image (Python and the feature schema are there). Exits non-zero with a
message saying what failed. Standard library only.
"""

import json
import os
import sys
import time
import urllib.error
import urllib.request

from winemeup.schema import SCHEMA

BASE = os.environ["ROUTER_URL"].rstrip("/")
KEY = os.environ["API_KEY"].split(",")[0].strip()


def call(method: str, path: str, body: object = None) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(BASE + path, data=data, method=method)
    request.add_header("X-API-Key", KEY)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError as e:  # refused, reset, timed out: report as status 0
        return 0, str(e).encode()


def fail(message: str) -> None:
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


# /readyz is 200 once a router pod can serve; the default model (its runner) may still be
# loading, which /readyz reports as default_model_status.
deadline = time.monotonic() + 120
while True:
    status, raw = call("GET", "/readyz")
    state = json.loads(raw).get("default_model_status", "ready") if status == 200 else None
    if state == "ready":
        break
    if time.monotonic() > deadline:
        fail(f"router /readyz answered {status} (default model {state}) for 120 s: {raw[:300]!r}")
    time.sleep(2)

payload = {"features": SCHEMA.example()}
status, raw = call("POST", "/v1/predict", payload)
if status != 200:
    fail(f"POST /v1/predict answered {status}: {raw[:300]!r}")
first = json.loads(raw)
if not 0 <= float(first["score"]) <= 10:
    fail(f"score out of range: {first}")
print(f"predicted quality {first['quality']} (score {first['score']:.3f}) with {first['model']}")

# Several router replicas with an in-memory cache each: repeat until one answers from cache.
for attempt in range(12):
    status, raw = call("POST", "/v1/predict", payload)
    if status != 200:
        fail(f"repeated POST /v1/predict answered {status}: {raw[:300]!r}")
    again = json.loads(raw)
    if again["cached"]:
        if abs(float(again["score"]) - float(first["score"])) > 1e-9:
            fail(f"cached score {again['score']} differs from {first['score']}")
        print(f"cache hit on repeat {attempt + 1}")
        break
else:
    fail("the same wine was never answered from the cache")

# Any replica may answer /metrics, including one that has served no prediction yet and so
# prints no samples: check the metric families each declares (# TYPE lines), not samples.
status, raw = call("GET", "/metrics")
if status != 200:
    fail(f"GET /metrics answered {status}")
declared = {line.split()[2] for line in raw.decode().splitlines() if line.startswith("# TYPE ")}
for family in ("winemeup_router_requests", "winemeup_router_cache_hits",
               "winemeup_router_request_duration_seconds", "winemeup_router_model_ready"):
    if family not in declared and family + "_total" not in declared:
        fail(f"/metrics declares no {family} (declared: {sorted(declared)})")
print("metrics exposed; helm test passed")
