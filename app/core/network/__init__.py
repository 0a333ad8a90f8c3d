"""Where a request may go: public addresses, hosts the operator trusts, HTTP(S) proxies."""
