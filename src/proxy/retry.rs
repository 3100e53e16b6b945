//! Spotting retries: a webhook request is a retry when its idempotency key, or else its
//! method, path and body, was seen within the window. Memory is bounded by key count.

use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use hyper::http;

/// Headers that name a logical request across its retries, most specific first.
const KEY_HEADERS: [&str; 2] = ["idempotency-key", "x-request-id"];

pub(crate) struct RetryDetector {
    capacity: usize,
    window: Duration,
    last_seen: HashMap<u64, Instant>,
    /// Insertion order, for eviction; an entry is stale if the key was seen again later.
    order: VecDeque<(u64, Instant)>,
}

impl RetryDetector {
    pub(crate) fn new(capacity: usize, window: Duration) -> RetryDetector {
        RetryDetector {
            capacity,
            window,
            last_seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Records the request and says whether it repeats one seen within the window.
    pub(crate) fn observe(&mut self, key: u64, now: Instant) -> bool {
        self.evict(now);
        let retry = self
            .last_seen
            .get(&key)
            .is_some_and(|seen| now.duration_since(*seen) <= self.window);
        self.last_seen.insert(key, now);
        self.order.push_back((key, now));
        retry
    }

    fn evict(&mut self, now: Instant) {
        while let Some(&(key, seen)) = self.order.front() {
            let expired = now.duration_since(seen) > self.window;
            if !expired
                && self.last_seen.len() < self.capacity
                && self.order.len() < self.capacity * 2
            {
                break;
            }
            self.order.pop_front();
            if self.last_seen.get(&key) == Some(&seen) {
                self.last_seen.remove(&key);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.last_seen.len()
    }
}

/// The key of a request: its idempotency header if it has one, else method, path and body.
pub(crate) fn request_key(
    method: &http::Method,
    path: &str,
    headers: &http::HeaderMap,
    body: &[u8],
) -> u64 {
    let mut hasher = DefaultHasher::new();
    match KEY_HEADERS.iter().find_map(|name| headers.get(*name)) {
        Some(value) => {
            "header".hash(&mut hasher);
            value.as_bytes().hash(&mut hasher);
        }
        None => {
            "content".hash(&mut hasher);
            method.as_str().hash(&mut hasher);
            path.hash(&mut hasher);
            body.hash(&mut hasher);
        }
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    http::HeaderName::from_static(name),
                    http::HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    #[test]
    fn the_same_idempotency_key_is_a_retry_whatever_the_body() {
        let mut detector = RetryDetector::new(100, Duration::from_secs(60));
        let now = Instant::now();
        let keyed = headers(&[("idempotency-key", "task-7")]);
        let first = request_key(&http::Method::POST, "/send", &keyed, b"attempt 1");
        let second = request_key(&http::Method::POST, "/send", &keyed, b"attempt 2");
        assert!(!detector.observe(first, now));
        assert!(detector.observe(second, now));
    }

    #[test]
    fn an_identical_request_without_a_key_is_a_retry_a_different_body_is_not() {
        let mut detector = RetryDetector::new(100, Duration::from_secs(60));
        let now = Instant::now();
        let none = http::HeaderMap::new();
        let a = request_key(&http::Method::POST, "/send", &none, b"{\"task\":1}");
        let b = request_key(&http::Method::POST, "/send", &none, b"{\"task\":2}");
        assert!(!detector.observe(a, now));
        assert!(!detector.observe(b, now));
        assert!(detector.observe(a, now));
    }

    #[test]
    fn keys_older_than_the_window_are_forgotten() {
        let mut detector = RetryDetector::new(100, Duration::from_secs(10));
        let start = Instant::now();
        assert!(!detector.observe(1, start));
        assert!(!detector.observe(1, start + Duration::from_secs(11)));
        assert!(detector.observe(1, start + Duration::from_secs(12)));
    }

    #[test]
    fn memory_stays_bounded_by_the_capacity() {
        let mut detector = RetryDetector::new(1_000, Duration::from_secs(600));
        let now = Instant::now();
        for key in 0..50_000u64 {
            detector.observe(key, now);
        }
        assert!(detector.len() <= 1_000, "{} keys kept", detector.len());
        assert!(detector.order.len() <= 2_000);
        assert!(
            detector.observe(49_999, now),
            "the most recent keys are still known"
        );
    }
}
