//! The webhook forwarder: an HTTP/1.1 server that forwards every request to the upstream,
//! applies webhook faults, and records each request as the caller experienced it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::http::uri::{Authority, PathAndQuery};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri, Version};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::faults::{ActiveFault, WebhookFault, jittered, request_draw};
use super::protocol::{ProxyEvent, WebhookCounters, WebhookOutcome, WebhookRecord};
use super::retry::{RetryDetector, request_key};
use super::spec::WebhookListenerSpec;
use super::tcp::bind_listener;
use crate::redact;

/// The faults on one webhook listener, as published by the daemon.
pub(crate) type WebhookFaults = Arc<Vec<ActiveFault<WebhookFault>>>;

/// How many request keys retry detection remembers, and for how long.
const RETRY_MEMORY: usize = 10_000;
const RETRY_WINDOW: Duration = Duration::from_secs(15 * 60);
/// A hung request (or a slow upstream) is cut off this long after the caller's timeout, in
/// case the caller never gives up.
const GIVE_UP_GRACE: Duration = Duration::from_secs(30);
const UPSTREAM_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Headers that describe one hop, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// A running webhook forwarder.
pub(crate) struct WebhookForwarder {
    shared: Arc<Shared>,
    bound: SocketAddr,
    task: JoinHandle<()>,
}

struct Shared {
    name: String,
    upstream: Upstream,
    timeout: Duration,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    faults: watch::Receiver<WebhookFaults>,
    retries: Mutex<RetryDetector>,
    counters: Counters,
    events: broadcast::Sender<ProxyEvent>,
    /// Cancelled when the listener stops: open connections close.
    stopped: CancellationToken,
}

/// Public roots, and the private CA of `ca_file` when there is one.
fn tls_config(ca_file: Option<&std::path::Path>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// `http://host:port[/base]`, split for building request URIs.
#[derive(Debug)]
struct Upstream {
    https: bool,
    authority: Authority,
    base_path: String,
}

impl Upstream {
    /// Errors quote the upstream masked: they reach the daemon's log and the status line.
    fn parse(text: &str) -> Result<Upstream, String> {
        let shown = redact::url(text);
        let uri: Uri = text
            .parse()
            .map_err(|err| format!("upstream {shown:?} is not a URL: {err}"))?;
        let https = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(format!(
                    "upstream {shown:?} must start with http:// or https://"
                ));
            }
        };
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("upstream {shown:?} has no host"))?;
        if uri.query().is_some() {
            return Err(format!("upstream {shown:?} must not have a query string"));
        }
        Ok(Upstream {
            https,
            authority,
            base_path: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    /// `host:port` without any `user:password@`, for messages.
    fn host(&self) -> &str {
        let authority = self.authority.as_str();
        authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host)
    }

    fn uri_for(&self, request: &Uri) -> Result<Uri, String> {
        let path = request.path_and_query().map_or("/", PathAndQuery::as_str);
        let target = format!("{}{}", self.base_path, path);
        Uri::builder()
            .scheme(if self.https { "https" } else { "http" })
            .authority(self.authority.clone())
            .path_and_query(target)
            .build()
            .map_err(|err| format!("cannot build the upstream URI: {err}"))
    }
}

#[derive(Default)]
struct Counters {
    in_flight: AtomicU64,
    requests: AtomicU64,
    forwarded: AtomicU64,
    timeouts: AtomicU64,
    upstream_errors: AtomicU64,
    client_gone: AtomicU64,
    retries: AtomicU64,
    faulted: AtomicU64,
    statuses: Mutex<BTreeMap<u16, u64>>,
}

impl Counters {
    fn count(&self, record: &WebhookRecord, forwarded: bool) {
        let bump = |counter: &AtomicU64| counter.fetch_add(1, Ordering::Relaxed);
        bump(&self.requests);
        if forwarded {
            bump(&self.forwarded);
        }
        match record.outcome {
            WebhookOutcome::Timeout => bump(&self.timeouts),
            WebhookOutcome::UpstreamError(_) => bump(&self.upstream_errors),
            WebhookOutcome::ClientGone => bump(&self.client_gone),
            WebhookOutcome::Ok | WebhookOutcome::Reset => 0,
        };
        if record.retry {
            bump(&self.retries);
        }
        if record.fault.is_some() {
            bump(&self.faulted);
        }
        if let Some(status) = record.status {
            *self
                .statuses
                .lock()
                .expect("statuses lock")
                .entry(status)
                .or_default() += 1;
        }
    }

    fn snapshot(&self) -> WebhookCounters {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        WebhookCounters {
            in_flight: load(&self.in_flight),
            requests: load(&self.requests),
            forwarded: load(&self.forwarded),
            timeouts: load(&self.timeouts),
            upstream_errors: load(&self.upstream_errors),
            client_gone: load(&self.client_gone),
            retries: load(&self.retries),
            faulted: load(&self.faulted),
            statuses: self.statuses.lock().expect("statuses lock").clone(),
        }
    }
}

impl WebhookForwarder {
    /// Binds now (so the caller learns the port or the error) and serves in the background.
    pub(crate) fn start(
        spec: &WebhookListenerSpec,
        faults: watch::Receiver<WebhookFaults>,
        events: broadcast::Sender<ProxyEvent>,
    ) -> Result<WebhookForwarder, String> {
        let upstream = Upstream::parse(&spec.upstream)?;
        let listener =
            bind_listener(spec.listen).map_err(|err| format!("bind {}: {err}", spec.listen))?;
        let bound = listener.local_addr().map_err(|err| err.to_string())?;

        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(UPSTREAM_CONNECT_TIMEOUT));
        // The connector takes http:// as well; the tunnel is TLS only for https:// upstreams.
        connector.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls_config(spec.ca_file.as_deref())?)
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);

        let shared = Arc::new(Shared {
            name: spec.name.clone(),
            upstream,
            timeout: spec.timeout,
            client,
            faults,
            retries: Mutex::new(RetryDetector::new(RETRY_MEMORY, RETRY_WINDOW)),
            counters: Counters::default(),
            events,
            stopped: CancellationToken::new(),
        });
        info!(listener = %spec.name, %bound, upstream = %redact::url(&spec.upstream), "webhook forwarder listening");
        let task = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(WebhookForwarder {
            shared,
            bound,
            task,
        })
    }

    pub(crate) fn bound(&self) -> SocketAddr {
        self.bound
    }

    pub(crate) fn counters(&self) -> WebhookCounters {
        self.shared.counters.snapshot()
    }

    /// Stops accepting, closes open connections, and waits until the listen socket is closed.
    pub(crate) async fn stop(self) {
        self.shared.stopped.cancel();
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                debug!(listener = %shared.name, %peer, "accepted");
                tokio::spawn(serve_connection(stream, shared.clone()));
            }
            Err(err) => {
                warn!(listener = %shared.name, "accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    // A second descriptor for the same socket, kept out of hyper's hands so a `reset` fault
    // can set SO_LINGER 0 and make the final close send RST.
    let Ok(descriptor) = stream.as_fd().try_clone_to_owned() else {
        return;
    };
    let resetter = TcpSocket::from_std_stream(std::net::TcpStream::from(descriptor));
    let reset = CancellationToken::new();
    let service = {
        let shared = shared.clone();
        let reset = reset.clone();
        service_fn(move |request| handle(shared.clone(), reset.clone(), request))
    };
    let mut connection = Box::pin(
        http1::Builder::new()
            .timer(TokioTimer::new())
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service),
    );
    let reset_requested = tokio::select! {
        _ = connection.as_mut() => false,
        _ = reset.cancelled() => true,
        _ = shared.stopped.cancelled() => false,
    };
    if reset_requested {
        let _ = resetter.set_zero_linger();
    }
    // hyper's descriptor goes first, so the last close (with linger 0 on reset) is ours.
    drop(connection);
    drop(resetter);
}

/// Finishes the request's record exactly once: explicitly with an answer, or on drop when
/// hyper abandons the request because the caller hung up.
struct PendingRecord {
    shared: Arc<Shared>,
    started: Instant,
    record: Option<WebhookRecord>,
    body_received: bool,
    forwarded: bool,
}

impl PendingRecord {
    fn new(shared: Arc<Shared>, method: &Method) -> PendingRecord {
        shared.counters.in_flight.fetch_add(1, Ordering::Relaxed);
        let record = WebhookRecord {
            webhook: shared.name.clone(),
            started_at: Utc::now(),
            method: method.to_string(),
            latency: Duration::ZERO,
            status: None,
            outcome: WebhookOutcome::Ok,
            retry: false,
            fault: None,
        };
        PendingRecord {
            shared,
            started: Instant::now(),
            record: Some(record),
            body_received: false,
            forwarded: false,
        }
    }

    fn record_mut(&mut self) -> &mut WebhookRecord {
        self.record.as_mut().expect("record is finished only once")
    }

    fn finish(&mut self, status: Option<u16>, outcome: WebhookOutcome) {
        let Some(mut record) = self.record.take() else {
            return;
        };
        record.latency = self.started.elapsed();
        record.status = status;
        record.outcome = match outcome {
            WebhookOutcome::Ok if record.latency >= self.shared.timeout => WebhookOutcome::Timeout,
            outcome => outcome,
        };
        self.shared
            .counters
            .in_flight
            .fetch_sub(1, Ordering::Relaxed);
        self.shared.counters.count(&record, self.forwarded);
        debug!(listener = %record.webhook, latency = ?record.latency, status = ?record.status, outcome = ?record.outcome, "webhook");
        let _ = self.shared.events.send(ProxyEvent::Webhook(record));
    }

    /// Records the answer the caller is about to get and hands it back.
    fn answer(
        &mut self,
        response: Response<Full<Bytes>>,
        outcome: WebhookOutcome,
    ) -> Response<Full<Bytes>> {
        self.finish(Some(response.status().as_u16()), outcome);
        response
    }
}

impl Drop for PendingRecord {
    fn drop(&mut self) {
        // Dropped unfinished: the caller closed the connection before its answer.
        let outcome = if self.body_received {
            WebhookOutcome::Timeout
        } else {
            WebhookOutcome::ClientGone
        };
        self.finish(None, outcome);
    }
}

fn plain_response(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Picks the first fault whose per-request toss comes up.
fn pick_fault(faults: &WebhookFaults) -> Option<(String, WebhookFault)> {
    faults
        .iter()
        .find(|active| request_draw(active.fault.probability()))
        .map(|active| (active.id.clone(), active.fault.clone()))
}

async fn handle(
    shared: Arc<Shared>,
    reset: CancellationToken,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut record = PendingRecord::new(shared.clone(), request.method());
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            record.finish(None, WebhookOutcome::ClientGone);
            return Ok(plain_response(
                StatusCode::BAD_REQUEST,
                "incomplete request body\n".into(),
            ));
        }
    };
    record.body_received = true;
    let key = request_key(&parts.method, parts.uri.path(), &parts.headers, &body);
    record.record_mut().retry = shared
        .retries
        .lock()
        .expect("retry lock")
        .observe(key, Instant::now());

    let fault = pick_fault(&shared.faults.borrow());
    if let Some((id, fault)) = fault {
        record.record_mut().fault = Some(id);
        match fault {
            WebhookFault::Delay { delay, jitter, .. } => {
                tokio::time::sleep(jittered(delay, jitter)).await
            }
            WebhookFault::Hang { .. } => {
                tokio::time::sleep(shared.timeout + GIVE_UP_GRACE).await;
                record.finish(None, WebhookOutcome::Timeout);
                reset.cancel();
                return std::future::pending().await;
            }
            WebhookFault::Error {
                status,
                retry_after,
                ..
            } => {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let mut response =
                    plain_response(status, format!("{status} injected by gameday\n"));
                if let Some(retry_after) = retry_after {
                    let seconds = retry_after.as_secs_f64().ceil() as u64;
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                }
                return Ok(record.answer(response, WebhookOutcome::Ok));
            }
            WebhookFault::Reset { .. } => {
                record.finish(None, WebhookOutcome::Reset);
                reset.cancel();
                return std::future::pending().await;
            }
        }
    }

    let give_up = shared.timeout + GIVE_UP_GRACE;
    match tokio::time::timeout(give_up, forward(&shared, parts, body)).await {
        Ok(Ok(response)) => {
            record.forwarded = true;
            Ok(record.answer(response, WebhookOutcome::Ok))
        }
        Ok(Err(reason)) => {
            // The reason goes into the record, the counters' consumers and the log: a client
            // error may quote the request URI, whose path can hold a bot token.
            let reason = redact::free_text(&reason).into_owned();
            let response = plain_response(
                StatusCode::BAD_GATEWAY,
                format!(
                    "gameday: upstream {} failed: {reason}\n",
                    shared.upstream.host()
                ),
            );
            Ok(record.answer(response, WebhookOutcome::UpstreamError(reason)))
        }
        Err(_) => {
            let response = plain_response(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "gameday: upstream gave no answer within {}\n",
                    humantime::format_duration(give_up)
                ),
            );
            Ok(record.answer(response, WebhookOutcome::Timeout))
        }
    }
}

fn copy_end_to_end_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        // Host and length are set for the upstream hop; `Expect` was answered here already.
        let recomputed = [header::HOST, header::CONTENT_LENGTH, header::EXPECT];
        if !HOP_BY_HOP.contains(name) && !recomputed.contains(name) {
            to.append(name.clone(), value.clone());
        }
    }
}

/// Sends the request upstream and reads the whole answer.
async fn forward(
    shared: &Shared,
    parts: hyper::http::request::Parts,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, String> {
    let mut upstream_request = Request::new(Full::new(body));
    *upstream_request.method_mut() = parts.method;
    *upstream_request.uri_mut() = shared.upstream.uri_for(&parts.uri)?;
    *upstream_request.version_mut() = Version::HTTP_11;
    copy_end_to_end_headers(&parts.headers, upstream_request.headers_mut());

    let response = shared
        .client
        .request(upstream_request)
        .await
        .map_err(|err| error_chain(&err))?;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|err| format!("reading the answer: {}", error_chain(&err)))?
        .to_bytes();
    let mut answer = Response::new(Full::new(body));
    *answer.status_mut() = parts.status;
    copy_end_to_end_headers(&parts.headers, answer.headers_mut());
    Ok(answer)
}

/// "client error (Connect): tcp connect error: Connection refused (os error 111)" rather
/// than hyper's bare top-level message.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls_keep_their_base_path_and_the_request_path_and_query() {
        let upstream = Upstream::parse("http://127.0.0.1:9000/hooks/").unwrap();
        let uri = upstream
            .uri_for(&"/bot1/sendMessage?chat=5".parse().unwrap())
            .unwrap();
        assert_eq!(
            uri.to_string(),
            "http://127.0.0.1:9000/hooks/bot1/sendMessage?chat=5"
        );
        let bare = Upstream::parse("http://sink:80").unwrap();
        assert_eq!(
            bare.uri_for(&"/".parse().unwrap()).unwrap().to_string(),
            "http://sink:80/"
        );
    }

    #[test]
    fn upstreams_other_than_http_and_https_are_refused_with_a_reason() {
        let tls = Upstream::parse("https://example.org/hooks/").unwrap();
        assert_eq!(
            tls.uri_for(&"/send".parse().unwrap()).unwrap().to_string(),
            "https://example.org/hooks/send"
        );
        assert!(
            Upstream::parse("ftp://example.org")
                .unwrap_err()
                .contains("http:// or https://")
        );
        assert!(Upstream::parse("not a url").is_err());
        assert!(
            Upstream::parse("http://h:1/p?q=1")
                .unwrap_err()
                .contains("query")
        );
    }

    #[test]
    fn upstream_secrets_stay_out_of_errors_and_messages() {
        for bad in [
            "ftp://api.example.org/bot123456:SECRETTOKEN/",
            "http://h:1/bot123456:SECRETTOKEN/?q=1",
        ] {
            let err = Upstream::parse(bad).unwrap_err();
            assert!(!err.contains("SECRETTOKEN"), "{err}");
            assert!(err.contains("bot***"), "{err}");
        }
        let upstream = Upstream::parse("http://user:pw@127.0.0.1:9000/bot1:TOKEN/").unwrap();
        assert_eq!(upstream.host(), "127.0.0.1:9000");
    }
}
