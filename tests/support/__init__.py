"""Support code shared by the tests and the benchmark: free ports, bounded waits,
and processes with logs. Nothing here is a test."""
