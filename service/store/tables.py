"""SQLAlchemy 2 tables: the whole persistent schema, one `...Row` class per table.

Timestamps are stored as epoch seconds (double precision) so that day arithmetic
for retention is the same plain SQL on SQLite and PostgreSQL.
"""
from __future__ import annotations

from typing import Any, Optional

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy import true as sa_true
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY, not a BIGINT one.
BigId = BigInteger().with_variant(Integer(), "sqlite")
Epoch = Float(precision=53)


def Str(length: int) -> Any:
    """A string column that compares bytewise on PostgreSQL, as every string does on SQLite.

    A locale's collation costs a strcoll() per comparison in every index an id keys,
    and equality is bytewise under either; one collation for every column gives one
    order everywhere, the same on both stores (migration 0012 says what it saved).
    """
    return String(length).with_variant(String(length, collation="C"), "postgresql")


class Base(DeclarativeBase):
    """Declarative base for every table."""


class ApiKeyRow(Base):
    """An API key; only its SHA-256 is stored."""

    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(Str(128))
    role: Mapped[str] = mapped_column(Str(16))
    key_hash: Mapped[str] = mapped_column(Str(64), unique=True)
    prefix: Mapped[str] = mapped_column(Str(16))
    created_at: Mapped[float] = mapped_column(Epoch)
    revoked_at: Mapped[Optional[float]] = mapped_column(Epoch, nullable=True)


class ConsoleSessionRow(Base):
    """A console sign-in: the browser's cookie holds a random token, this row its SHA-256 and whose key it is.

    So that the cookie never holds the key, and signing out ends the session on the server: a copy of
    the cookie taken before is worthless after.
    """

    __tablename__ = "console_sessions"
    token_hash: Mapped[str] = mapped_column(Str(64), primary_key=True)
    key_id: Mapped[int] = mapped_column(BigId, ForeignKey("api_keys.id"), index=True)
    created_at: Mapped[float] = mapped_column(Epoch, index=True)


class AppStateRow(Base):
    """Small shared settings every worker reads, such as the active model version."""

    __tablename__ = "app_state"
    key: Mapped[str] = mapped_column(Str(64), primary_key=True)
    value: Mapped[str] = mapped_column(Str(256))
    revision: Mapped[int] = mapped_column(BigInteger, default=0)


class ItemRow(Base):
    """A catalogue item."""

    __tablename__ = "items"
    item_id: Mapped[str] = mapped_column(Str(128), primary_key=True)
    title: Mapped[Optional[str]] = mapped_column(Str(512), nullable=True)
    category: Mapped[Optional[str]] = mapped_column(Str(128), nullable=True, index=True)
    available: Mapped[bool] = mapped_column(Boolean, default=True)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[float] = mapped_column(Epoch)
    # The catalogue revision at which its availability or category last changed (or it was added):
    # a worker's view of the catalogue rereads only the items changed since the revision it holds.
    changed_revision: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0", index=True)


class EventRow(Base):
    """A behaviour event; `event_id` makes ingestion idempotent."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(Str(128), unique=True)
    user_id: Mapped[str] = mapped_column(Str(128))
    item_id: Mapped[str] = mapped_column(Str(128))
    type: Mapped[str] = mapped_column(Str(16))
    ts: Mapped[float] = mapped_column(Epoch)
    value: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    received_at: Mapped[float] = mapped_column(Epoch)
    # Cover the serving reads of a user's recent events, and of a known user's purchases alone,
    # so that neither visits the table nor walks events it does not want.
    __table_args__ = (
        Index("ix_events_user_recent", "user_id", "ts", "item_id", "type"),
        # `type` is constant here, but SQLite counts an index covering only when it names it.
        Index("ix_events_user_purchases", "user_id", "ts", "item_id", "type", postgresql_where=text("type = 'purchase'"), sqlite_where=text("type = 'purchase'")),
    )


class UserActivityRow(Base):
    """Each user's behaviour so far, kept up to date as events arrive: targeting and at-risk lists read it."""

    __tablename__ = "user_activity"
    user_id: Mapped[str] = mapped_column(Str(128), primary_key=True)
    first_seen: Mapped[float] = mapped_column(Epoch)
    last_seen: Mapped[float] = mapped_column(Epoch)
    purchases: Mapped[int] = mapped_column(BigInteger, default=0)
    revenue: Mapped[float] = mapped_column(Float, default=0.0)
    # What rounding took from `revenue`, which each batch keeps the correctly rounded total (`user_activity.record`).
    revenue_low: Mapped[float] = mapped_column(Epoch, default=0.0, server_default="0")
    # The at-risk list's order, so that a page is an index range scan.
    __table_args__ = (Index("ix_user_activity_value", revenue.desc(), purchases.desc(), "user_id"),)


class UserCodeRow(Base):
    """A dense integer for each user id, so that the training log stores numbers."""

    __tablename__ = "user_codes"
    code: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(Str(128), unique=True)


class ItemCodeRow(Base):
    """A dense integer for each item id that events name (catalogue or not)."""

    __tablename__ = "item_codes"
    code: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    item_id: Mapped[str] = mapped_column(Str(128), unique=True)


class EventSegmentRow(Base):
    """One accepted event batch in columnar form, for training (see service.stores.event_log)."""

    __tablename__ = "event_segments"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    last_event_id: Mapped[int] = mapped_column(BigInteger)
    events: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class ModelVersionRow(Base):
    """One training run and, once ready, its servable artifact's metadata."""

    __tablename__ = "model_versions"
    version: Mapped[str] = mapped_column(Str(64), primary_key=True)
    status: Mapped[str] = mapped_column(Str(16))
    algorithm: Mapped[str] = mapped_column(Str(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    matrix: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    evaluation: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    error: Mapped[Optional[str]] = mapped_column(Text, nullable=True)
    # Who runs a training run, and when it last said it was alive (see usecases.training_run and usecases.model_training).
    runner: Mapped[Optional[str]] = mapped_column(Str(128), nullable=True)
    heartbeat_at: Mapped[Optional[float]] = mapped_column(Epoch, nullable=True)
    activate_when_ready: Mapped[bool] = mapped_column(Boolean, default=False)
    # The active model's revision when the run was asked for: it activates only over that one.
    activate_over: Mapped[Optional[int]] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[float] = mapped_column(Epoch)
    finished_at: Mapped[Optional[float]] = mapped_column(Epoch, nullable=True)
    training_seconds: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    max_event_id: Mapped[Optional[int]] = mapped_column(BigInteger, nullable=True)
    artifact_sha256: Mapped[Optional[str]] = mapped_column(Str(64), nullable=True)
    # A tuned run's settings as requested, and its trials as they finish.
    tune: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON, nullable=True)
    tuning: Mapped[Optional[list[dict[str, Any]]]] = mapped_column(JSON, nullable=True)


class ModelArtifactRow(Base):
    """The artifact bytes, so that every host sharing the database can load a version."""

    __tablename__ = "model_artifacts"
    version: Mapped[str] = mapped_column(Str(64), ForeignKey("model_versions.version"), primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class ExperimentRow(Base):
    """An experiment definition and its lifecycle status."""

    __tablename__ = "experiments"
    key: Mapped[str] = mapped_column(Str(64), primary_key=True)
    name: Mapped[str] = mapped_column(Str(256))
    description: Mapped[str] = mapped_column(Text, default="")
    type: Mapped[str] = mapped_column(Str(16))
    traffic: Mapped[float] = mapped_column(Float)
    arms: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    metrics: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    primary_metric: Mapped[str] = mapped_column(Str(64))
    bandit: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON, nullable=True)
    status: Mapped[str] = mapped_column(Str(16))
    salt: Mapped[str] = mapped_column(Str(64))
    revision: Mapped[int] = mapped_column(BigInteger, default=1, server_default="1")
    created_at: Mapped[float] = mapped_column(Epoch)
    updated_at: Mapped[float] = mapped_column(Epoch)
    started_at: Mapped[Optional[float]] = mapped_column(Epoch, nullable=True)
    stopped_at: Mapped[Optional[float]] = mapped_column(Epoch, nullable=True)
    targeting: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON, nullable=True)
    analysis: Mapped[Optional[dict[str, Any]]] = mapped_column(JSON, nullable=True)
    guardrails: Mapped[Optional[list[str]]] = mapped_column(JSON, nullable=True)
    # The layer the experiment shares with others, and the positions it owns there from start to stop.
    layer: Mapped[Optional[str]] = mapped_column(Str(64), nullable=True, index=True)
    layer_start: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    layer_end: Mapped[Optional[float]] = mapped_column(Float, nullable=True)


class ExposureRow(Base):
    """A user's first assignment to an experiment: arm, propensity and time."""

    __tablename__ = "exposures"
    experiment_key: Mapped[str] = mapped_column(Str(64), ForeignKey("experiments.key", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[str] = mapped_column(Str(128), primary_key=True)
    arm: Mapped[str] = mapped_column(Str(64))
    probability: Mapped[float] = mapped_column(Float)
    exposed_at: Mapped[float] = mapped_column(Epoch)
    # False while a bandit with an attribution window waits for this pull's outcome or window.
    counted: Mapped[bool] = mapped_column(Boolean, default=True, server_default=sa_true())
    __table_args__ = (
        Index("ix_exposures_arm", "experiment_key", "arm"),
        Index("ix_exposures_waiting", "experiment_key", "exposed_at", postgresql_where=text("NOT counted"), sqlite_where=text("NOT counted")),
    )


class BanditArmStatsRow(Base):
    """Sufficient statistics of one bandit arm, updated with atomic increments."""

    __tablename__ = "bandit_arm_stats"
    experiment_key: Mapped[str] = mapped_column(Str(64), ForeignKey("experiments.key", ondelete="CASCADE"), primary_key=True)
    arm: Mapped[str] = mapped_column(Str(64), primary_key=True)
    pulls: Mapped[int] = mapped_column(BigInteger, default=0)
    reward_sum: Mapped[float] = mapped_column(Float, default=0.0)
    reward_sumsq: Mapped[float] = mapped_column(Float, default=0.0)
    # The users with a non-zero reward, and their squared deviations from their own mean: kept up
    # to date so that the arm's variance stays exact when rewards sit far from zero (pulls still
    # waiting for a reward are zeros, merged back in by service.store.exposures.arm_stats).
    reward_m2: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    reward_count: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class OutcomeRow(Base):
    """A reported outcome; `outcome_id` makes reporting idempotent."""

    __tablename__ = "outcomes"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    outcome_id: Mapped[str] = mapped_column(Str(128), unique=True)
    experiment_key: Mapped[str] = mapped_column(Str(64))
    user_id: Mapped[str] = mapped_column(Str(128))
    metric: Mapped[str] = mapped_column(Str(64))
    value: Mapped[float] = mapped_column(Float)
    ts: Mapped[float] = mapped_column(Epoch)
    received_at: Mapped[float] = mapped_column(Epoch)
    __table_args__ = (
        Index("ix_outcomes_experiment_metric_ts", "experiment_key", "metric", "ts"),
        Index("ix_outcomes_experiment_user", "experiment_key", "user_id"),
    )


class UserMetricTotalRow(Base):
    """A user's running total of one metric in one experiment (the analysed unit)."""

    __tablename__ = "user_metric_totals"
    experiment_key: Mapped[str] = mapped_column(Str(64), primary_key=True)
    metric: Mapped[str] = mapped_column(Str(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(Str(128), primary_key=True)
    arm: Mapped[str] = mapped_column(Str(64))
    total: Mapped[float] = mapped_column(Float, default=0.0)
    # What rounding took from `total` as batches were added to it: the user's value is total + total_low.
    total_low: Mapped[float] = mapped_column(Epoch, default=0.0, server_default="0")
    first_positive_ts: Mapped[Optional[float]] = mapped_column(Epoch, nullable=True)


class RewardStateRow(Base):
    """Where a user stands in their arm's reward schedule, and their points balance."""

    __tablename__ = "reward_states"
    experiment_key: Mapped[str] = mapped_column(Str(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(Str(128), primary_key=True)
    arm: Mapped[str] = mapped_column(Str(64))
    actions: Mapped[int] = mapped_column(BigInteger, default=0)
    rewards: Mapped[int] = mapped_column(BigInteger, default=0)
    balance: Mapped[float] = mapped_column(Float, default=0.0)
    last_reward_at: Mapped[Optional[float]] = mapped_column(Epoch, nullable=True)
    next_eligible_at: Mapped[Optional[float]] = mapped_column(Epoch, nullable=True)


class RewardLedgerRow(Base):
    """Every reward-earning action and what it earned; `action_id` makes it idempotent."""

    __tablename__ = "reward_ledger"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    action_id: Mapped[str] = mapped_column(Str(128), unique=True)
    experiment_key: Mapped[str] = mapped_column(Str(64))
    user_id: Mapped[str] = mapped_column(Str(128))
    arm: Mapped[Optional[str]] = mapped_column(Str(64), nullable=True)
    action: Mapped[str] = mapped_column(Str(64))
    value: Mapped[Optional[float]] = mapped_column(Float, nullable=True)
    ts: Mapped[float] = mapped_column(Epoch)
    sequence: Mapped[int] = mapped_column(BigInteger)
    rewarded: Mapped[bool] = mapped_column(Boolean)
    points: Mapped[float] = mapped_column(Float)
    balance_after: Mapped[float] = mapped_column(Float)
    reason: Mapped[Optional[str]] = mapped_column(Str(256), nullable=True)
    created_at: Mapped[float] = mapped_column(Epoch)
    __table_args__ = (Index("ix_reward_ledger_user", "experiment_key", "user_id", "id"),)
