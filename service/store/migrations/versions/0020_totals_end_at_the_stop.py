"""A stopped experiment's totals end at its stop: outcomes dated from it on come out of them

From this release a stopped experiment's results measure what its users did before the stop: an
outcome dated at or after `stopped_at` is stored but added to no total, and events after it count
for no metric. Experiments stopped under an older release had every outcome added, whenever dated:
this takes those dated from the stop on back out of the users' totals (each change and what its
rounding loses, as outcome batches add them). The downgrade adds them back, which is what the older
release expects, so that a round trip leaves every total as it was.

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

_AFTER_THE_STOP = sa.text(
    "SELECT o.experiment_key, o.metric, o.user_id, o.value FROM outcomes o JOIN experiments e ON e.key = o.experiment_key "
    "WHERE e.stopped_at IS NOT NULL AND o.ts >= e.stopped_at"
)
# total + change, with what that addition rounds away added to total_low (Fast2Sum, the larger first).
_SHIFT = sa.text(
    "UPDATE user_metric_totals SET total = total + :change, total_low = total_low + "
    "(CASE WHEN ABS(total) >= ABS(:change) THEN (total - (total + :change)) + :change ELSE (:change - (total + :change)) + total END) "
    "WHERE experiment_key = :key AND metric = :metric AND user_id = :user"
)


def _shift(sign: float) -> None:
    bind = op.get_bind()
    values: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for key, metric, user, value in bind.execute(_AFTER_THE_STOP):
        values[(key, metric, user)].append(float(value))
    for (key, metric, user), found in sorted(values.items()):
        # The sum as two doubles, one after the other: one rounded sum (1e12 + 1e-5 is 1e12) would leave a remainder.
        high = math.fsum(found)
        for part in (high, math.fsum([*found, -high])):
            if part != 0:
                bind.execute(_SHIFT, {"change": sign * part, "key": key, "metric": metric, "user": user})


def upgrade() -> None:
    _shift(-1.0)


def downgrade() -> None:
    _shift(1.0)
