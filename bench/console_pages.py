"""Server time of every console page on `make run`'s demo data (1,700 users, 1,200 items, 60,000 events).

    python bench/console_pages.py [--users 1500 --items 1200 --events 60000 --repeat 10]

Pages are rendered in-process through Flask's test client, signed in as admin, so the
time is the server's alone; the target is under 200 ms for each page.
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import fresh_config  # noqa: E402
from service.http.app import create_app  # noqa: E402
from service.usecases import model_training as training  # noqa: E402
from service.usecases import training_run  # noqa: E402
from service.usecases.demo import load_demo  # noqa: E402
from service.usecases.demo_experiments import load_demo_experiments  # noqa: E402
from service.usecases.keys import create_key  # noqa: E402

PAGES = (
    "/ui/experiments",
    "/ui/experiments/points-q4",
    "/ui/new-experiment",
    "/ui/experiments/points-q4/edit",
    "/ui/experiments/points-q4/results",
    "/ui/experiments/points-q4/results?metric=spend&alpha=0.1&correction=bh",
    "/ui/experiments/points-q4/results?metric=purchase_conversion",
    "/ui/experiments/points-q4/results.csv",
    "/ui/experiments/bonus-bandit/results",
    "/ui/experiments/points-q4/pause",
    "/ui/models",
    "/ui/users?user_id=user-1",
    "/ui/docs",
)


def main() -> None:
    """Load the demo, then time each page."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1500)
    parser.add_argument("--items", type=int, default=1200)
    parser.add_argument("--events", type=int, default=60000)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    config = fresh_config("console")
    app = create_app(config)
    svc = app.extensions["stickyloop"]
    svc.upgrade_schema()
    for line in [*load_demo(svc, args.users, args.items, args.events), *load_demo_experiments(svc, args.users)]:
        print(line, file=sys.stderr)
    record = training.request_training(svc.db, config, "als", {}, True)
    training_run.run_training(svc.db, config, record.version)
    client = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/ui/sign-in").get_data(as_text=True))
    assert token is not None
    client.post("/ui/sign-in", data={"csrf_token": token.group(1), "api_key": create_key(svc.db, "admin")[1]})
    print(f"{'page':<75} {'median ms':>10} {'max ms':>8}")
    for page in PAGES:
        client.get(page)  # the first request compiles the page's templates
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            status = client.get(page).status_code
            times.append((time.perf_counter() - start) * 1000)
        assert status in (200, 409), (page, status)  # the edit form of a running experiment answers 409
        print(f"{page:<75} {statistics.median(times):>10.1f} {max(times):>8.1f}")


if __name__ == "__main__":
    main()
