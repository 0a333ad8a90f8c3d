"""What the tests and the benchmarks share: free ports, real server processes, raw sockets, hostile
upstreams. It imports neither tests/ nor bench/ (an import-linter contract)."""
