//! Local servers the lab, the demo and the tests run: nats-server and a throwaway PostgreSQL.
