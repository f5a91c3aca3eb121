"""Migrations build the schema from empty to head on SQLite and PostgreSQL, and it is exactly
the schema the ORM declares."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from latlab.client import Client
from latlab.server.db import create_db_engine, current_revision, head_revision, upgrade_to_head
from latlab.server.embedded import EmbeddedServer
from latlab.server.tables import Base
from latlab.spaces.nb201 import Nb201
from tests.factories import API_KEY, make_settings


def test_migrations_run_from_empty_to_head(empty_db_url: str) -> None:
    engine = create_db_engine(empty_db_url)
    try:
        assert current_revision(engine) is None
        upgrade_to_head(engine)
        assert current_revision(engine) == head_revision()
        tables = set(inspect(engine).get_table_names())
        assert {"devices", "models", "jobs", "measurements", "op_measurements"} <= tables
    finally:
        engine.dispose()


def test_a_server_started_on_an_empty_database_migrates_it(
    tmp_path: Path, empty_db_url: str
) -> None:
    """The other tests start servers on copies of a database migrated once per session; the
    server's own migration on start is this path."""
    with (
        EmbeddedServer(make_settings(tmp_path, empty_db_url)) as server,
        Client(server.url, API_KEY) as client,
    ):
        assert client.models() == []
    engine = create_db_engine(empty_db_url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_migrated_schema_matches_the_orm_tables(empty_db_url: str) -> None:
    engine = create_db_engine(empty_db_url)
    try:
        upgrade_to_head(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        assert diff == []
    finally:
        engine.dispose()


def test_upgrading_twice_is_a_no_op(empty_db_url: str) -> None:
    engine = create_db_engine(empty_db_url)
    try:
        upgrade_to_head(engine)
        upgrade_to_head(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_every_migration_downgrades_to_empty_and_upgrades_again(empty_db_url: str) -> None:
    from alembic import command

    from latlab.server.db import alembic_config

    engine = create_db_engine(empty_db_url)
    try:
        upgrade_to_head(engine)
        command.downgrade(alembic_config(engine), "base")
        assert current_revision(engine) is None
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        upgrade_to_head(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_replicas_starting_at_once_migrate_once(empty_db_url: str) -> None:
    """Several server processes started together on an empty database (compose ``--scale``,
    a rolling deploy): one migrates, the others wait for it and find the schema at head."""
    engines = [create_db_engine(empty_db_url) for _ in range(4)]
    start = threading.Barrier(len(engines))
    errors: list[BaseException] = []

    def upgrade(engine: Engine) -> None:
        start.wait()
        try:
            upgrade_to_head(engine)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=upgrade, args=(e,)) for e in engines]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert errors == []
        assert current_revision(engines[0]) == head_revision()
    finally:
        for e in engines:
            e.dispose()


def test_upgrading_renumbers_stored_nas_bench_201_rows_to_the_benchmark_index(
    empty_db_url: str,
) -> None:
    """Rows written before 0005 carry the base-5 index; from 0005 on the index is the benchmark's
    own, so a join with its accuracies by index stays right."""
    from alembic import command

    from latlab.server.db import alembic_config

    space = Nb201()
    archs = [space.from_index(i) for i in (0, 1, 9, 123)]
    engine = create_db_engine(empty_db_url)
    try:
        command.upgrade(alembic_config(engine), "0004")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO datasets (id, name, space, space_params, source, state, "
                    "created_at) VALUES ('d1', 'old', 'nb201', '{}', 'campaign', 'done', :now)"
                ),
                {"now": datetime.now(UTC)},
            )
            conn.execute(
                text(
                    "INSERT INTO dataset_archs (dataset_id, position, arch, arch_index) "
                    "VALUES ('d1', :position, :arch, :index)"
                ),
                [
                    {"position": i, "arch": a.string, "index": str(a.enum_index)}
                    for i, a in enumerate(archs)
                ],
            )
        upgrade_to_head(engine)
        stored = stored_indices(engine)
        assert stored == {a.string: str(a.index) for a in archs}
        assert stored[archs[1].string] == "1"  # the README's old example 11791
        command.downgrade(alembic_config(engine), "0004")
        assert stored_indices(engine) == {a.string: str(a.enum_index) for a in archs}
    finally:
        engine.dispose()


def stored_indices(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT arch, arch_index FROM dataset_archs")).all()
    return {arch: index for arch, index in rows}


def test_upgrading_fills_the_runtime_identity_columns_from_stored_configs(
    empty_db_url: str,
) -> None:
    """0006 reads each stored job config for the runtime, provider and identity key that
    claims and LUT builds then match in SQL: a job and its measurement stored before it get
    the values a job created now would get."""
    from alembic import command

    from latlab.runtimes import stored_config
    from latlab.server.db import alembic_config

    config = {"runtime": "litert", "threads": 2, "delegate": "xnnpack"}
    expected = stored_config(config)
    now = datetime.now(UTC)
    engine = create_db_engine(empty_db_url)
    try:
        command.upgrade(alembic_config(engine), "0005")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO devices (id, name, token_hash, descriptor, created_at, "
                    "last_seen_at) VALUES ('dev', 'phone', 'h', '{}', :now, :now)"
                ),
                {"now": now},
            )
            conn.execute(
                text(
                    "INSERT INTO models (id, format, filename, size_bytes, summary, created_at) "
                    "VALUES ('m', 'tflite', 'm.tflite', 1, '{}', :now)"
                ),
                {"now": now},
            )
            conn.execute(
                text(
                    "INSERT INTO jobs (id, model_id, config, dedup_key, state, attempts, "
                    "max_attempts, created_at, updated_at) VALUES ('j', 'm', :config, 'k', "
                    "'done', 1, 3, :now, :now)"
                ),
                {"config": json.dumps(config), "now": now},
            )
            conn.execute(
                text(
                    "INSERT INTO measurements (job_id, model_id, device_id, runtime, "
                    "runtime_version, provider, threads, protocol_version, agent_version, "
                    "input_shapes, config, warmup_n, warmup_total_ms, n, median_ms, samples_ms, "
                    "timing_wall_s, created_at) VALUES ('j', 'm', 'dev', 'litert', '1', "
                    "'xnnpack', 2, '1', '0', '{}', :config, 1, 1.0, 1, 1.0, '[1.0]', 1.0, :now)"
                ),
                {"config": json.dumps(config), "now": now},
            )
        upgrade_to_head(engine)
        with engine.connect() as conn:
            job = conn.execute(text("SELECT runtime, provider, runtime_identity FROM jobs")).one()
            measured = conn.execute(text("SELECT runtime_identity FROM measurements")).scalar()
        assert tuple(job) == ("litert", expected.provider, expected.identity_key())
        assert measured == expected.identity_key()
    finally:
        engine.dispose()


def test_upgrading_assesses_the_measurements_stored_before_verdicts(empty_db_url: str) -> None:
    """0009 gives every measured row the verdict and interval the server gives a new result,
    from its stored samples and host report; an imported row keeps none."""
    from alembic import command

    from latlab.quality import assess
    from latlab.server.db import alembic_config

    now = datetime.now(UTC)
    steady = [1.0 + 0.001 * (i % 5) for i in range(60)]
    engine = create_db_engine(empty_db_url)
    try:
        command.upgrade(alembic_config(engine), "0008")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO devices (id, name, token_hash, descriptor, created_at, "
                    "last_seen_at) VALUES ('dev', 'cpu', 'h', '{}', :now, :now)"
                ),
                {"now": now},
            )
            for source, samples, host in (
                ("measured", steady, {"other_busy_pct": 30.0}),
                ("measured", steady, {}),
                ("measured", [1.0, 2.0], {}),
                ("imported", [], None),
            ):
                conn.execute(
                    text(
                        "INSERT INTO measurements (source, device_id, runtime, runtime_version, "
                        "provider, threads, protocol_version, agent_version, input_shapes, "
                        "config, warmup_n, warmup_total_ms, n, median_ms, samples_ms, "
                        "provenance, timing_wall_s, created_at) VALUES (:source, 'dev', 'ort', "
                        "'1', 'cpu', 1, '1', '0', '{}', '{}', 1, 1.0, :n, 1.0, :samples, "
                        ":provenance, 1.0, :now)"
                    ),
                    {
                        "source": source,
                        "n": len(samples),
                        "samples": json.dumps(samples),
                        "provenance": json.dumps({"host": host} if host is not None else {}),
                        "now": now,
                    },
                )
        upgrade_to_head(engine)
        with engine.connect() as conn:
            rows = conn.execute(
                text("SELECT verdict, ci_low_ms, ci_high_ms FROM measurements ORDER BY id")
            ).all()
    finally:
        engine.dispose()
    assert [r.verdict for r in rows] == ["interfered", "ok", "unknown", None]
    expected = assess(steady)
    assert (rows[1].ci_low_ms, rows[1].ci_high_ms) == (expected.ci_low_ms, expected.ci_high_ms)
