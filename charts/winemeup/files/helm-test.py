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


deadline = time.monotonic() + 60
while True:
    status, _ = call("GET", "/readyz")
    if status == 200:
        break
    if time.monotonic() > deadline:
        fail(f"router /readyz answered {status} for 60 s")
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

status, raw = call("GET", "/metrics")
if status != 200:
    fail(f"GET /metrics answered {status}")
text = raw.decode()
for name in ("winemeup_router_requests_total", "winemeup_router_cache_hits_total",
             "winemeup_router_request_duration_seconds_bucket"):
    if name not in text:
        fail(f"/metrics lacks {name}")
print("metrics exposed; helm test passed")
