use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A raw TLS connection to the receiver, for clients that misbehave on purpose.
async fn raw_tls(s: &TestServer) -> tokio_rustls::client::TlsStream<TcpStream> {
    connect(s.addr, client_config(&s.server_cert_pem())).await.unwrap()
}

/// Reads until the server closes the connection; returns what it sent.
async fn read_to_close(stream: &mut (impl AsyncReadExt + Unpin), within: Duration) -> Option<String> {
    let mut buf = Vec::new();
    match tokio::time::timeout(within, stream.read_to_end(&mut buf)).await {
        Ok(_) => Some(String::from_utf8_lossy(&buf).into_owned()),
        Err(_) => None,
    }
}

const SHORT_TIMEOUT: &str = "[server]\nrequest_timeout_secs = 1\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off() {
    let s = TestServer::start(&format!("{SHORT_TIMEOUT}{BEARER}")).await;
    let mut tls = raw_tls(&s).await;
    tls.write_all(b"POST / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ").await.unwrap();
    // The server must close well before this generous bound (its timeout is 1 s).
    assert!(read_to_close(&mut tls, Duration::from_secs(10)).await.is_some(), "a slow client held the connection");
    assert_eq!(s.post(captured("netdata-alert-warning.json")).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_finishes_gets_408() {
    let s = TestServer::start(&format!("{SHORT_TIMEOUT}{BEARER}")).await;
    let mut tls = raw_tls(&s).await;
    tls.write_all(b"POST / HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer test-token\r\nContent-Length: 1000\r\n\r\n{\"message\":").await.unwrap();
    let answer = read_to_close(&mut tls, Duration::from_secs(10)).await.expect("the server must answer");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(s.history().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let s = TestServer::start(&format!("{SHORT_TIMEOUT}{BEARER}")).await;
    let mut tls = raw_tls(&s).await;
    tls.write_all(b"GET /?crc_token=a HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let answer = read_to_close(&mut tls, Duration::from_secs(10)).await.expect("closed after idling");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_tls_handshake_is_cut_off() {
    let s = TestServer::start(&format!("{SHORT_TIMEOUT}{BEARER}")).await;
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    assert!(read_to_close(&mut tcp, Duration::from_secs(10)).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_0_client_is_answered() {
    let s = TestServer::start(BEARER).await;
    let mut cfg = (*client_config(&s.server_cert_pem())).clone();
    cfg.alpn_protocols = vec![b"http/1.0".to_vec()];
    let mut tls = connect(s.addr, Arc::new(cfg)).await.expect("the handshake offering only http/1.0");
    tls.write_all(b"GET /?crc_token=abc HTTP/1.0\r\n\r\n").await.unwrap();
    let answer = read_to_close(&mut tls, Duration::from_secs(10)).await.expect("answered and closed");
    assert!(answer.starts_with("HTTP/1.0 200") && answer.contains("response_token"), "{answer}");
}

/// HTTP/1.1 requires exactly one Host header; a request without one, or with two, is
/// refused with a JSON reason, and nothing is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_1_request_without_exactly_one_host_is_refused() {
    let s = TestServer::start(BEARER).await;
    let body = String::from_utf8(captured("netdata-alert-warning.json")).unwrap();
    for (host, reason) in [("", "the Host header is missing"), ("Host: a\r\nHost: b\r\n", "more than one Host header")]
    {
        let mut tls = raw_tls(&s).await;
        let head = format!(
            "POST / HTTP/1.1\r\n{host}Authorization: Bearer test-token\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        let answer = read_to_close(&mut tls, Duration::from_secs(10)).await.expect("answered");
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains(&format!("{{\"error\":\"{reason}\"}}")), "{answer}");
    }
    assert!(s.history().is_empty(), "nothing was stored");
    // With its Host, the same request is stored.
    assert_eq!(s.post(body).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_tls_and_plain_http_are_refused() {
    let s = TestServer::start(BEARER).await;
    for junk in
        [&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], &[0u8; 512][..], &[0x16, 0x03, 0x03, 0xff, 0xff, 1, 2, 3][..]]
    {
        let mut tcp = TcpStream::connect(s.addr).await.unwrap();
        let _ = tcp.write_all(junk).await;
        let got = read_to_close(&mut tcp, Duration::from_secs(15)).await.expect("closed");
        assert!(!got.contains("HTTP/1.1 200"));
    }
    assert_eq!(s.post(captured("netdata-alert-warning.json")).await.status(), StatusCode::OK);
}

/// Sends one raw HTTP/1.1 request (with `Connection: close`) over TLS; returns the answer.
async fn raw_http1(s: &TestServer, request_line: &str, extra_headers: &str, body: &str) -> String {
    let mut tls = raw_tls(s).await;
    let head = format!(
        "{request_line}\r\nHost: localhost\r\nAuthorization: Bearer test-token\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra_headers}\r\n{body}",
        body.len()
    );
    // The server may answer and close before it has read everything (that is the point).
    let _ = tls.write_all(head.as_bytes()).await;
    read_to_close(&mut tls, Duration::from_secs(10)).await.expect("answered and closed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_refused_with_a_reason() {
    let s = TestServer::start(BEARER).await;
    let body = String::from_utf8(captured("netdata-alert-warning.json")).unwrap();
    let too_large = r#"{"error":"the request's method, target and headers are larger than 32768 bytes"}"#;
    // Over 32 KiB of headers, in one header or spread over many: 431 with a JSON reason.
    let one_big = format!("X-Big: {}\r\n", "a".repeat(40 * 1024));
    let many: String = (0..20).map(|i| format!("X-Pad-{i}: {}\r\n", "b".repeat(2000))).collect();
    for extra in [&one_big, &many] {
        let answer = raw_http1(&s, "POST / HTTP/1.1", extra, &body).await;
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
        assert!(answer.contains(too_large), "{answer}");
    }
    // A request target counts too (here a challenge with a padded query).
    let long_target = format!("GET /?crc_token=abc&pad={} HTTP/1.1", "c".repeat(40 * 1024));
    let answer = raw_http1(&s, &long_target, "", "").await;
    assert!(answer.starts_with("HTTP/1.1 431") && answer.contains(too_large), "{answer}");
    // More than 100 headers, however small.
    let count: String = (0..120).map(|i| format!("X-N{i}: v\r\n")).collect();
    let answer = raw_http1(&s, "POST / HTTP/1.1", &count, &body).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(answer.contains(r#"{"error":"the request has more than 100 headers"}"#), "{answer}");
    // HTTP/2 (what this client negotiates) gets the same answer.
    let h2_with_header_of = |bytes: usize| {
        s.client()
            .post(s.url("/"))
            .bearer_auth("test-token")
            .header("x-big", "a".repeat(bytes))
            .body(body.clone())
            .send()
    };
    let r = h2_with_header_of(40 * 1024).await.unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(r.text().await.unwrap(), too_large);
    // Far beyond the limits, the HTTP library refuses by itself (431, no body) and closes.
    let huge = format!("X-Huge: {}\r\n", "a".repeat(300 * 1024));
    let answer = raw_http1(&s, "POST / HTTP/1.1", &huge, &body).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    // Over HTTP/2 too: a header list over 64 KiB is answered 431 (no body) by the library.
    let r = h2_with_header_of(100 * 1024).await.expect("an answer, not a reset");
    assert_eq!((r.version(), r.status()), (reqwest::Version::HTTP_2, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
    assert!(s.history().is_empty(), "nothing refused was stored");
    // Just under the limits a delivery is stored: 30 KiB of headers, 90 headers.
    let near: String = (0..84).map(|i| format!("X-Near-{i:02}: {}\r\n", "d".repeat(350))).collect();
    let answer = raw_http1(&s, "POST / HTTP/1.1", &near, &body).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(s.history().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_and_http2_both_deliver() {
    let s = TestServer::start(BEARER).await;
    let pem = s.server_cert_pem();
    for (h2, expected) in [(false, reqwest::Version::HTTP_11), (true, reqwest::Version::HTTP_2)] {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .resolve("localhost", s.addr);
        b = if h2 { b.http2_prior_knowledge() } else { b.http1_only() };
        let c = b.build().unwrap();
        let body = if h2 { captured("netdata-alert-critical.json") } else { captured("netdata-alert-warning.json") };
        let r = c.post(s.url("/")).bearer_auth("test-token").body(body).send().await.unwrap();
        assert_eq!(r.version(), expected);
        assert_eq!(r.status(), StatusCode::OK);
        let r = c.get(s.url("/?crc_token=abc123")).send().await.unwrap();
        assert_eq!(r.version(), expected);
        assert_eq!(r.status(), StatusCode::OK);
    }
    assert_eq!(s.history().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_are_all_committed() {
    let s = TestServer::start(BEARER).await;
    let c = s.client();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let c = c.clone();
        let url = s.url("/");
        tasks.push(tokio::spawn(async move {
            let body = serde_json::json!({
                "message": "Raised to Warning, x",
                "node": {"id": format!("n{i}"), "hostname": format!("h{i}")},
                "alert": {"name": "a", "state": {"status": "Warning"}, "transition_id": format!("tid-{i}")}
            });
            c.post(url).bearer_auth("test-token").body(body.to_string()).send().await.unwrap().status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    assert_eq!(s.history().len(), 200);
    assert_eq!(s.active().len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewed_certificate_files_are_picked_up_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("Server CA");
    let write_pair = |cn: &str| {
        let pem = ca.server_pem(cn, &["localhost"]);
        let split = pem.find("-----BEGIN PRIVATE KEY-----").unwrap();
        std::fs::write(dir.path().join("cert.pem"), &pem[..split]).unwrap();
        std::fs::write(dir.path().join("key.pem"), &pem[split..]).unwrap();
    };
    write_pair("first");
    let cfg = format!("[tls]\ncert = \"$DIR/cert.pem\"\nkey = \"$DIR/key.pem\"\n{BEARER}");
    let s = TestServer::start_in(&cfg, dir.path()).await;
    let peer_cn = || async {
        let tls = connect(s.addr, client_config(ca.pem().as_bytes())).await.unwrap();
        let der = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let cn = cert.subject().iter_common_name().next().unwrap().as_str().unwrap().to_string();
        cn
    };
    assert_eq!(peer_cn().await, "first");
    // Renewal tools write new files; mtime resolution can be a second, so wait past it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    write_pair("second");
    let mut cn = String::new();
    for _ in 0..50 {
        cn = peer_cn().await;
        if cn == "second" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(cn, "second");
}

/// A TLS connection that sends no request, returned once the server has finished its side
/// of the handshake (it sends its session tickets then) and so holds a slot for it. A client
/// finishes its side first, so without this wait the next connection could take the slot.
async fn served_tls(s: &TestServer) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut tls = raw_tls(s).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while tls.get_ref().1.tls13_tickets_received() == 0 {
        assert!(Instant::now() < deadline, "the server never finished the handshake");
        // Reading processes the tickets; there is no data to read, so it only times out.
        let mut buf = [0u8; 1];
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(20), tls.read(&mut buf)).await {
            panic!("the server sent data or closed unasked: {r:?}");
        }
    }
    // The server registers it right after its handshake, in the same step; leave it a moment.
    tokio::time::sleep(Duration::from_millis(100)).await;
    tls
}

/// A TLS connection with a POST in flight: its body is announced and never sent. Returns
/// once the receiver has asked for the body (100 Continue), so the request is being handled.
async fn busy_connection(s: &TestServer) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut tls = raw_tls(s).await;
    let head = "POST / HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer test-token\r\n\
                Content-Length: 100\r\nExpect: 100-continue\r\n\r\n";
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("100 Continue\r\n\r\n") {
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf)).await.expect("100 Continue").unwrap();
        assert!(n > 0, "closed before asking for the body: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    tls
}

/// A refused POST whose client waits to be asked for the body is answered at once, not
/// asked for a body only to be thrown away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_that_waits_for_100_continue_is_not_asked_for_its_body() {
    let s = TestServer::start(BEARER).await;
    for auth in ["", "Authorization: Bearer wrong\r\n"] {
        let mut tls = raw_tls(&s).await;
        let head = format!(
            "POST / HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Length: 100\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        let answer = read_to_close(&mut tls, Duration::from_secs(10)).await.expect("answered and closed");
        assert!(answer.starts_with("HTTP/1.1 401"), "{auth:?}: {answer}");
        assert!(!answer.contains("100 Continue"), "{auth:?}: {answer}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_while_every_slot_is_busy() {
    let s = TestServer::start(&format!("[server]\nmax_connections = 2\nrequest_timeout_secs = 30\n{BEARER}")).await;
    let busy1 = busy_connection(&s).await;
    let _busy2 = busy_connection(&s).await;
    // A third connection is not served while both slots answer a request: it gets no answer.
    let mut third = raw_tls(&s).await;
    let ask = async move {
        third.write_all(b"GET /?crc_token=t HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
        read_to_close(&mut third, Duration::from_secs(20)).await
    };
    let answer = tokio::spawn(ask);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!answer.is_finished(), "the third connection was served beyond the cap");
    drop(busy1);
    let answer =
        tokio::time::timeout(Duration::from_secs(10), answer).await.expect("served once a slot freed").unwrap();
    assert!(answer.unwrap_or_default().starts_with("HTTP/1.1 200"), "answered once a slot freed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_sending_refused_requests_give_their_slots_to_a_delivery() {
    // Both slots held by clients that always have a refused request in flight: a POST with no
    // credentials whose body trickles in over most of a second (the receiver reads a refused
    // body for up to a second, so the connection stays usable), then the next one as soon as
    // the 401 comes. No connection is ever idle, yet a delivery goes through well before the
    // 30 s timeout.
    let s = TestServer::start(&format!("[server]\nmax_connections = 2\nrequest_timeout_secs = 30\n{BEARER}")).await;
    let mut attackers = Vec::new();
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for _ in 0..2 {
        let mut tls = served_tls(&s).await;
        let refused = refused.clone();
        attackers.push(tokio::spawn(async move {
            let head = "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n";
            loop {
                let sent = async {
                    tls.write_all(head.as_bytes()).await?;
                    for _ in 0..10 {
                        tokio::time::sleep(Duration::from_millis(70)).await;
                        tls.write_all(&[b' '; 10]).await?;
                    }
                    std::io::Result::Ok(())
                };
                if sent.await.is_err() {
                    return;
                }
                let mut seen = Vec::new();
                while !String::from_utf8_lossy(&seen).contains("\r\n\r\n{") {
                    let mut buf = [0u8; 1024];
                    match tls.read(&mut buf).await {
                        Ok(n) if n > 0 => seen.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                assert!(seen.starts_with(b"HTTP/1.1 401"), "{}", String::from_utf8_lossy(&seen));
                refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }));
    }
    // Each has had a request refused and sent its next: the slots are both taken that way.
    while refused.load(std::sync::atomic::Ordering::SeqCst) < 4 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resp = tokio::time::timeout(Duration::from_secs(10), s.post(unique_alert()))
        .await
        .expect("a delivery waited behind connections that authenticated nothing");
    assert_eq!(resp.status(), StatusCode::OK);
    for a in attackers {
        a.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_gives_its_slot_to_a_delivery() {
    // Both slots held by connections that never send a request: a delivery still goes through
    // at once (not after the 30 s timeout), and the oldest idle connection is closed for it.
    let s = TestServer::start(&format!("[server]\nmax_connections = 2\nrequest_timeout_secs = 30\n{BEARER}")).await;
    let mut oldest = served_tls(&s).await;
    let _idle = served_tls(&s).await;
    let resp = tokio::time::timeout(Duration::from_secs(10), s.post(unique_alert()))
        .await
        .expect("a delivery waited behind idle connections");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        read_to_close(&mut oldest, Duration::from_secs(10)).await.as_deref(),
        Some(""),
        "the oldest idle one closed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_never_sends_a_request_is_closed() {
    let s = TestServer::start(&format!("{SHORT_TIMEOUT}{BEARER}")).await;
    let mut tls = raw_tls(&s).await;
    // The server closes it well before this generous bound (its timeout is 1 s).
    assert_eq!(read_to_close(&mut tls, Duration::from_secs(10)).await.as_deref(), Some(""), "held open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_connection_that_only_answers_pings_is_closed() {
    // hyper's HTTP/2 client answers the server's pings, as a well-behaved idle client does;
    // the server still closes a connection that sends no request.
    let s = TestServer::start(&format!("{SHORT_TIMEOUT}{BEARER}")).await;
    let mut cfg = (*client_config(&s.server_cert_pem())).clone();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tls = connect(s.addr, Arc::new(cfg)).await.unwrap();
    let io = hyper_util::rt::TokioIo::new(tls);
    let (_sender, conn) =
        hyper::client::conn::http2::handshake::<_, _, axum::body::Body>(hyper_util::rt::TokioExecutor::new(), io)
            .await
            .unwrap();
    tokio::time::timeout(Duration::from_secs(10), conn).await.expect("an idle HTTP/2 connection was held open").ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_does_not_crowd_out_deliveries() {
    // 1,200 idle TCP connections against a bound of 1,024 waiting handshakes: the oldest are
    // dropped, and a real delivery still goes through at once. (tests/hostile.rs holds 10,000.)
    let s = TestServer::start(&format!("[server]\nrequest_timeout_secs = 60\n{BEARER}")).await;
    let mut idle = Vec::new();
    for _ in 0..1200 {
        idle.push(TcpStream::connect(s.addr).await.unwrap());
    }
    let resp = tokio::time::timeout(Duration::from_secs(20), s.post(unique_alert()))
        .await
        .expect("a delivery during the flood is served, not queued behind it");
    assert_eq!(resp.status(), StatusCode::OK);
    // The oldest idle connections were closed by the receiver.
    let mut first = idle.remove(0);
    let mut buf = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(5), first.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "the oldest idle connection was dropped: {closed:?}");
}
