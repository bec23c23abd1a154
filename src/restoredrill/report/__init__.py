"""Reports: the one-screen summary (JUnit comes from pytest itself)."""
