# The log check's tests read the same recorded testbed logs as the log sources' tests.
from tests.diagnostics.sources.logs.conftest import matrix, testbed, window

__all__ = ["matrix", "testbed", "window"]
