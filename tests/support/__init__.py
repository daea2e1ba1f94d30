"""Support code shared by the tests and the benchmark, each written once: processes,
bounded waits, ports, the environment of started processes, HTTP on loopback, rules
files, the router CLI, provisioning, in-thread servers, metric values, Redis and the SDK
clients. Nothing here is a test."""
