//! The load test's baseline: the same stack as the receiver (axum 0.8 over hyper-util's auto
//! HTTP/1.1 + HTTP/2 builder over tokio-rustls with the ring provider) answering every GET
//! and POST with 200 and a tiny JSON body. It verifies, parses and stores nothing, so the gap
//! between it and `alertray serve` is what the receiver's own work costs.
//!
//! ```text
//! cargo run --release --example bare_responder -- 127.0.0.1:9443
//! ```
//!
//! The certificate is self-signed (rcgen, ECDSA P-256 like the receiver's) and made at start.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

/// Reads the body (as the receiver must, so keep-alive connections stay usable) and
/// throws it away.
async fn ok(req: Request) -> Response {
    let _ = axum::body::to_bytes(req.into_body(), 1024 * 1024).await;
    let mut resp = Response::new(Body::from(r#"{"status":"ok"}"#));
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp.into_response()
}

fn tls_config() -> Arc<ServerConfig> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("generate a self-signed certificate");
    let cert = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("TLS 1.2 and 1.3 are supported by ring")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("the generated key matches its certificate");
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

#[tokio::main]
async fn main() {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9443".into())
        .parse()
        .expect("argv[1] must be a socket address such as 127.0.0.1:9443");
    let acceptor = TlsAcceptor::from(tls_config());
    let router = Router::new().route("/", any(ok)).fallback(ok);
    let listener = TcpListener::bind(addr).await.expect("bind the listen address");
    eprintln!("bare_responder listening on https://{}", listener.local_addr().expect("local addr"));
    loop {
        let (tcp, _peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let router = router.clone();
                async move { router.oneshot(req.map(Body::new)).await }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}
