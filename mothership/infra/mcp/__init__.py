"""MCP: the tool servers of MCP_SERVERS (``config``) and the worker's connections to them (``client``)."""
