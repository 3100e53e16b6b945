//! Fault definitions for both listener kinds, their validation, and the per-connection or
//! per-request coin toss that decides whether a fault applies.

use std::fmt;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::durations;

/// Which way through a TCP proxy a fault acts on, Toxiproxy's `stream`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Client → server.
    Upstream,
    /// Server → client (the default, as in Toxiproxy).
    #[default]
    Downstream,
    Both,
}

impl Direction {
    /// Whether a fault configured with `self` acts on traffic flowing `flow`.
    pub fn covers(self, flow: Direction) -> bool {
        self == Direction::Both || self == flow
    }
}

fn always() -> f64 {
    1.0
}

/// Faults for a TCP proxy. `probability` is drawn once per connection, as Toxiproxy's
/// toxicity is: with 0.3 about 30 % of connections are affected, all of their traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TcpFault {
    /// Delay every chunk by `latency ± rand(jitter)`, never reordering.
    Latency {
        #[serde(with = "durations")]
        latency: Duration,
        #[serde(default, with = "durations")]
        jitter: Duration,
        #[serde(default)]
        direction: Direction,
        #[serde(default = "always")]
        probability: f64,
    },
    /// Cap the throughput at `rate_kbps` kilobits per second.
    Bandwidth {
        rate_kbps: u64,
        #[serde(default)]
        direction: Direction,
        #[serde(default = "always")]
        probability: f64,
    },
    /// Drop all data; with `close_after`, also close the connection after that long.
    Blackhole {
        #[serde(default, with = "durations::option")]
        close_after: Option<Duration>,
        #[serde(default)]
        direction: Direction,
        #[serde(default = "always")]
        probability: f64,
    },
    /// Close the connection with SO_LINGER 0 (both peers see a TCP RST) after `after`.
    Reset {
        #[serde(default, with = "durations")]
        after: Duration,
        #[serde(default = "always")]
        probability: f64,
    },
    /// Split data into pieces of `average_size ± rand(size_variation)` bytes, `delay` apart.
    Slicer {
        average_size: usize,
        #[serde(default)]
        size_variation: usize,
        #[serde(default, with = "durations")]
        delay: Duration,
        #[serde(default)]
        direction: Direction,
        #[serde(default = "always")]
        probability: f64,
    },
    /// Close the connection once `bytes` have passed (counted from when the fault applies).
    LimitData {
        bytes: u64,
        #[serde(default)]
        direction: Direction,
        #[serde(default = "always")]
        probability: f64,
    },
    /// Refuse new connections and close the open ones (the broker is partitioned).
    Down,
}

/// Faults for a webhook forwarder. `probability` is drawn per request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum WebhookFault {
    /// Wait `delay ± rand(jitter)` before forwarding; a caller that gives up meanwhile is
    /// never forwarded.
    Delay {
        #[serde(with = "durations")]
        delay: Duration,
        #[serde(default, with = "durations")]
        jitter: Duration,
        #[serde(default = "always")]
        probability: f64,
    },
    /// Never answer, until the caller gives up.
    Hang {
        #[serde(default = "always")]
        probability: f64,
    },
    /// Answer `status` (with `Retry-After` if given) without forwarding.
    Error {
        status: u16,
        #[serde(default = "always")]
        probability: f64,
        #[serde(default, with = "durations::option")]
        retry_after: Option<Duration>,
    },
    /// Drop the connection with a TCP RST instead of answering.
    Reset {
        #[serde(default = "always")]
        probability: f64,
    },
}

/// A fault for either listener kind; the listener it targets must be of the same kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    Tcp(TcpFault),
    Webhook(WebhookFault),
}

impl From<TcpFault> for Fault {
    fn from(fault: TcpFault) -> Self {
        Fault::Tcp(fault)
    }
}

impl From<WebhookFault> for Fault {
    fn from(fault: WebhookFault) -> Self {
        Fault::Webhook(fault)
    }
}

fn check_probability(probability: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&probability) {
        Ok(())
    } else {
        Err(format!(
            "probability must be between 0 and 1, got {probability}"
        ))
    }
}

impl TcpFault {
    pub fn validate(&self) -> Result<(), String> {
        match self {
            TcpFault::Latency { probability, .. }
            | TcpFault::Blackhole { probability, .. }
            | TcpFault::Reset { probability, .. } => check_probability(*probability),
            TcpFault::Bandwidth {
                rate_kbps,
                probability,
                ..
            } => {
                if *rate_kbps == 0 {
                    return Err(
                        "bandwidth rate_kbps must be above 0 (use blackhole to stop traffic)"
                            .into(),
                    );
                }
                check_probability(*probability)
            }
            TcpFault::Slicer {
                average_size,
                probability,
                ..
            } => {
                if *average_size == 0 {
                    return Err("slicer average_size must be above 0".into());
                }
                check_probability(*probability)
            }
            TcpFault::LimitData { probability, .. } => check_probability(*probability),
            TcpFault::Down => Ok(()),
        }
    }

    pub fn probability(&self) -> f64 {
        match self {
            TcpFault::Latency { probability, .. }
            | TcpFault::Bandwidth { probability, .. }
            | TcpFault::Blackhole { probability, .. }
            | TcpFault::Reset { probability, .. }
            | TcpFault::Slicer { probability, .. }
            | TcpFault::LimitData { probability, .. } => *probability,
            TcpFault::Down => 1.0,
        }
    }
}

impl WebhookFault {
    pub fn validate(&self) -> Result<(), String> {
        match self {
            WebhookFault::Error {
                status,
                probability,
                ..
            } => {
                if !(100..=599).contains(status) {
                    return Err(format!(
                        "error status must be an HTTP status (100-599), got {status}"
                    ));
                }
                check_probability(*probability)
            }
            _ => check_probability(self.probability()),
        }
    }

    pub fn probability(&self) -> f64 {
        match self {
            WebhookFault::Delay { probability, .. }
            | WebhookFault::Hang { probability }
            | WebhookFault::Error { probability, .. }
            | WebhookFault::Reset { probability } => *probability,
        }
    }
}

impl Fault {
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Fault::Tcp(fault) => fault.validate(),
            Fault::Webhook(fault) => fault.validate(),
        }
    }
}

struct Ms(Duration);

impl fmt::Display for Ms {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

struct Odds(f64);

impl fmt::Display for Odds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 < 1.0 {
            write!(f, " p={}", self.0)?;
        }
        Ok(())
    }
}

fn direction_label(direction: Direction) -> &'static str {
    match direction {
        Direction::Upstream => "upstream",
        Direction::Downstream => "downstream",
        Direction::Both => "both ways",
    }
}

impl fmt::Display for TcpFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TcpFault::Latency {
                latency,
                jitter,
                direction,
                probability,
            } => {
                write!(f, "latency {}", Ms(*latency))?;
                if !jitter.is_zero() {
                    write!(f, " ±{}", Ms(*jitter))?;
                }
                write!(f, " {}{}", direction_label(*direction), Odds(*probability))
            }
            TcpFault::Bandwidth {
                rate_kbps,
                direction,
                probability,
            } => {
                write!(
                    f,
                    "bandwidth {rate_kbps} kbit/s {}{}",
                    direction_label(*direction),
                    Odds(*probability)
                )
            }
            TcpFault::Blackhole {
                close_after,
                direction,
                probability,
            } => {
                write!(f, "blackhole {}", direction_label(*direction))?;
                if let Some(close_after) = close_after {
                    write!(f, ", close after {}", Ms(*close_after))?;
                }
                write!(f, "{}", Odds(*probability))
            }
            TcpFault::Reset { after, probability } => {
                write!(f, "reset after {}{}", Ms(*after), Odds(*probability))
            }
            TcpFault::Slicer {
                average_size,
                size_variation,
                delay,
                direction,
                probability,
            } => write!(
                f,
                "slicer {average_size}±{size_variation} B every {} {}{}",
                Ms(*delay),
                direction_label(*direction),
                Odds(*probability)
            ),
            TcpFault::LimitData {
                bytes,
                direction,
                probability,
            } => {
                write!(
                    f,
                    "limit {bytes} B {}{}",
                    direction_label(*direction),
                    Odds(*probability)
                )
            }
            TcpFault::Down => write!(f, "down"),
        }
    }
}

impl fmt::Display for WebhookFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebhookFault::Delay {
                delay,
                jitter,
                probability,
            } => {
                write!(f, "delay {}", Ms(*delay))?;
                if !jitter.is_zero() {
                    write!(f, " ±{}", Ms(*jitter))?;
                }
                write!(f, "{}", Odds(*probability))
            }
            WebhookFault::Hang { probability } => write!(f, "hang{}", Odds(*probability)),
            WebhookFault::Error {
                status,
                probability,
                retry_after,
            } => {
                write!(f, "error {status}")?;
                if let Some(retry_after) = retry_after {
                    write!(f, " retry-after {}", Ms(*retry_after))?;
                }
                write!(f, "{}", Odds(*probability))
            }
            WebhookFault::Reset { probability } => write!(f, "reset{}", Odds(*probability)),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Tcp(fault) => fault.fmt(f),
            Fault::Webhook(fault) => fault.fmt(f),
        }
    }
}

/// A fault as a listener sees it.
#[derive(Debug, Clone)]
pub(crate) struct ActiveFault<F> {
    pub id: String,
    /// Fresh for every new or changed fault, so a change redraws the per-connection toss.
    pub nonce: u64,
    pub fault: F,
    pub since: Instant,
}

/// Whether a fault with `probability` applies to the connection with `seed`. The toss is a
/// pure function of the connection and the fault, so both directions of a connection agree
/// and the answer stays the same for the connection's lifetime.
pub(crate) fn connection_draw(probability: f64, seed: u64, nonce: u64) -> bool {
    if probability >= 1.0 {
        return true;
    }
    if probability <= 0.0 {
        return false;
    }
    let mixed = splitmix64(seed ^ nonce.rotate_left(29));
    unit_interval(mixed) < probability
}

/// Whether a per-request fault with `probability` applies this time.
pub(crate) fn request_draw(probability: f64) -> bool {
    probability >= 1.0 || (probability > 0.0 && rand::random::<f64>() < probability)
}

/// `base ± rand(jitter)`, never negative.
pub(crate) fn jittered(base: Duration, jitter: Duration) -> Duration {
    if jitter.is_zero() {
        return base;
    }
    let offset = (rand::random::<f64>() * 2.0 - 1.0) * jitter.as_secs_f64();
    Duration::from_secs_f64((base.as_secs_f64() + offset).max(0.0))
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn unit_interval(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_read_and_write_as_tagged_json_with_readable_durations() {
        let fault = Fault::Tcp(TcpFault::Latency {
            latency: Duration::from_millis(100),
            jitter: Duration::from_millis(10),
            direction: Direction::Upstream,
            probability: 1.0,
        });
        let json = serde_json::to_string(&fault).unwrap();
        assert_eq!(
            json,
            r#"{"tcp":{"type":"latency","latency":"100ms","jitter":"10ms","direction":"upstream","probability":1.0}}"#
        );
        assert_eq!(serde_json::from_str::<Fault>(&json).unwrap(), fault);

        let minimal: Fault =
            serde_json::from_str(r#"{"webhook":{"type":"error","status":503}}"#).unwrap();
        assert_eq!(
            minimal,
            Fault::Webhook(WebhookFault::Error {
                status: 503,
                probability: 1.0,
                retry_after: None
            })
        );
    }

    #[test]
    fn a_misspelt_fault_field_is_rejected_with_its_name() {
        let err = serde_json::from_str::<Fault>(
            r#"{"tcp":{"type":"latency","latency":"1s","jiter":"5ms"}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("jiter"), "{err}");
        let err = serde_json::from_str::<Fault>(r#"{"tcp":{"type":"latency","latency":"soon"}}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid duration"), "{err}");
    }

    #[test]
    fn out_of_range_parameters_are_refused() {
        let bad_probability = TcpFault::Reset {
            after: Duration::ZERO,
            probability: 1.5,
        };
        assert!(
            bad_probability
                .validate()
                .unwrap_err()
                .contains("probability")
        );
        let bad_status = WebhookFault::Error {
            status: 42,
            probability: 1.0,
            retry_after: None,
        };
        assert!(bad_status.validate().unwrap_err().contains("status"));
        let no_rate = TcpFault::Bandwidth {
            rate_kbps: 0,
            direction: Direction::Both,
            probability: 1.0,
        };
        assert!(no_rate.validate().is_err());
    }

    #[test]
    fn connection_draw_hits_about_the_requested_share_of_connections() {
        let nonce = 0xDEAD_BEEF;
        let hits = (0..10_000u64)
            .filter(|seed| connection_draw(0.3, splitmix64(*seed), nonce))
            .count();
        assert!(
            (2_700..3_300).contains(&hits),
            "{hits} of 10000 connections drawn at p=0.3"
        );
        assert!((0..100).all(|seed| connection_draw(1.0, seed, nonce)));
        assert!((0..100).all(|seed| !connection_draw(0.0, seed, nonce)));
    }

    #[test]
    fn faults_describe_themselves_for_the_operator() {
        let fault = TcpFault::Latency {
            latency: Duration::from_millis(100),
            jitter: Duration::from_millis(10),
            direction: Direction::Both,
            probability: 0.5,
        };
        assert_eq!(fault.to_string(), "latency 100ms ±10ms both ways p=0.5");
        let fault = WebhookFault::Error {
            status: 429,
            probability: 1.0,
            retry_after: Some(Duration::from_secs(2)),
        };
        assert_eq!(fault.to_string(), "error 429 retry-after 2s");
    }
}
