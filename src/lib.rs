//! gameday: a terminal game-day console for chaos drills on NATS JetStream,
//! PostgreSQL and outgoing webhooks. See ARCHITECTURE.md for the data flow.

pub mod app;
pub mod bench;
pub mod check;
pub mod cli;
pub mod config;
pub mod connect;
pub mod console;
pub mod demo;
pub mod dry_run;
pub mod faults;
pub mod guard;
pub mod http_client;
pub mod keymap;
pub mod lab;
pub mod ledger;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod redact;
pub mod report;
pub mod run;
pub mod scenario;
pub mod services;
pub mod session;
pub mod snapshot;
pub mod sources;
pub mod state;
pub mod terminal;
pub mod theme;
pub mod timeline;
pub mod toml_input;
pub mod ui;
pub mod watch;
