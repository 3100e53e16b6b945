//! A circuit breaker for the API's database path.
//!
//! When the database cannot be reached, every request that needs it would wait out the pool
//! timeout. After such a failure the breaker refuses those requests at once for one cooldown,
//! then lets a single request probe the database again; the others keep failing fast until the
//! probe succeeds.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Closed,
    Open { until: Instant, cause: String },
    Probing { cause: String },
}

#[derive(Debug)]
pub(crate) struct Breaker {
    state: Mutex<State>,
    cooldown: Duration,
}

/// Permission to use the database; report how it went with [`Pass::succeeded`] or
/// [`Pass::failed`]. A probe that is dropped unreported (its request timed out) counts as failed.
#[must_use]
pub(crate) struct Pass {
    breaker: Arc<Breaker>,
    probe: bool,
    reported: bool,
}

impl Breaker {
    pub fn new(cooldown: Duration) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::Closed),
            cooldown,
        })
    }

    /// A pass to use the database, or why not now.
    pub fn admit(self: &Arc<Self>) -> Result<Pass, String> {
        let mut state = self.lock();
        let probe = match &*state {
            State::Closed => false,
            State::Open { until, cause } if Instant::now() < *until => return Err(cause.clone()),
            State::Open { cause, .. } => {
                *state = State::Probing {
                    cause: cause.clone(),
                };
                true
            }
            State::Probing { cause } => return Err(cause.clone()),
        };
        Ok(Pass {
            breaker: self.clone(),
            probe,
            reported: false,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn open(&self, cause: String) {
        *self.lock() = State::Open {
            until: Instant::now() + self.cooldown,
            cause,
        };
    }
}

impl Pass {
    pub fn succeeded(mut self) {
        self.reported = true;
        *self.breaker.lock() = State::Closed;
    }

    /// Opens the breaker when the error says the database is unreachable; other errors (a
    /// rejected statement, say) prove it is there.
    pub fn failed(mut self, error: &sqlx::Error) {
        self.reported = true;
        if unreachable(error) {
            self.breaker.open(error.to_string());
        } else {
            *self.breaker.lock() = State::Closed;
        }
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if self.probe && !self.reported {
            self.breaker
                .open("the database did not answer the probe in time".to_string());
        }
    }
}

fn unreachable(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(breaker: &Breaker) -> State {
        breaker.lock().clone()
    }

    #[test]
    fn an_unreachable_database_fails_requests_fast_for_the_cooldown() {
        let breaker = Breaker::new(Duration::from_secs(3600));
        breaker
            .admit()
            .expect("closed at first")
            .failed(&sqlx::Error::PoolTimedOut);
        let refused = breaker.admit().err().expect("open after a pool timeout");
        assert!(refused.contains("pool timed out"), "{refused}");
    }

    #[test]
    fn after_the_cooldown_one_probe_decides() {
        let breaker = Breaker::new(Duration::ZERO);
        breaker
            .admit()
            .expect("closed at first")
            .failed(&sqlx::Error::PoolTimedOut);
        let probe = breaker.admit().expect("one probe after the cooldown");
        assert!(breaker.admit().is_err(), "only one probe at a time");
        probe.succeeded();
        assert_eq!(state(&breaker), State::Closed);
        breaker.admit().expect("closed again").succeeded();
    }

    #[test]
    fn a_probe_that_never_reports_opens_the_breaker_again() {
        let breaker = Breaker::new(Duration::ZERO);
        breaker
            .admit()
            .expect("closed")
            .failed(&sqlx::Error::PoolTimedOut);
        drop(breaker.admit().expect("probe"));
        assert!(matches!(state(&breaker), State::Open { .. }));
    }

    #[test]
    fn statement_errors_do_not_open_the_breaker() {
        let breaker = Breaker::new(Duration::from_secs(1));
        breaker
            .admit()
            .expect("closed")
            .failed(&sqlx::Error::RowNotFound);
        assert_eq!(state(&breaker), State::Closed);
    }
}
