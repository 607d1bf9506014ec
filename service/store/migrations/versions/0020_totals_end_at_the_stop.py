"""A stopped experiment's totals end at its stop: outcomes dated from it on come out of them

From this release a stopped experiment's results measure what its users did before the stop: an
outcome dated at or after `stopped_at` is stored but added to no total, and events after it count
for no metric. Experiments stopped under an older release had every outcome added, whenever dated.
For each user with an outcome dated from a stop on, this counts the total again from their outcomes
dated before it (the sum as two doubles, as totals hold it), whatever the release that stopped it had
added; the downgrade counts it again from all of them, as the older release counts. Either can run
again and changes nothing.

Revision ID: 0020
Revises: 0019
"""
import math
from collections import defaultdict

import sqlalchemy as sa
from alembic import op

revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None

# Every outcome of each user who has one dated from their experiment's stop on, with their arm.
_AFFECTED = sa.text(
    "SELECT o.experiment_key, o.metric, o.user_id, x.arm, o.value, o.ts, e.stopped_at FROM outcomes o "
    "JOIN experiments e ON e.key = o.experiment_key JOIN exposures x ON x.experiment_key = o.experiment_key AND x.user_id = o.user_id "
    "WHERE e.stopped_at IS NOT NULL AND EXISTS (SELECT 1 FROM outcomes a WHERE a.experiment_key = o.experiment_key "
    "AND a.metric = o.metric AND a.user_id = o.user_id AND a.ts >= e.stopped_at)"
)
_SET = sa.text(
    "INSERT INTO user_metric_totals (experiment_key, metric, user_id, arm, total, total_low, first_positive_ts) "
    "VALUES (:key, :metric, :user, :arm, :high, :low, :first) ON CONFLICT (experiment_key, metric, user_id) DO UPDATE SET "
    "total = excluded.total, total_low = excluded.total_low, first_positive_ts = excluded.first_positive_ts"
)


def _count_again(until_the_stop: bool) -> None:
    bind = op.get_bind()
    counted: dict[tuple[str, str, str, str], list[tuple[float, float]]] = defaultdict(list)
    for key, metric, user, arm, value, ts, stopped_at in bind.execute(_AFFECTED):
        kept = counted[(key, metric, user, arm)]  # made for every such user, also one with nothing before the stop
        if not until_the_stop or ts < stopped_at:
            kept.append((float(value), float(ts)))
    rows = []
    for (key, metric, user, arm), kept in sorted(counted.items()):
        values = [v for v, _ in kept]
        high = math.fsum(values)
        first = min((ts for v, ts in kept if v > 0), default=None)
        rows.append({"key": key, "metric": metric, "user": user, "arm": arm, "high": high, "low": math.fsum([*values, -high]), "first": first})
    if rows:
        bind.execute(_SET, rows)


def upgrade() -> None:
    _count_again(until_the_stop=True)


def downgrade() -> None:
    _count_again(until_the_stop=False)
