import pytest
import sqlalchemy as sa

from lumos_ops.exceptions import DatabaseError
from lumos_ops.pipeline.database import (
    applied_versions,
    check_schema,
    load_migrations,
    make_engine,
    redact_url,
    upgrade,
)

pytestmark = pytest.mark.postgres


def test_upgrade_is_idempotent_and_check_detects_missing_or_edited(db_url, tmp_path):
    engine = make_engine(db_url)
    try:
        with pytest.raises(DatabaseError, match="lumos db upgrade"):
            check_schema(engine)
        migrations = load_migrations()
        assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
        assert upgrade(engine) == [m.version for m in migrations]
        assert upgrade(engine) == []
        assert check_schema(engine) == migrations[-1].version
        assert set(applied_versions(engine)) == {m.version for m in migrations}
        edited = [m if m.version != 1 else type(m)(1, m.name, m.path, m.sql + "\n-- edited") for m in migrations]
        with pytest.raises(DatabaseError, match="never edit applied migrations"):
            check_schema(engine, migrations=edited)
    finally:
        engine.dispose()


def test_failed_migration_rolls_back(db_url, tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "V001__ok.sql").write_text("CREATE SCHEMA IF NOT EXISTS lumos; CREATE TABLE lumos.t1 (a int);")
    (folder / "V002__bad.sql").write_text("CREATE TABLE lumos.t2 (a int); SELECT no_such_function();")
    from lumos_ops.pipeline.database import load_migrations as load

    engine = make_engine(db_url)
    try:
        with pytest.raises(DatabaseError, match="V002__bad.sql"):
            upgrade(engine, migrations=load(folder))
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT to_regclass('lumos.t2')")).scalar() is None
    finally:
        engine.dispose()


def test_roles_views_and_read_only_reader(engine):
    with engine.connect() as conn:
        roles = set(conn.execute(sa.text("SELECT rolname FROM pg_roles WHERE rolname LIKE 'lumos_%'")).scalars())
        assert {"lumos_writer", "lumos_reader"} <= roles
        views = set(conn.execute(sa.text("SELECT table_name FROM information_schema.views "
                                         "WHERE table_schema = 'lumos'")).scalars())
        assert {"latest_coadds", "night_summary"} <= views
        conn.execute(sa.text("SET ROLE lumos_reader"))
        assert conn.execute(sa.text("SELECT count(*) FROM lumos.night_summary")).scalar() == 0
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
            conn.execute(sa.text("INSERT INTO lumos.model_versions (model_version, method, kind) "
                                 "VALUES ('x-1', 'x', 'classical')"))
        conn.rollback()
        conn.execute(sa.text("SET ROLE lumos_writer"))
        conn.execute(sa.text("INSERT INTO lumos.model_versions (model_version, method, kind) "
                             "VALUES ('x-1', 'x', 'classical')"))
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):  # provenance is append-only
            conn.execute(sa.text("DELETE FROM lumos.model_versions"))
        conn.rollback()


def test_urls_are_redacted_and_only_postgres_accepted():
    assert "s3cret" not in redact_url("postgresql://u:s3cret@h/db")
    with pytest.raises(DatabaseError, match="PostgreSQL"):
        make_engine("sqlite:///x.db")


def test_grant_roles_to_login_users(engine):
    from lumos_ops.pipeline.database import grant_roles

    with engine.begin() as conn:
        conn.execute(sa.text("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'alice') "
                             "THEN CREATE ROLE alice LOGIN; END IF; END $$"))
    grant_roles(engine, readers=["alice"])
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT pg_has_role('alice', 'lumos_reader', 'MEMBER')")).scalar()
    with pytest.raises(DatabaseError, match="does not exist"):
        grant_roles(engine, writers=["nobody_here"])


def test_owner_without_createrole_needs_the_admin_step_then_upgrades(capsys):
    """On a fresh cluster (no lumos roles yet) a schema owner without CREATEROLE gets the fix
    instead of V002's "permission denied to create role"; after `lumos db create-roles` as the
    superuser the owner's upgrade succeeds and it can grant the roles."""
    from lumos_ops.cli import main
    from lumos_ops.pipeline.database import CREATE_ROLES_SQL, create_roles
    from lumos_ops.pipeline.local_postgres import LocalPostgres

    with LocalPostgres.start(database="admin") as pg:
        admin = make_engine(pg.url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(sa.text("CREATE ROLE schema_owner LOGIN"))
                conn.execute(sa.text("CREATE ROLE alice LOGIN"))
                conn.execute(sa.text("CREATE DATABASE photometry OWNER schema_owner"))
        finally:
            admin.dispose()
        owner_url = f"postgresql+psycopg2://schema_owner@127.0.0.1:{pg.port}/photometry"
        owner = make_engine(owner_url)
        try:
            with pytest.raises(DatabaseError, match="permission denied|may not create") as info:
                create_roles(owner)
            assert "superuser or a user with CREATEROLE" in str(info.value)
            assert main(["db", "upgrade", "--url", owner_url]) == 2
            err = capsys.readouterr().err
            for part in ("lumos_writer, lumos_reader do not exist", "'schema_owner' may not create them",
                         "lumos db create-roles --url <admin URL> --owner schema_owner",
                         "CREATE ROLE lumos_writer NOLOGIN", "CREATE ROLE lumos_reader NOLOGIN"):
                assert part in err, part
            assert applied_versions(owner) == {}  # nothing half-done, not even the bootstrap

            assert main(["db", "create-roles", "--print-sql"]) == 0
            assert capsys.readouterr().out.strip() == CREATE_ROLES_SQL.strip()
            admin_url = pg.url_for("photometry")
            assert main(["db", "create-roles", "--url", admin_url, "--owner", "schema_owner"]) == 0
            assert "created lumos_writer, lumos_reader" in capsys.readouterr().out
            assert main(["db", "create-roles", "--url", admin_url]) == 0  # idempotent
            assert "already exist" in capsys.readouterr().out

            assert main(["db", "upgrade", "--url", owner_url]) == 0
            assert "applied V001" in capsys.readouterr().out
            assert check_schema(owner) == load_migrations()[-1].version
            assert main(["db", "grant", "--reader", "alice", "--url", owner_url]) == 0
            with owner.connect() as conn:
                assert conn.execute(sa.text("SELECT pg_has_role('alice', 'lumos_reader', 'MEMBER')")).scalar()
                assert conn.execute(sa.text("SELECT tableowner FROM pg_tables WHERE schemaname = 'lumos' "
                                            "AND tablename = 'measurements'")).scalar() == "schema_owner"
        finally:
            owner.dispose()
