"""The model-based test of the whole service (test_shop_model.py): shared machinery
(machine.py, db.py) and one module per feature (features/)."""

import pytest

# Their asserts are the test's: shown with their values when they fail, as in a test module.
pytest.register_assert_rewrite("tests.model.machine", "tests.model.db", "tests.model.features")
