"""The projection kit's pure parts: tables from row types, `reads` and `evolve` folded in
memory (`fold`), and the one statement a joined live view is read by. Against PostgreSQL:
tests/integration/test_kit.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple

import pytest

from domain.ids import OrderId
from domain.order import (
    OrderCancelled,
    OrderExpired,
    OrderLine,
    OrderPlaced,
    PaymentProcessed,
    PaymentRefunded,
)
from projections import sales
from projections.joined import Follows, JoinedTopic, Via
from projections.kit import NotLoaded, Rows, Table, column_type, fold
from tests.kit import bought

NOW = datetime(2026, 12, 5, tzinfo=UTC)
O1, O2 = (OrderId(str(uuid.UUID(int=i))) for i in (1, 2))
LINES = (OrderLine("A", 2, Decimal("2.50")), OrderLine("B", 1, Decimal("1.00")))


def test_columns_follow_the_row_fields() -> None:
    assert column_type("position", int) == "bigint NOT NULL"
    assert column_type("units", int) == "integer NOT NULL"
    assert column_type("revenue", Decimal) == "numeric NOT NULL"
    assert column_type("since", datetime | None) == "timestamptz"
    assert column_type("lines", list[dict[str, Any]]) == "jsonb NOT NULL"
    assert sales.TOTALS.shape.columns[-1] == ("orders_expired", "integer NOT NULL DEFAULT 0")


def test_a_table_is_created_with_its_key_first_rows_and_indexes_named_as_postgres_would() -> None:
    ddl = sales.TOTALS.create_tables("s")
    assert "PRIMARY KEY (id)" in ddl and "VALUES (1, 0, 0, 0, 0, 0, 0, 0)" in ddl
    assert "PRIMARY KEY (customer_id, sku)" in bought.BOUGHT.create_tables("s")
    indexes = sales.PRODUCTS.create_indexes("s")
    # the name PostgreSQL gave the index the hand-written sales made: no second index
    assert "IF NOT EXISTS sales_products_units_sold_sku_idx ON s.sales_products" in indexes
    assert "ADD COLUMN orders_expired integer NOT NULL DEFAULT 0" in sales.TOTALS.create_indexes(
        "s"
    )
    assert sales.SalesProjection.views == ("sales_totals", "sales_products")  # not the lookup


def test_rows_must_be_named_tuples_each_of_its_own_type() -> None:
    class Plain:
        sku: str

    with pytest.raises(TypeError, match="NamedTuple"):
        Table("plain", Plain, key="sku")  # type: ignore[type-var]


def test_a_row_neither_loaded_nor_written_is_asked_for_not_guessed() -> None:
    rows = Rows([sales.PRODUCTS])
    with pytest.raises(NotLoaded, match=r"sales_products\['A'\]"):
        rows.get(sales.PRODUCTS, "A")
    assert Rows([sales.PRODUCTS], absent=True).get(sales.PRODUCTS, "A") is None


def test_a_batch_of_orders_folds_into_totals_rows_per_sku_and_the_lookup() -> None:
    tables = fold(
        sales.SalesProjection(),
        [
            (OrderPlaced(O1, "ann", LINES, Decimal("6.00"), NOW), 1),
            (PaymentProcessed(O1, Decimal("6.00"), Decimal("6.00"), NOW), 2),
            (OrderPlaced(O2, "bob", LINES[:1], Decimal("5.00"), NOW), 3),
            (OrderCancelled(O1, "no", "ann", NOW), 4),
            (PaymentRefunded(O1, Decimal("6.00"), NOW), 5),
        ],
    )
    assert tables["sales_totals"][1] == sales.Totals(1, 2, 1, 0, 1, Decimal(0), 5, 0)
    assert tables["sales_products"] == {
        "A": sales.ProductSales("A", 2, Decimal("5.00"), 4),
        "B": sales.ProductSales("B", 0, Decimal("0.00"), 4),
    }
    assert set(tables["sales_orders"]) == {O1, O2}
    with pytest.raises(ValueError, match="OrderExpired at 6: unknown order"):
        fold(sales.SalesProjection(), [(OrderExpired(OrderId("x"), NOW, NOW), 6)])


def test_a_cancel_names_the_skus_of_its_order_from_the_lookup() -> None:
    projection = sales.SalesProjection()
    cancel = OrderCancelled(O1, "no", "ann", NOW)
    rows = Rows(projection.tables)
    with pytest.raises(NotLoaded):  # first round: the lookup row is loaded first
        list(projection.reads(cancel, rows))
    rows.of(sales.ORDERS)[O1] = sales.OrderLines(O1, [line.as_json() for line in LINES])
    named = {(table.name, key) for table, key in projection.reads(cancel, rows)}
    assert named == {("sales_totals", 1), ("sales_products", "A"), ("sales_products", "B")}


def test_rows_fall_to_nothing_and_are_deleted_and_a_lookup_follows_the_orders() -> None:
    projection = bought.BoughtProjection()
    two_a = (OrderLine("A", 2, Decimal("1.00")),)
    tables = fold(
        projection,
        [
            (OrderPlaced(O1, "ann", LINES, Decimal("6.00"), NOW), 1),
            (OrderPlaced(O2, "ann", two_a, Decimal("2.00"), NOW), 2),
            (OrderCancelled(O1, "no", "ann", NOW), 3),
        ],
    )
    assert tables["kit_buyers"] == {"ann": bought.Buyer("ann", 1, 3)}
    assert tables["kit_bought"] == {("ann", "A"): bought.Bought("ann", "A", 2, 3)}  # B deleted
    assert list(tables["kit_placed"]) == [O2]  # the cancelled order's lookup row is gone


def test_a_joined_view_reads_its_keys_and_every_model_position_in_one_statement() -> None:
    sql = bought.BY_CUSTOMER.statement
    assert bought.BY_CUSTOMER.models == ("kit_bought", "products")
    assert "name = 'kit_bought'" in sql and "name = 'products'" in sql
    assert "JOIN readmodel.kit_bought m ON m.sku = t.sku" in sql
    assert "{keys}" not in sql and "any(ARRAY(SELECT k FROM keys))" in sql
    assert bought.BY_CUSTOMER.since([10, 7]) == [10, 7]  # own table, then products
    with pytest.raises(ValueError, match="`key` or `via`"):
        Follows("products", key="sku", via=Via("kit_bought", on="sku", key="customer_id"))
    with pytest.raises(ValueError, match="follows no table"):
        JoinedTopic("x", "m", "SELECT 1 WHERE k = any({keys})", "k", bought.BoughtView.of, ())


class Pair(NamedTuple):
    a: str
    b: int
    position: int


def test_a_key_of_several_columns_is_a_tuple() -> None:
    table = Table("pairs", Pair, key=("a", "b"))
    assert table.key_of(Pair("x", 2, 9)) == ("x", 2)
    assert Table("pairs_by_a", Pair, key="a").key_of(Pair("x", 2, 9)) == "x"
