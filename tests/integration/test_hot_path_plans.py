"""The purchase path's reads are index lookups, whatever the size of the tables.

SQLite's planner uses an index whenever one serves, so its plans are a faithful check
that every table the hot path touches is reached through an index (a ``SCAN`` would
mean a read that grows with the table). PostgreSQL may rightly prefer a sequential
scan on a tiny table, so there the check needs statistics of a real size; SQLite's
answer covers the shape of the SQL.
"""

from __future__ import annotations

import pytest

from royalties.services import purchases

PARAMS = {
    "content_id": "cnt_x",
    "own_scope": "content:cnt_x",
    "code": "abc",
    "buyer": "b",
    "storefront_id": "sf_x",
}


def plan_of(engine, statement, params):
    bound = statement.params(**params)
    sql = str(bound.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        return [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql)]


@pytest.fixture
def sqlite_engine(engine):
    if engine.dialect.name != "sqlite":
        pytest.skip("reads SQLite's query plans")
    return engine


@pytest.mark.parametrize("buyer_kind", ["fan_id", "email", "external_id"])
def test_the_sale_facts_query_only_searches_indexes(sqlite_engine, buyer_kind):
    plan = plan_of(sqlite_engine, purchases._sale_facts_query(buyer_kind), PARAMS)
    assert plan, "no plan"
    assert not [step for step in plan if step.startswith("SCAN")], plan
    for table in ("content", "reward_plans", "share_links", "fraud_signals", "buyer"):
        assert any(step.startswith(f"SEARCH {table} ") for step in plan), (table, plan)


def test_the_upline_query_only_searches_indexes(sqlite_engine):
    plan = plan_of(sqlite_engine, purchases._upline_query(), {"level1": "fan_x", "depth": 4})
    assert not [step for step in plan if step.startswith("SCAN")], plan
    for table in ("fans", "fan_ancestors", "fraud_signals"):
        assert any(step.startswith(f"SEARCH {table} ") for step in plan), (table, plan)
