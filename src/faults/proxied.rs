//! Network and webhook faults: set on a listener of the proxy daemon, which applies them in the
//! data path (`crate::proxy`). The daemon holds them only while this console's lease is alive,
//! so a killed console's faults lapse within seconds even before the ledger is read.

use futures::future::BoxFuture;

use super::{Description, Fault, FaultContext, FaultError, fmt_duration};
use crate::config::Config;
use crate::proxy::{Direction, Fault as ProxyFault, ProxyClient, TcpFault, WebhookFault};

pub struct ProxiedFault {
    id: String,
    listener: String,
    fault: ProxyFault,
}

impl ProxiedFault {
    pub fn new(id: &str, listener: &str, fault: ProxyFault) -> Self {
        ProxiedFault {
            id: id.to_string(),
            listener: listener.to_string(),
            fault,
        }
    }

    fn client<'a>(&self, ctx: &'a FaultContext) -> Result<&'a ProxyClient, FaultError> {
        ctx.proxy
            .as_deref()
            .ok_or_else(|| FaultError::Unavailable("the proxy daemon is not attached".into()))
    }
}

impl Fault for ProxiedFault {
    fn describe(&self, config: &Config) -> Description {
        describe(&self.listener, &self.fault, config)
    }

    fn inject<'a>(&'a mut self, ctx: &'a FaultContext) -> BoxFuture<'a, Result<(), FaultError>> {
        Box::pin(async move {
            let client = self.client(ctx)?;
            // The engine's lease timer reverts it; the daemon's lease guards a dead console.
            client
                .set_fault(&self.id, &self.listener, self.fault.clone(), None)
                .await
                .map(|_| ())
                .map_err(|e| FaultError::Failed(e.to_string()))
        })
    }

    fn dry_run<'a>(
        &'a self,
        ctx: &'a FaultContext,
    ) -> BoxFuture<'a, Result<super::Radius, FaultError>> {
        Box::pin(async move {
            let client = match ctx.proxy.clone() {
                Some(client) => Some(client),
                None => ProxyClient::observe(&ctx.config.console.artifacts)
                    .await
                    .map_err(|e| FaultError::Unavailable(e.to_string()))?
                    .map(std::sync::Arc::new),
            };
            let Some(client) = client else {
                return Ok(super::Radius {
                    lines: vec![format!(
                        "listener {}: the proxy daemon is not running, so no traffic crosses it now",
                        self.listener
                    )],
                    ambiguous: None,
                });
            };
            let status = client
                .status()
                .await
                .map_err(|e| FaultError::Unavailable(e.to_string()))?;
            let listener = status
                .listeners
                .iter()
                .find(|l| l.name == self.listener)
                .ok_or_else(|| {
                    FaultError::Unavailable(format!(
                        "the proxy daemon has no listener {} (no console has configured it)",
                        self.listener
                    ))
                })?;
            let address = listener.bound.unwrap_or(listener.listen);
            let line = match &listener.counters {
                crate::proxy::ListenerCounters::Tcp(tcp) => format!(
                    "proxy {} ({address} → {}): {} open connections cross it now, {} accepted so far",
                    self.listener, listener.upstream, tcp.active, tcp.accepted
                ),
                crate::proxy::ListenerCounters::Webhook(hooks) => format!(
                    "webhook {} ({address} → {}): {} requests in flight now, {} so far",
                    self.listener, listener.upstream, hooks.in_flight, hooks.requests
                ),
            };
            Ok(super::Radius {
                lines: vec![line],
                ambiguous: None,
            })
        })
    }

    fn revert<'a>(&'a mut self, ctx: &'a FaultContext) -> BoxFuture<'a, Result<(), FaultError>> {
        Box::pin(async move {
            let failed = |e: crate::proxy::ClientError| FaultError::Failed(e.to_string());
            if let Some(client) = ctx.proxy.as_deref() {
                return client
                    .clear_fault(&self.id)
                    .await
                    .map(|_| ())
                    .map_err(failed);
            }
            // Reverting from the ledger without attaching (dead-man agent, `recover`): clear it
            // by id if a daemon runs; with no daemon, nothing carries the fault any more.
            match ProxyClient::observe(&ctx.config.console.artifacts).await {
                Ok(Some(client)) => client
                    .clear_fault(&self.id)
                    .await
                    .map(|_| ())
                    .map_err(failed),
                Ok(None) => Ok(()),
                Err(e) => Err(failed(e)),
            }
        })
    }
}

fn direction(d: Direction) -> &'static str {
    match d {
        Direction::Upstream => "client→server",
        Direction::Downstream => "server→client",
        Direction::Both => "both ways",
    }
}

fn chance(p: f64) -> String {
    if p >= 1.0 {
        String::new()
    } else {
        format!(", {:.0}% of connections", p * 100.0)
    }
}

fn describe(listener: &str, fault: &ProxyFault, config: &Config) -> Description {
    let (kind, params) = match fault {
        ProxyFault::Tcp(t) => match t {
            TcpFault::Latency {
                latency,
                jitter,
                direction: d,
                probability,
            } => (
                "latency",
                format!(
                    "{} ±{} {}{}",
                    fmt_duration(*latency),
                    fmt_duration(*jitter),
                    direction(*d),
                    chance(*probability)
                ),
            ),
            TcpFault::Bandwidth {
                rate_kbps,
                direction: d,
                probability,
            } => (
                "bandwidth",
                format!(
                    "{rate_kbps} kbit/s {}{}",
                    direction(*d),
                    chance(*probability)
                ),
            ),
            TcpFault::Blackhole {
                close_after,
                direction: d,
                probability,
            } => (
                "blackhole",
                format!(
                    "drop {} data{}{}",
                    direction(*d),
                    close_after
                        .map(|c| format!(", close after {}", fmt_duration(c)))
                        .unwrap_or_default(),
                    chance(*probability)
                ),
            ),
            TcpFault::Reset { after, probability } => (
                "reset",
                format!("RST after {}{}", fmt_duration(*after), chance(*probability)),
            ),
            TcpFault::Slicer {
                average_size,
                size_variation,
                delay,
                direction: d,
                probability,
            } => (
                "slicer",
                format!(
                    "{average_size}±{size_variation} B pieces {} apart, {}{}",
                    fmt_duration(*delay),
                    direction(*d),
                    chance(*probability)
                ),
            ),
            TcpFault::LimitData {
                bytes,
                direction: d,
                probability,
            } => (
                "limit data",
                format!(
                    "close after {bytes} B {}{}",
                    direction(*d),
                    chance(*probability)
                ),
            ),
            TcpFault::Down => (
                "down",
                "refuse new connections, close open ones".to_string(),
            ),
        },
        ProxyFault::Webhook(w) => {
            let per_request = |p: f64| {
                if p >= 1.0 {
                    String::new()
                } else {
                    format!(", {:.0}% of requests", p * 100.0)
                }
            };
            match w {
                WebhookFault::Delay {
                    delay,
                    jitter,
                    probability,
                } => (
                    "webhook delay",
                    format!(
                        "+{} ±{}{}",
                        fmt_duration(*delay),
                        fmt_duration(*jitter),
                        per_request(*probability)
                    ),
                ),
                WebhookFault::Hang { probability } => (
                    "webhook hang",
                    format!("never answer{}", per_request(*probability)),
                ),
                WebhookFault::Error {
                    status,
                    probability,
                    retry_after,
                } => (
                    "webhook error",
                    format!(
                        "answer {status}{}{}",
                        retry_after
                            .map(|r| format!(" Retry-After {}", fmt_duration(r)))
                            .unwrap_or_default(),
                        per_request(*probability)
                    ),
                ),
                WebhookFault::Reset { probability } => (
                    "webhook reset",
                    format!("drop the connection{}", per_request(*probability)),
                ),
            }
        }
    };
    let blast_radius = match (
        config.proxies.iter().find(|p| p.name == listener),
        config.webhooks.iter().find(|w| w.name == listener),
    ) {
        (Some(p), _) => format!(
            "every connection through proxy {listener} ({} → {})",
            p.listen, p.upstream
        ),
        (_, Some(w)) => format!(
            "every webhook call through {listener} ({} → {})",
            w.listen,
            crate::redact::url(&w.upstream)
        ),
        _ => format!("listener {listener}"),
    };
    Description {
        kind: kind.to_string(),
        params,
        blast_radius,
    }
}
