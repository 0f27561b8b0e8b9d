use crate::support::*;
use reqwest::StatusCode;

const ALERT: &str = "netdata-alert-warning.json";

async fn status_of(c: &reqwest::Client, req: reqwest::RequestBuilder) -> Result<StatusCode, reqwest::Error> {
    let _ = c;
    req.body(unique_alert()).send().await.map(|r| r.status())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer() {
    let s = TestServer::start(BEARER).await;
    let c = s.client();
    let r = c.post(s.url("/")).bearer_auth("test-token").body(captured(ALERT)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    for wrong in ["test-token2", "test-toke", "", "TEST-TOKEN"] {
        let r = c.post(s.url("/")).bearer_auth(wrong).body(captured(ALERT)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{wrong:?}");
        assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
        assert!(json(r).await["error"].is_string());
    }
    let r = c.post(s.url("/")).body(captured(ALERT)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c.post(s.url("/")).basic_auth("test-token", Some("x")).body(captured(ALERT)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(s.history().len(), 1, "only the authenticated delivery is stored");
    assert_eq!(s.history()[0].auth, "bearer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic() {
    let s = TestServer::start(
        "[auth]\nclient_certificate = \"off\"\nmethod = \"basic\"\nusername = \"netdata\"\npassword = \"p4ss:word\"",
    )
    .await;
    let c = s.client();
    let ok = status_of(&c, c.post(s.url("/")).basic_auth("netdata", Some("p4ss:word"))).await.unwrap();
    assert_eq!(ok, StatusCode::OK);
    for (u, p) in [("netdata", "p4ss"), ("netdat", "p4ss:word"), ("", ""), ("netdata", "")] {
        let st = status_of(&c, c.post(s.url("/")).basic_auth(u, Some(p))).await.unwrap();
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{u}:{p}");
    }
    let r = c.post(s.url("/")).body(captured(ALERT)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_headers_alone_and_with_bearer() {
    let s = TestServer::start(
        "[auth]\nclient_certificate = \"off\"\n[auth.headers]\nX-Api-Key = \"k-123\"\nX-Other = \"o\"",
    )
    .await;
    let c = s.client();
    let ok = status_of(&c, c.post(s.url("/")).header("x-api-key", "k-123").header("X-OTHER", "o")).await.unwrap();
    assert_eq!(ok, StatusCode::OK);
    for (k, o) in [("k-124", "o"), ("k-123", "p"), ("", "o")] {
        let st = status_of(&c, c.post(s.url("/")).header("x-api-key", k).header("x-other", o)).await.unwrap();
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    let r = c.post(s.url("/")).header("x-api-key", "k-123").body(unique_alert()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "one header missing");
    // Every 401 names a scheme, even with headers alone (and not the headers themselves).
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(challenge.starts_with("Headers ") && !challenge.to_lowercase().contains("x-"), "{challenge}");

    let s = TestServer::start(&format!("{BEARER}[auth.headers]\nX-Api-Key = \"k\"")).await;
    let c = s.client();
    assert_eq!(
        status_of(&c, c.post(s.url("/")).bearer_auth("test-token").header("x-api-key", "k")).await.unwrap(),
        StatusCode::OK
    );
    // The right token without the header: 401, naming the scheme to answer with (a 401 must).
    let r = c.post(s.url("/")).bearer_auth("test-token").body(unique_alert()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    assert_eq!(status_of(&c, c.post(s.url("/")).header("x-api-key", "k")).await.unwrap(), StatusCode::UNAUTHORIZED);
    assert_eq!(s.history()[0].auth, "bearer+headers");
}

fn mtls_config(ca_path: &std::path::Path, mode: &str, extra: &str) -> String {
    format!("[auth]\nclient_certificate = \"{mode}\"\nclient_ca = \"{}\"\n{extra}", ca_path.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_required() {
    let netdata = TestCa::new("Test stand-in for the Netdata Root CA");
    let other = TestCa::new("Some other CA");
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(&mtls_config(&netdata.write(dir.path()), "required", "")).await;

    for (cn, sans) in
        [("app.netdata.cloud", vec![]), ("api.netdata.cloud", vec![]), ("whatever", vec!["app.netdata.cloud"])]
    {
        let c = s.client_with_cert(&netdata.client_pem(cn, &sans, false));
        assert_eq!(status_of(&c, c.post(s.url("/"))).await.unwrap(), StatusCode::OK, "{cn} {sans:?}");
    }
    // A certificate from the right CA with a name not in client_names: 403 with a reason.
    let c = s.client_with_cert(&netdata.client_pem("evil.example.com", &["evil.example.com"], false));
    let r = c.post(s.url("/")).body(captured(ALERT)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(json(r).await["error"].as_str().unwrap().contains("client_names"));
    // No certificate: 403 with a reason, even with a bearer token.
    let c = s.client();
    let r = c.post(s.url("/")).bearer_auth("x").body(captured(ALERT)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(json(r).await["error"].as_str().unwrap().contains("client certificate"));
    // Another CA, or expired: the handshake fails.
    let c = s.client_with_cert(&other.client_pem("app.netdata.cloud", &[], false));
    assert!(status_of(&c, c.post(s.url("/"))).await.is_err(), "a certificate from another CA must not connect");
    let c = s.client_with_cert(&netdata.client_pem("app.netdata.cloud", &[], true));
    assert!(status_of(&c, c.post(s.url("/"))).await.is_err(), "an expired certificate must not connect");
    // The server keeps serving.
    let c = s.client_with_cert(&netdata.client_pem("app.netdata.cloud", &[], false));
    assert_eq!(status_of(&c, c.post(s.url("/"))).await.unwrap(), StatusCode::OK);
    let h = s.history();
    assert_eq!(h.len(), 4);
    assert!(h.iter().all(|e| e.auth.starts_with("mtls:")), "{h:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_optional_with_bearer() {
    let netdata = TestCa::new("Test Netdata");
    let dir = tempfile::tempdir().unwrap();
    let s =
        TestServer::start(&mtls_config(&netdata.write(dir.path()), "optional", "method = \"bearer\"\ntoken = \"tok\""))
            .await;
    let c = s.client();
    assert_eq!(status_of(&c, c.post(s.url("/")).bearer_auth("tok")).await.unwrap(), StatusCode::OK);
    assert_eq!(status_of(&c, c.post(s.url("/")).bearer_auth("bad")).await.unwrap(), StatusCode::UNAUTHORIZED);
    let good = s.client_with_cert(&netdata.client_pem("app.netdata.cloud", &[], false));
    assert_eq!(status_of(&good, good.post(s.url("/")).bearer_auth("tok")).await.unwrap(), StatusCode::OK);
    assert_eq!(
        status_of(&good, good.post(s.url("/"))).await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "a certificate does not replace the token"
    );
    let wrong = s.client_with_cert(&netdata.client_pem("evil", &[], false));
    assert_eq!(status_of(&wrong, wrong.post(s.url("/")).bearer_auth("tok")).await.unwrap(), StatusCode::FORBIDDEN);
    let auths: Vec<String> = s.history().into_iter().map(|e| e.auth).collect();
    assert!(
        auths.contains(&"bearer".to_string()) && auths.contains(&"mtls:app.netdata.cloud+bearer".to_string()),
        "{auths:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_netdata_ca_refuses_test_certificates() {
    // With the real Netdata Root CA trusted, a certificate we can make is from "another CA".
    let fake = TestCa::new("Netdata Root CA");
    let s = TestServer::start("[auth]\nclient_certificate = \"required\"\nclient_ca = \"netdata\"").await;
    let c = s.client_with_cert(&fake.client_pem("app.netdata.cloud", &[], false));
    assert!(status_of(&c, c.post(s.url("/"))).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_are_throttled_even_for_the_right_token() {
    let s = TestServer::start(&format!("{BEARER}max_failures_per_minute = 5\n")).await;
    let c = s.client();
    for i in 0..5 {
        let st = status_of(&c, c.post(s.url("/")).bearer_auth(format!("guess-{i}"))).await.unwrap();
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    let r = c.post(s.url("/")).bearer_auth("test-token").body(captured(ALERT)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(json(r).await["error"].as_str().unwrap().contains("authentication failures"));
    // The challenge is not throttled.
    let r = c.get(s.url("/?crc_token=a")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(s.history().is_empty());
}

/// A request with no credentials guesses nothing: scanners posting without any (behind a
/// tunnel, from the tunnel's address, like Netdata) must not throttle it. Wrong ones do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_credentials_do_not_throttle_but_wrong_ones_do() {
    let cfg = format!("{BEARER}max_failures_per_minute = 3\n[auth.headers]\nX-Api-Key = \"key-1\"\n");
    let s = TestServer::start(&cfg).await;
    let c = s.client();
    let post = || c.post(s.url("/")).body(captured(ALERT));
    for _ in 0..6 {
        // No Authorization; the right token without the extra header.
        assert_eq!(status_of(&c, post()).await.unwrap(), StatusCode::UNAUTHORIZED);
        assert_eq!(status_of(&c, post().bearer_auth("test-token")).await.unwrap(), StatusCode::UNAUTHORIZED);
    }
    let r = post().bearer_auth("test-token").header("x-api-key", "key-1").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Two Authorization headers, whichever comes first: refused, and a guess.
    for pair in [["Bearer test-token", "Bearer wrong"], ["Bearer wrong", "Bearer test-token"]] {
        let r = post().header("authorization", pair[0]).header("authorization", pair[1]).header("x-api-key", "key-1");
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{pair:?}");
        assert_eq!(json(r).await["error"], "more than one Authorization header");
    }
    // A wrong extra header is a guess too: the third one throttles.
    let st = status_of(&c, post().bearer_auth("test-token").header("x-api-key", "key-2")).await.unwrap();
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let st = status_of(&c, post().bearer_auth("test-token").header("x-api-key", "key-1")).await.unwrap();
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(s.history().len(), 1);
}

/// Behind a tunnel every client arrives from the tunnel's address. Strangers' wrong guesses
/// throttle that address, but a delivery whose credentials could never have been guessed
/// still gets through: secrets too strong to guess, or a verified client certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_address_still_takes_credentials_too_strong_to_guess() {
    let strong = alertray::config::generate_secret();
    let s = TestServer::start(&format!(
        "[auth]\nclient_certificate = \"off\"\nmethod = \"bearer\"\ntoken = \"{}\"\nmax_failures_per_minute = 3\n",
        strong.expose()
    ))
    .await;
    let c = s.client();
    for i in 0..3 {
        let st = status_of(&c, c.post(s.url("/")).bearer_auth(format!("guess-{i}"))).await.unwrap();
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    for wrong in ["guess-3", "", &strong.expose()[1..]] {
        let st = status_of(&c, c.post(s.url("/")).bearer_auth(wrong)).await.unwrap();
        assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{wrong:?}");
    }
    let st = status_of(&c, c.post(s.url("/")).bearer_auth(strong.expose())).await.unwrap();
    assert_eq!(st, StatusCode::OK);
    assert_eq!(s.history().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_address_still_takes_a_verified_client_certificate() {
    let netdata = TestCa::new("Test Netdata");
    let dir = tempfile::tempdir().unwrap();
    let weak = "method = \"bearer\"\ntoken = \"tok\"\nmax_failures_per_minute = 3";
    let s = TestServer::start(&mtls_config(&netdata.write(dir.path()), "optional", weak)).await;
    let stranger = s.client();
    for i in 0..3 {
        let st = status_of(&stranger, stranger.post(s.url("/")).bearer_auth(format!("guess-{i}"))).await.unwrap();
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    // The weak token alone is throttled like a guess.
    let st = status_of(&stranger, stranger.post(s.url("/")).bearer_auth("tok")).await.unwrap();
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    let netdata_client = s.client_with_cert(&netdata.client_pem("app.netdata.cloud", &[], false));
    let st = status_of(&netdata_client, netdata_client.post(s.url("/")).bearer_auth("tok")).await.unwrap();
    assert_eq!(st, StatusCode::OK);
    // The certificate does not make a wrong token right, nor stop the throttle for it.
    let st = status_of(&netdata_client, netdata_client.post(s.url("/")).bearer_auth("bad")).await.unwrap();
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    let wrong_name = s.client_with_cert(&netdata.client_pem("evil", &[], false));
    let st = status_of(&wrong_name, wrong_name.post(s.url("/")).bearer_auth("tok")).await.unwrap();
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
    let auths: Vec<String> = s.history().into_iter().map(|e| e.auth).collect();
    assert_eq!(auths, ["mtls:app.netdata.cloud+bearer"]);
}

/// Refusals for the certificate are not guesses: they do not throttle the address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_refusals_do_not_throttle() {
    let netdata = TestCa::new("Test Netdata");
    let dir = tempfile::tempdir().unwrap();
    let cfg = "method = \"bearer\"\ntoken = \"tok\"\nmax_failures_per_minute = 2";
    let s = TestServer::start(&mtls_config(&netdata.write(dir.path()), "required", cfg)).await;
    let stranger = s.client();
    let wrong_name = s.client_with_cert(&netdata.client_pem("evil", &[], false));
    for _ in 0..5 {
        let st = status_of(&stranger, stranger.post(s.url("/")).bearer_auth("tok")).await.unwrap();
        assert_eq!(st, StatusCode::FORBIDDEN);
        let st = status_of(&wrong_name, wrong_name.post(s.url("/")).bearer_auth("tok")).await.unwrap();
        assert_eq!(st, StatusCode::FORBIDDEN);
    }
    // Wrong tokens still are guesses.
    let good = s.client_with_cert(&netdata.client_pem("app.netdata.cloud", &[], false));
    for i in 0..2 {
        let st = status_of(&good, good.post(s.url("/")).bearer_auth(format!("guess-{i}"))).await.unwrap();
        assert_eq!(st, StatusCode::UNAUTHORIZED);
    }
    let st = status_of(&good, good.post(s.url("/")).bearer_auth("guess-3")).await.unwrap();
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_authentication_is_refused_at_start() {
    let e = alertray::config::Config::from_toml("[auth]\nclient_certificate = \"optional\"").unwrap_err();
    assert_eq!(e.key(), Some("auth"));
    let s = TestServer::start("[auth]\nclient_certificate = \"off\"\nallow_unauthenticated = true").await;
    let c = s.client();
    assert_eq!(status_of(&c, c.post(s.url("/"))).await.unwrap(), StatusCode::OK);
    assert_eq!(s.history()[0].auth, "none");
}
