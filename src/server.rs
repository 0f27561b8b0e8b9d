//! The HTTPS receiver: accepts TCP, completes TLS (with the client certificate check), serves
//! HTTP/1.1 and HTTP/2, and routes the webhook path to the challenge (GET) and to delivery
//! (POST). Everything else is 404 or 405. Every refusal is a short JSON reason and a log line
//! naming the peer, never a secret.
//!
//! Limits: bodies over [`MAX_BODY_BYTES`] get 413; headers are bounded in size and must
//! arrive within the request timeout, as must the TLS handshake and the body; connections
//! with no request in flight close after the same timeout; at most `server.max_connections`
//! are served at once, and when all are taken the one idle the longest gives its slot up
//! (the rest wait for one). Connections still in their TLS handshake are bounded too: beyond
//! the bound the oldest is dropped, so a flood of idle connections cannot crowd out real
//! deliveries.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use crate::auth::{self, FailureThrottle, PeerCertificate};
use crate::config::{ClientCertMode, Config};
use crate::lock::MutexExt as _;
use crate::payload;
use crate::store::{Delivery, Store};
use crate::text::shorten;
use crate::{challenge, store};

/// The largest body accepted; Netdata's are a few KiB.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The most bytes a request's target and headers (names and values) may have.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// The most headers a request may have.
pub const MAX_HEADERS: usize = 100;
/// A connection is asked to close after this long, so none is held forever.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);

/// What the request handlers share.
#[derive(Clone)]
pub struct ReceiverState {
    /// The validated config.
    pub config: Arc<Config>,
    /// Where deliveries are recorded.
    pub store: Store,
    /// The authentication-failure throttle.
    pub throttle: Arc<FailureThrottle>,
    /// Whether the configured secrets are too strong to guess ([`auth::secrets_are_strong`]).
    strong_secrets: bool,
}

impl ReceiverState {
    /// State for `config` writing to `store`.
    pub fn new(config: Arc<Config>, store: Store) -> ReceiverState {
        let throttle = Arc::new(FailureThrottle::new(config.auth.max_failures_per_minute));
        let strong_secrets = auth::secrets_are_strong(&config.auth);
        ReceiverState { config, store, throttle, strong_secrets }
    }
}

/// What the TLS layer learned about a connection, handed to each request on it.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// The peer's address.
    pub peer: SocketAddr,
    /// The verified client certificate, if one was presented.
    pub cert: PeerCertificate,
    /// Set once a request on the connection passed authentication.
    authenticated: Arc<std::sync::atomic::AtomicBool>,
}

/// At most this many lines a second say refused requests and failed handshakes; past it, a
/// flood of them is said by its count, once a second at most, so that it cannot fill the
/// disk the log is kept on.
const REFUSAL_LINES_PER_SECOND: u64 = 20;

/// The log lines of refusals left this second, shared by every receiver.
static REFUSAL_LOG: LogBudget = LogBudget::new(REFUSAL_LINES_PER_SECOND);

/// Lines a second for one kind of log line, and a count of those left out.
struct LogBudget {
    per_second: u64,
    second: std::sync::atomic::AtomicU64,
    used: std::sync::atomic::AtomicU64,
    left_out: std::sync::atomic::AtomicU64,
}

impl LogBudget {
    const fn new(per_second: u64) -> LogBudget {
        use std::sync::atomic::AtomicU64;
        LogBudget { per_second, second: AtomicU64::new(0), used: AtomicU64::new(0), left_out: AtomicU64::new(0) }
    }

    /// Whether one more line may be logged now. The first line of a new second says first
    /// how many were left out before it.
    fn allow(&self) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let second = self.second.load(SeqCst);
        if now != second && self.second.compare_exchange(second, now, SeqCst, SeqCst).is_ok() {
            self.used.store(0, SeqCst);
            let left_out = self.left_out.swap(0, SeqCst);
            if left_out > 0 {
                tracing::warn!(
                    "{left_out} more refused requests and failed handshakes were not logged (over {} a second)",
                    self.per_second
                );
            }
        }
        if self.used.fetch_add(1, SeqCst) < self.per_second {
            return true;
        }
        self.left_out.fetch_add(1, SeqCst);
        false
    }
}

/// A refusal: a status and a short reason, sent as `{"error": reason}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    reason: Cow<'static, str>,
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    fn new(status: StatusCode, reason: impl Into<Cow<'static, str>>) -> ApiError {
        ApiError { status, reason: reason.into(), headers: Vec::new() }
    }

    /// A refusal of `peer`'s request, said in the log with the peer and the status: a warning
    /// (what may be a misconfigured sender, or an attack).
    fn refuse(peer: impl std::fmt::Display, status: StatusCode, reason: impl Into<Cow<'static, str>>) -> ApiError {
        let e = ApiError::new(status, reason);
        if REFUSAL_LOG.allow() {
            tracing::warn!(%peer, status = status.as_u16(), "refused: {}", e.reason);
        }
        e
    }

    fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> ApiError {
        self.headers.push((name, value));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(json!({ "error": self.reason }))).into_response();
        for (k, v) in self.headers {
            resp.headers_mut().insert(k, v);
        }
        resp
    }
}

/// Says why a connection ended in error. What the HTTP library refused by itself (a request
/// it could not read as HTTP, answered 400, 414 or 431 with no body, or a head that began to
/// arrive and did not finish in time) is a refusal like any other, and said as one; a client
/// that went away, or an idle keep-alive connection timed out, is only a debug line.
fn log_connection_error(
    peer: SocketAddr,
    e: &(dyn std::error::Error + 'static),
    timeout: Duration,
    partial_head: bool,
) {
    match e.downcast_ref::<hyper::Error>() {
        Some(h) if h.is_parse_too_large() => {
            // hyper says which: "URI too long" (answered 414) or a head too large (431).
            let status = if h.to_string().contains("URI too long") { 414 } else { 431 };
            if REFUSAL_LOG.allow() {
                tracing::warn!(%peer, status, "refused: the request's head is far over the limits ({h})")
            }
        }
        Some(h) if h.is_parse() || h.is_parse_status() => {
            if REFUSAL_LOG.allow() {
                tracing::warn!(%peer, status = 400, "refused: the request is not valid HTTP ({h})")
            }
        }
        Some(h) if h.is_timeout() && partial_head => log_slow_head(peer, timeout),
        _ => tracing::debug!(%peer, "connection ended: {e}"),
    }
}

/// Says that a request's head began to arrive and did not finish within `timeout`, which
/// either hyper's timer or the idle check cut off.
fn log_slow_head(peer: SocketAddr, timeout: Duration) {
    if REFUSAL_LOG.allow() {
        tracing::warn!(
            %peer,
            "refused: the request's head did not arrive within {} s; connection closed (no answer)",
            timeout.as_secs()
        );
    }
}

/// The receiver's routes: GET (challenge) and POST (delivery) on `server.path`.
pub fn router(state: ReceiverState) -> Router {
    let path = state.config.server.path.clone();
    Router::new()
        .route(&path, get(challenge_handler).post(delivery_handler))
        .fallback(no_such_path)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// The request's path for a log line: at most 100 characters (it is the client's to choose).
fn logged_path(uri: &axum::http::Uri) -> String {
    shorten(uri.path(), 100)
}

async fn no_such_path(info: Option<Extension<ConnectionInfo>>, req: Request) -> ApiError {
    // Info, not a warning: the internet's scanners knock on every path of every address.
    if REFUSAL_LOG.allow() {
        tracing::info!(peer = %peer_of(&info), status = 404, path = logged_path(req.uri()), "refused: no such path");
    }
    discard_body(req.into_body()).await;
    ApiError::new(StatusCode::NOT_FOUND, "no such path")
}

async fn method_not_allowed(info: Option<Extension<ConnectionInfo>>, req: Request) -> ApiError {
    let method = shorten(req.method().as_str(), 20);
    let path = logged_path(req.uri());
    if REFUSAL_LOG.allow() {
        tracing::info!(peer = %peer_of(&info), status = 405, method, path, "refused: method not allowed");
    }
    discard_body(req.into_body()).await;
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "only GET (challenge) and POST (notifications) are served")
        .with_header(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"))
}

/// Why a request is refused before routing, with the status to refuse it with, if it is.
///
/// - Its head (method, target, header names and values) is over [`MAX_HEADER_BYTES`], or it has more
///   than [`MAX_HEADERS`] headers: 431. The HTTP library's own limits are set well above
///   these, so that a request over them gets a JSON reason like every other refusal; only
///   one far over them is refused by the library itself, with no body.
/// - A transfer coding other than `chunked`: 501.
/// - An HTTP/1.1 request without exactly one Host header: 400, as HTTP/1.1 requires (RFC
///   9112, section 3.2): it did not come from a client that follows HTTP/1.1, and the host it
///   was meant for is unknown. HTTP/1.0 needs none; HTTP/2 names the host in `:authority`.
fn head_problem<B>(req: &hyper::Request<B>) -> Option<(StatusCode, &'static str)> {
    let headers = req.headers();
    if headers.len() > MAX_HEADERS {
        return Some((StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "the request has more than 100 headers"));
    }
    let target = req.method().as_str().len() + req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    let size = headers.iter().fold(target, |n, (name, value)| n + name.as_str().len() + value.len());
    if size > MAX_HEADER_BYTES {
        return Some((
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "the request's method, target and headers are larger than 32768 bytes",
        ));
    }
    // A transfer coding besides chunked (`gzip, chunked`) would reach the parser still coded;
    // RFC 9112 (section 6.1) answers one it does not know with 501.
    let codings = headers.get_all(header::TRANSFER_ENCODING).iter().flat_map(|v| v.as_bytes().split(|&b| b == b','));
    if codings.map(|c| c.trim_ascii()).any(|c| !c.is_empty() && !c.eq_ignore_ascii_case(b"chunked")) {
        return Some((
            StatusCode::NOT_IMPLEMENTED,
            "a Transfer-Encoding other than chunked is not supported; send the body as it is, or chunked",
        ));
    }
    if req.version() != axum::http::Version::HTTP_11 {
        return None;
    }
    match headers.get_all(header::HOST).iter().count() {
        1 => None,
        0 => Some((StatusCode::BAD_REQUEST, "the Host header is missing")),
        _ => Some((StatusCode::BAD_REQUEST, "more than one Host header")),
    }
}

fn peer_of(info: &Option<Extension<ConnectionInfo>>) -> String {
    info.as_ref().map(|i| i.peer.to_string()).unwrap_or_else(|| "unknown".into())
}

async fn challenge_handler(
    State(state): State<ReceiverState>,
    info: Option<Extension<ConnectionInfo>>,
    req: Request,
) -> Result<Response, ApiError> {
    let peer = peer_of(&info);
    let token = match challenge::crc_token_from_query(req.uri().query()) {
        Ok(Some(t)) => t,
        Ok(None) => {
            if REFUSAL_LOG.allow() {
                tracing::info!(%peer, status = 400, "challenge refused: no crc_token in the query");
            }
            return Err(ApiError::new(StatusCode::BAD_REQUEST, "missing crc_token query parameter"));
        }
        Err(reason) => {
            if REFUSAL_LOG.allow() {
                tracing::info!(%peer, status = 400, "challenge refused: {reason}");
            }
            return Err(ApiError::new(StatusCode::BAD_REQUEST, reason));
        }
    };
    let Some(secret) = &state.config.auth.challenge_secret else {
        tracing::warn!(%peer, status = 503, "challenge received but auth.challenge_secret is not set; Netdata will not accept this endpoint until it is");
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no challenge secret is configured on this receiver (auth.challenge_secret)",
        ));
    };
    tracing::debug!(%peer, "answered a crc_token challenge");
    Ok(Json(json!({ "response_token": challenge::response_token(secret.expose().as_bytes(), &token) })).into_response())
}

/// The answer to a stored delivery: `{"status":"stored","id":N,"duplicate":false}`.
#[derive(serde::Serialize)]
struct StoredAnswer {
    status: &'static str,
    id: i64,
    duplicate: bool,
}

/// The most of a refused request's body that is read (and dropped) before answering.
const DISCARDED_BODY_BYTES: usize = 64 * 1024;
/// How long reading it may take.
const DISCARDED_BODY_TIME: Duration = Duration::from_secs(1);

/// Reads and drops the body of a request refused before its body was read, when it is
/// small and comes quickly. Over HTTP/2 an answer sent while the client is still sending
/// ends with a reset of the stream, which HTTP/2 allows, but which some clients (curl 7)
/// report as an error instead of the answer: someone trying the receiver by hand would not
/// see why it refused.
async fn discard_body(body: Body) {
    use axum::body::HttpBody as _;
    use http_body_util::BodyExt as _;
    // Nothing to wait for when the client already said the body is larger.
    if body.size_hint().lower() > DISCARDED_BODY_BYTES as u64 {
        return;
    }
    let drain = async {
        let mut body = body;
        let mut read = 0;
        // Frame by frame, each dropped as it comes: nothing is kept.
        while let Some(Ok(frame)) = body.frame().await {
            read += frame.data_ref().map_or(0, |d| d.len());
            if read > DISCARDED_BODY_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DISCARDED_BODY_TIME, drain).await;
}

async fn delivery_handler(
    State(state): State<ReceiverState>,
    info: Option<Extension<ConnectionInfo>>,
    req: Request,
) -> Result<Response, ApiError> {
    let peer = peer_of(&info);
    let (parts, body) = req.into_parts();
    let admitted = admit(&state, &info, &peer, &parts.headers);
    if let (Ok(_), Some(info)) = (&admitted, &info) {
        info.authenticated.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    let refused = match admitted {
        Ok(Admitted::Deliver(how)) => return deliver(&state, &peer, how, body).await,
        Ok(Admitted::Check) => {
            tracing::info!(%peer, "connection check: credentials accepted");
            Ok((StatusCode::OK, Json(json!({ "status": "check", "stored": false }))).into_response())
        }
        Err(e) => Err(e),
    };
    // A client that waits to be asked for its body (`Expect: 100-continue`) is answered
    // without being asked: reading it would invite the body of a request already refused.
    let waits = parts.headers.get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if !waits {
        discard_body(body).await;
    }
    refused
}

/// What a POST that passed the checks before its body may do.
enum Admitted {
    /// Be read and stored; it authenticated this way.
    Deliver(String),
    /// Be answered as Alertray's own "Check connection" probe: nothing is stored.
    Check,
}

/// The checks made before a POST's body is read: the throttle, the credentials, the
/// connection-check probe, the body's content coding.
fn admit(
    state: &ReceiverState,
    info: &Option<Extension<ConnectionInfo>>,
    peer: &str,
    headers: &HeaderMap,
) -> Result<Admitted, ApiError> {
    let ip: IpAddr = info.as_ref().map(|i| i.peer.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let cert = info.as_ref().map(|i| i.cert.clone()).unwrap_or_default();
    let throttled = state.throttle.check(ip, Instant::now()).err();
    let how = match (auth::check(&state.config.auth, &cert, headers), throttled) {
        // Right credentials get through a throttled address only where no guess could
        // succeed anyway: a client certificate that verified, or secrets too strong to guess.
        // Behind a tunnel every client shares the tunnel's address, and a stranger's wrong
        // guesses must not lock Netdata out.
        (Ok(how), Some(_)) if state.strong_secrets || by_certificate(&state.config, &cert) => how,
        (_, Some(retry)) => {
            let secs = whole_seconds_after(retry);
            return Err(ApiError::refuse(
                peer,
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many authentication failures from this address; retry in {secs} s"),
            )
            .with_header(header::RETRY_AFTER, HeaderValue::from(secs)));
        }
        (Ok(how), None) => how,
        (Err(f), None) => {
            // Only a wrong secret is a guess. A certificate cannot be guessed, and a request
            // with no credentials guesses nothing: counting either would let anyone (a
            // scanner) throttle a shared tunnel address.
            if f.guess {
                state.throttle.failed(ip, Instant::now());
            }
            let mut e = ApiError::refuse(peer, f.status, f.reason);
            if let Some(w) = f.www_authenticate {
                e = e.with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static(w));
            }
            return Err(e);
        }
    };
    if headers.contains_key(crate::check::CHECK_HEADER) {
        // "Check connection" proves the credentials reach the receiver; nothing is stored.
        // With no store, it fails as a delivery would.
        if let Some(reason) = state.store.broken() {
            tracing::warn!(%peer, status = 503, "connection check refused: deliveries cannot be stored: {reason}");
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("deliveries cannot be stored: {reason}"),
            )
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("30")));
        }
        return Ok(Admitted::Check);
    }
    if let Some(coding) = content_coding(headers) {
        return Err(ApiError::refuse(
            peer,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Encoding {coding:?} is not accepted; send the JSON body uncompressed"),
        )
        .with_header(header::ACCEPT_ENCODING, HeaderValue::from_static("identity")));
    }
    // Refused before the body is read (and before a client that expects 100 Continue is
    // told to send it): a body declared larger than the limit.
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if let Some(len) = declared.filter(|&len| len > MAX_BODY_BYTES as u64) {
        return Err(ApiError::refuse(
            peer,
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {MAX_BODY_BYTES} bytes (Content-Length: {len})"),
        ));
    }
    Ok(Admitted::Deliver(how))
}

/// Reads, parses and stores an admitted POST's body; answers once it is on disk.
async fn deliver(state: &ReceiverState, peer: &str, how: String, body: Body) -> Result<Response, ApiError> {
    let timeout = state.config.server.request_timeout;
    let body = match tokio::time::timeout(timeout, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Err(_) => {
            return Err(ApiError::refuse(
                peer,
                StatusCode::REQUEST_TIMEOUT,
                format!("the body did not arrive within {} s", timeout.as_secs()),
            ));
        }
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                return Err(ApiError::refuse(
                    peer,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body is larger than {MAX_BODY_BYTES} bytes"),
                ));
            }
            tracing::debug!(%peer, "the body could not be read: {e}");
            return Err(ApiError::refuse(peer, StatusCode::BAD_REQUEST, "the body could not be read"));
        }
        Ok(Ok(b)) => b,
    };
    let notification =
        payload::parse(&body).map_err(|e| ApiError::refuse(peer, StatusCode::BAD_REQUEST, e.to_string()))?;
    let kind = notification.kind();
    let delivery =
        Delivery { body: body.to_vec(), notification, received_ms: store::now_ms(), peer: peer.to_string(), auth: how };
    match state.store.record(delivery).await {
        Ok(rec) => {
            tracing::debug!(%peer, id = rec.id, kind, duplicate = rec.duplicate, "notification recorded");
            Ok((StatusCode::OK, Json(StoredAnswer { status: "stored", id: rec.id, duplicate: rec.duplicate }))
                .into_response())
        }
        Err(e) => {
            tracing::error!(%peer, status = 503, "could not store a notification, answering 503 so Netdata retries: {e}");
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the notification could not be stored; retry later")
                .with_header(header::RETRY_AFTER, HeaderValue::from_static("30")))
        }
    }
}

/// `wait` in whole seconds, rounded up (at least 1): a client that waits as long as
/// `Retry-After` says is not refused again for having come a fraction of a second early.
fn whole_seconds_after(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// `true` when a request that passed [`auth::check`] did so with a client certificate (which
/// then verified against the trusted roots and carries an accepted name).
fn by_certificate(config: &Config, cert: &PeerCertificate) -> bool {
    config.auth.client_certificate != ClientCertMode::Off && cert.presented()
}

/// The content coding of a request body other than `identity`, if any (`gzip`, `br`...). The
/// body is stored as it arrives and parsed as JSON, so a compressed one is refused with 415
/// rather than reported as JSON that does not parse.
fn content_coding(headers: &HeaderMap) -> Option<String> {
    let mut codings = Vec::new();
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let value = String::from_utf8_lossy(value.as_bytes());
        let named = value.split(',').map(str::trim).filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity"));
        codings.extend(named.map(str::to_owned));
    }
    (!codings.is_empty()).then(|| codings.join(", "))
}

/// Serves `router` over TLS on `listener` until `shutdown`; then stops accepting (and hands
/// the listener over on `released`, for a restart on the same address to go on with: the
/// connections made meanwhile wait in its queue, none is refused), closes the connections
/// with no request in flight, and lets the requests in flight finish (up to the request
/// timeout) before returning.
pub async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    config: Arc<Config>,
    shutdown: CancellationToken,
    released: tokio::sync::oneshot::Sender<TcpListener>,
) {
    let active = Arc::new(Semaphore::new(config.server.max_connections));
    let served = Arc::new(ServedConnections::default());
    let pending = Arc::new(PendingConnections::new(pending_cap(config.server.max_connections)));
    let tracker = TaskTracker::new();
    let timeout = config.server.request_timeout;
    loop {
        let (tcp, peer) = tokio::select! {
            // Once stopping, a connection waiting in the queue stays there, for the receiver
            // that takes the listener over (a restart) to accept.
            biased;
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors: make room. Anything else (a client that reset
                    // before we accepted it): just go on, after a pause rather than a spin.
                    tracing::warn!("accept failed: {e}");
                    if out_of_files(&e) {
                        pending.evict_oldest();
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let (id, evicted) = pending.admit();
        let conn =
            Conn { peer, acceptor: acceptor.clone(), router: router.clone(), timeout, shutdown: shutdown.clone() };
        let slots = Slots { pending: pending.clone(), active: active.clone(), served: served.clone() };
        tracker.spawn(async move {
            serve_connection(tcp, conn, id, evicted, slots).await;
        });
    }
    // The listener goes at once (to a restart, or closed if nobody takes it); the
    // connections left finish what they are answering.
    let _ = released.send(listener);
    tracker.close();
    let left = tracker.len();
    let started = Instant::now();
    if tokio::time::timeout(timeout + Duration::from_secs(1), tracker.wait()).await.is_err() {
        tracing::warn!(
            "{} connections still open after {}s; stopping without them",
            tracker.len(),
            timeout.as_secs() + 1
        );
    } else if left > 0 {
        tracing::debug!("{left} connections finished in {} ms", started.elapsed().as_millis());
    }
}

/// EMFILE or ENFILE: this process, or the system, has no file descriptor left.
fn out_of_files(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(23 | 24)) && cfg!(unix)
}

/// How many connections may wait for their TLS handshake at once.
fn pending_cap(max_connections: usize) -> usize {
    (max_connections * 4).clamp(1024, 16_384)
}

/// Connections accepted whose TLS handshake has not finished. When there are too many (a
/// flood of idle connections), the oldest is dropped to make room: a real client finishes
/// its handshake within milliseconds, so it is almost never the oldest, and deliveries keep
/// flowing however many idle connections are held open.
struct PendingConnections {
    cap: usize,
    state: std::sync::Mutex<PendingState>,
}

struct PendingState {
    next_id: u64,
    waiting: std::collections::BTreeMap<u64, CancellationToken>,
    evicted: u64,
    last_warning: Option<Instant>,
}

impl PendingConnections {
    fn new(cap: usize) -> PendingConnections {
        PendingConnections {
            cap,
            state: std::sync::Mutex::new(PendingState {
                next_id: 0,
                waiting: Default::default(),
                evicted: 0,
                last_warning: None,
            }),
        }
    }

    /// Registers a new connection; evicts the oldest waiting one when full.
    fn admit(&self) -> (u64, CancellationToken) {
        let token = CancellationToken::new();
        let mut st = self.state.locked();
        let id = st.next_id;
        st.next_id += 1;
        st.waiting.insert(id, token.clone());
        if st.waiting.len() > self.cap {
            drop(st);
            self.evict_oldest();
        }
        (id, token)
    }

    fn evict_oldest(&self) {
        let mut st = self.state.locked();
        let Some((_, oldest)) = st.waiting.pop_first() else { return };
        oldest.cancel();
        st.evicted += 1;
        // One line per 10 s at most, however hard the flood.
        if st.last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            tracing::warn!(
                "connection flood: {} connections waiting for a TLS handshake; dropped {} idle ones so far to keep serving",
                self.cap,
                st.evicted
            );
            st.last_warning = Some(Instant::now());
        }
    }

    fn done(&self, id: u64) {
        self.state.locked().waiting.remove(&id);
    }
}

/// The connections being served (past their handshake, holding a slot), and what each is
/// doing, so that an idle one can give its slot to a newcomer.
#[derive(Default)]
struct ServedConnections {
    by_age: std::sync::Mutex<std::collections::BTreeMap<u64, Arc<Activity>>>,
}

/// What one served connection is doing.
struct Activity {
    /// Requests being answered on it.
    in_flight: std::sync::atomic::AtomicUsize,
    /// When its last request was answered (ms since `opened`). Bytes arriving do not count:
    /// HTTP/2 pings, or a trickle of bytes, must not keep a connection that sends no request.
    active_ms: std::sync::atomic::AtomicU64,
    opened: Instant,
    /// Cancelled to make it close (it is idle and its slot is needed).
    evict: CancellationToken,
    /// HTTP/1: bytes of a request arrived that did not make a whole head yet (a client
    /// trickling its head in). Set by [`NotedReads`], cleared when a request begins.
    partial_head: std::sync::atomic::AtomicBool,
    /// Set once a request on it passed authentication (shared with its [`ConnectionInfo`]).
    authenticated: Arc<std::sync::atomic::AtomicBool>,
    /// Requests begun on it.
    requests: std::sync::atomic::AtomicUsize,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            in_flight: Default::default(),
            active_ms: Default::default(),
            opened: Instant::now(),
            evict: CancellationToken::new(),
            partial_head: Default::default(),
            authenticated: Default::default(),
            requests: Default::default(),
        }
    }

    /// Whether no request has begun on it yet.
    fn fresh(&self) -> bool {
        self.requests.load(std::sync::atomic::Ordering::SeqCst) == 0
    }

    /// Whether none of its requests has passed authentication yet: all it did was refused
    /// (or was a challenge).
    fn unproven(&self) -> bool {
        !self.authenticated.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Notes that a request was answered now.
    fn touch(&self) {
        let now = self.opened.elapsed().as_millis() as u64;
        self.active_ms.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
    }

    /// How long it has had no request in flight; `None` while it answers one.
    fn idle_for(&self) -> Option<Duration> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.in_flight.load(SeqCst) > 0 {
            return None;
        }
        let since = Duration::from_millis(self.active_ms.load(SeqCst));
        Some(self.opened.elapsed().saturating_sub(since))
    }

    /// Marks a request begun; the guard marks it done when dropped.
    fn begin(self: &Arc<Activity>) -> RequestGuard {
        self.partial_head.store(false, std::sync::atomic::Ordering::SeqCst);
        self.requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.in_flight.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        RequestGuard(self.clone())
    }
}

struct RequestGuard(Arc<Activity>);

/// An HTTP/1 connection's stream, noting in its [`Activity`] when bytes arrive while no
/// request is in flight: the start of a head that may never be finished.
struct NotedReads<T> {
    io: T,
    /// `None` over HTTP/2, whose pings and settings arrive with no request in flight.
    activity: Option<Arc<Activity>>,
    /// How many of the first bytes matched HTTP/2's preface (HTTP/2 spoken without ALPN
    /// starts with it); `None` once they are known to be HTTP/1 (or HTTP/2).
    preface_matched: Option<usize>,
}

/// How an HTTP/2 connection begins, ALPN or not.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for NotedReads<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::sync::atomic::Ordering::SeqCst;
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.io).poll_read(cx, buf);
        let read = &buf.filled()[before..];
        if let Some(matched) = self.preface_matched {
            // Prior knowledge of HTTP/2, without ALPN: noted as HTTP/2 once its whole preface
            // is in. Until then its first bytes are those of an HTTP/1 head too ("P" of POST).
            let more = read.iter().zip(&H2_PREFACE[matched..]).take_while(|(a, b)| a == b).count();
            if matched + more == H2_PREFACE.len() {
                if let Some(a) = self.activity.take() {
                    a.partial_head.store(false, SeqCst);
                }
                self.preface_matched = None;
            } else if more < read.len() {
                self.preface_matched = None;
            } else {
                self.preface_matched = Some(matched + more);
            }
        }
        if let Some(a) = self.activity.as_ref().filter(|_| buf.filled().len() > before) {
            if a.in_flight.load(SeqCst) == 0 {
                a.partial_head.store(true, SeqCst);
            }
        }
        polled
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for NotedReads<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// How long a connection must have had no request in flight before it gives its slot to a
/// newcomer: a client sending its requests one after the other keeps its connection. (One
/// whose next request is arriving at the very moment it is chosen loses that request, as it
/// would to any server closing an idle keep-alive connection; its client sends it again.)
const EVICTABLE_AFTER: Duration = Duration::from_millis(500);

impl ServedConnections {
    fn add(&self, id: u64) -> Arc<Activity> {
        let activity = Arc::new(Activity::new());
        self.by_age.locked().insert(id, activity.clone());
        activity
    }

    fn remove(&self, id: u64) {
        self.by_age.locked().remove(&id);
    }

    /// Asks one connection to close, if one may, so that its slot goes to a newcomer: the one
    /// idle the longest (no request in flight for at least [`EVICTABLE_AFTER`]), else the
    /// oldest that has not authenticated a request, busy or not (open that long too). So
    /// neither connections that only hold a slot nor ones sending refused requests one after
    /// the other can keep a delivery out; connections answering authenticated requests keep
    /// theirs.
    fn make_room(&self) {
        let mut by_age = self.by_age.locked();
        let longest_idle = by_age
            .iter()
            .filter_map(|(id, a)| a.idle_for().filter(|&idle| idle >= EVICTABLE_AFTER).map(|idle| (idle, *id)))
            .max()
            .map(|(_, id)| id);
        let chosen = longest_idle.or_else(|| {
            by_age.iter().find(|(_, a)| a.unproven() && a.opened.elapsed() >= EVICTABLE_AFTER).map(|(id, _)| *id)
        });
        if let Some(a) = chosen.and_then(|id| by_age.remove(&id)) {
            a.evict.cancel();
        }
    }
}

/// The bounds one connection is served within.
struct Slots {
    /// Connections waiting for their handshake (or a slot).
    pending: Arc<PendingConnections>,
    /// Slots: at most server.max_connections are served at once.
    active: Arc<Semaphore>,
    served: Arc<ServedConnections>,
}

/// What serving one connection needs.
struct Conn {
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    router: Router,
    timeout: Duration,
    shutdown: CancellationToken,
}

/// How long, after a shutdown or a restart begins, a connection the receiver had already
/// accepted may take to finish its TLS handshake and begin its first request.
const FRESH_GRACE: Duration = Duration::from_secs(1);

/// How long a connection asked to close with no request in flight has to send what it was
/// still sending (the answer to its last request) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_millis(200);

/// Resolves [`FRESH_GRACE`] after `shutdown` is cancelled.
async fn grace_after(shutdown: &CancellationToken) {
    shutdown.cancelled().await;
    tokio::time::sleep(FRESH_GRACE).await;
}

async fn serve_connection(tcp: TcpStream, conn: Conn, id: u64, evicted: CancellationToken, slots: Slots) {
    let Conn { peer, acceptor, router, timeout, shutdown } = conn;
    let Slots { pending, active, served } = slots;
    let _ = tcp.set_nodelay(true);
    // A handshake under way at shutdown (or a restart) gets a moment to finish, and its
    // connection a moment to send its request: its client is already connected.
    let handshake = tokio::select! {
        r = tokio::time::timeout(timeout, acceptor.accept(tcp)) => Some(r),
        _ = evicted.cancelled() => None,
        _ = grace_after(&shutdown) => None,
    };
    let tls = match handshake {
        None => {
            pending.done(id);
            tracing::debug!(%peer, "dropped a connection still in its TLS handshake (to make room, or shutting down)");
            return;
        }
        Some(Ok(Ok(s))) => s,
        Some(Ok(Err(e))) => {
            pending.done(id);
            if REFUSAL_LOG.allow() {
                tracing::info!(%peer, "TLS handshake failed: {e}");
            }
            return;
        }
        Some(Err(_)) => {
            pending.done(id);
            if REFUSAL_LOG.allow() {
                tracing::info!(%peer, "TLS handshake did not finish within {}s", timeout.as_secs());
            }
            return;
        }
    };
    if tls.get_ref().1.alpn_protocol() == Some(crate::acme::ACME_TLS_ALPN) {
        // An ACME CA validating TLS-ALPN-01: the handshake was the whole answer.
        pending.done(id);
        tracing::info!(%peer, "answered an ACME TLS-ALPN-01 validation");
        return;
    }
    // At most server.max_connections are served at once. When all are taken, the one idle
    // the longest gives its slot up: a connection that only holds a slot cannot keep a
    // delivery out. While every one is busy, this one waits (asking again as they finish),
    // still counted (and evictable) as waiting, so that waiting connections stay bounded too.
    let permit = match active.clone().try_acquire_owned() {
        Ok(p) => Some(p),
        Err(_) => {
            let waited = tokio::time::sleep(timeout);
            tokio::pin!(waited);
            let mut ask = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    p = active.clone().acquire_owned() => break p.ok(),
                    _ = &mut waited => break None,
                    _ = evicted.cancelled() => break None,
                    _ = grace_after(&shutdown) => break None,
                    _ = ask.tick() => {
                        served.make_room();
                    }
                }
            }
        }
    };
    pending.done(id);
    let Some(_permit) = permit else {
        if !shutdown.is_cancelled() && REFUSAL_LOG.allow() {
            tracing::warn!(%peer, "no free connection slot within {}s (server.max_connections); closing", timeout.as_secs());
        }
        return;
    };
    let cert =
        PeerCertificate::from_der(tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.as_ref()));
    let activity = served.add(id);
    let info = ConnectionInfo { peer, cert, authenticated: activity.authenticated.clone() };
    let requests = activity.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(info.clone());
        let router = router.clone();
        let request = requests.begin();
        let refused = head_problem(&req);
        let peer = info.peer;
        async move {
            let response = match refused {
                Some((status, reason)) => {
                    let refused = ApiError::refuse(peer, status, reason);
                    discard_body(Body::new(req.into_body())).await;
                    Ok(refused.into_response())
                }
                None => router.oneshot(req.map(Body::new)).await,
            };
            drop(request);
            response
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        // Well above Alertray's own limits (checked in `head_problem`, with a JSON reason).
        .max_buf_size(MAX_HEADER_BYTES * 4)
        .max_headers(MAX_HEADERS * 2);
    builder
        .http2()
        .timer(TokioTimer::new())
        // HTTP/2 counts 32 bytes more per header: 64 KiB leaves room for 100 of them.
        .max_header_list_size((MAX_HEADER_BYTES * 2) as u32)
        .max_concurrent_streams(64)
        .keep_alive_interval(Some(Duration::from_secs(20).min(timeout / 2)))
        .keep_alive_timeout(timeout);
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = NotedReads { io: tls, activity: (!h2).then(|| activity.clone()), preface_matched: Some(0) };
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let age = tokio::time::sleep(MAX_CONNECTION_AGE);
    tokio::pin!(age);
    // A connection with no request in flight for the request timeout is closed, whatever it
    // does meanwhile: before its first request (hyper's own timer starts only at a first
    // byte) or answering HTTP/2 pings. Checked at half the timeout, so it closes within 1.5x.
    let mut idle_check = tokio::time::interval(timeout / 2);
    idle_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // A connection asked to close gets the request timeout to finish what it is answering.
    let hard_stop = tokio::time::sleep(timeout);
    tokio::pin!(hard_stop);
    let mut closing = false;
    // A head that trickled in was refused (and said so) when the connection was closed.
    let mut head_refused = false;
    // At shutdown, a connection that has not sent its first request yet gets a moment to
    // (any other is closing once it has seen the shutdown).
    let fresh_grace = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(fresh_grace);
    let mut grace_armed = false;
    loop {
        let why = tokio::select! {
            r = conn.as_mut() => {
                match r {
                    Err(e) if !head_refused => {
                        let partial = activity.partial_head.load(std::sync::atomic::Ordering::SeqCst);
                        log_connection_error(peer, &*e, timeout, partial)
                    }
                    _ => {}
                }
                break;
            }
            _ = &mut hard_stop, if closing => {
                tracing::debug!(%peer, "connection did not close in time once asked to; dropped");
                break;
            }
            _ = shutdown.cancelled(), if !closing && !grace_armed => {
                if activity.fresh() {
                    fresh_grace.as_mut().reset(tokio::time::Instant::now() + FRESH_GRACE);
                    grace_armed = true;
                    continue;
                }
                "shutting down"
            }
            _ = &mut fresh_grace, if grace_armed && !closing => "shutting down",
            _ = &mut age, if !closing => "it reached the longest connection age",
            _ = activity.evict.cancelled(), if !closing => "every slot is taken (server.max_connections) and it was idle or had authenticated no request",
            _ = idle_check.tick(), if !closing => match activity.idle_for() {
                Some(idle) if idle >= timeout && activity.partial_head.load(std::sync::atomic::Ordering::SeqCst) => {
                    head_refused = true;
                    log_slow_head(peer, timeout);
                    "its request's head did not arrive in time"
                }
                Some(idle) if idle >= timeout => "it sent no request within server.request_timeout_secs",
                _ => continue,
            },
        };
        tracing::debug!(%peer, "closing the connection: {why}");
        let idle = activity.idle_for().is_some();
        // When its slot is needed, one with no request in flight, or whose requests were all
        // refused, goes at once.
        if activity.evict.is_cancelled() && (idle || activity.unproven()) {
            break;
        }
        conn.as_mut().graceful_shutdown();
        closing = true;
        // With no request in flight, the answer to the last one may still be on its way out:
        // it gets a moment, and a client in the middle of sending a head (or of nothing) does
        // not hold the shutdown up. A request in flight gets the request timeout to finish.
        let finish = if idle { CLOSE_GRACE } else { timeout };
        hard_stop.as_mut().reset(tokio::time::Instant::now() + finish);
    }
    served.remove(id);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_refusals_is_logged_up_to_its_budget_then_counted() {
        use std::sync::atomic::Ordering::SeqCst;
        let budget = LogBudget::new(3);
        let allowed = (0..10).filter(|_| budget.allow()).count();
        // Within one second (or, across its end, the next one's budget begins).
        assert!((3..=6).contains(&allowed), "{allowed}");
        if allowed == 3 {
            assert_eq!(budget.left_out.load(SeqCst), 7);
        }
        // A new second: its budget, and the count of those left out said and reset.
        std::thread::sleep(Duration::from_millis(1100));
        assert!(budget.allow());
        assert_eq!(budget.left_out.load(SeqCst), 0);
    }

    #[test]
    fn head_refusals_name_the_limits_they_enforce() {
        let mut req = hyper::Request::builder().uri("/").header(header::HOST, "x");
        for i in 0..=MAX_HEADERS {
            req = req.header(format!("x-{i}"), "v");
        }
        let (status, reason) = head_problem(&req.body(()).unwrap()).expect("refused");
        assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert!(reason.contains(&format!(" {MAX_HEADERS} ")), "{reason}");
        let big = "a".repeat(MAX_HEADER_BYTES);
        let req = hyper::Request::builder().uri("/").header(header::HOST, "x").header("x-big", big);
        let (status, reason) = head_problem(&req.body(()).unwrap()).expect("refused");
        assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert!(reason.ends_with(&format!(" {MAX_HEADER_BYTES} bytes")), "{reason}");
    }

    #[test]
    fn retry_after_is_rounded_up_to_whole_seconds() {
        assert_eq!(whole_seconds_after(Duration::from_millis(2_300)), 3);
        assert_eq!(whole_seconds_after(Duration::from_secs(3)), 3);
        assert_eq!(whole_seconds_after(Duration::from_millis(1)), 1);
        assert_eq!(whole_seconds_after(Duration::ZERO), 1);
    }
}
