//! gameday: a terminal game-day console for chaos drills on NATS JetStream,
//! PostgreSQL and outgoing webhooks. See ARCHITECTURE.md for the data flow.

pub mod cli;
pub mod lab;
pub mod proxy;
pub mod services;
