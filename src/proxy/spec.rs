//! What the daemon is asked to listen on. The config module converts its `[[proxy]]` and
//! `[[webhook]]` tables into these.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::durations;

/// A TCP proxy: every connection accepted on `listen` is piped to `upstream`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpListenerSpec {
    pub name: String,
    /// Port 0 picks a free port; the bound address is reported back.
    pub listen: SocketAddr,
    /// `host:port`, resolved on every new connection.
    pub upstream: String,
}

/// A webhook forwarder: every HTTP request received on `listen` is forwarded to `upstream`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookListenerSpec {
    pub name: String,
    pub listen: SocketAddr,
    /// `http://host:port` with an optional base path that request paths are appended to.
    pub upstream: String,
    /// The caller's client timeout: a request that takes this long counts as a timeout.
    #[serde(with = "durations")]
    pub timeout: Duration,
    /// PEM CA file for an `https` upstream with a private CA (besides the public roots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
}

/// Every listener the daemon should run; the payload of `Configure`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerSet {
    #[serde(default)]
    pub tcp: Vec<TcpListenerSpec>,
    #[serde(default)]
    pub webhooks: Vec<WebhookListenerSpec>,
}

impl ListenerSet {
    /// Listener names must be unique across both kinds: faults address listeners by name.
    pub fn check_names(&self) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        let names = self.tcp.iter().map(|spec| &spec.name);
        for name in names.chain(self.webhooks.iter().map(|spec| &spec.name)) {
            if name.is_empty() {
                return Err("a listener has an empty name".to_owned());
            }
            if !seen.insert(name) {
                return Err(format!("listener name {name:?} is used more than once"));
            }
        }
        Ok(())
    }
}
