use crate::support::*;
use reqwest::StatusCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_the_contract_vectors_without_credentials() {
    let s = TestServer::start(BEARER).await;
    let r = s.client().get(s.url("/?crc_token=abc123")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(json(r).await["response_token"], "sha256=WuWsgCoaXJT7aD4b+hIfn3AKJplSE/8vwcUD60PsccY=");

    let s2 = TestServer::start(&BEARER.replace("\"secret\"", "\"YOUR_CHALLENGE_SECRET\"")).await;
    let r = s2.client().get(s2.url("/?crc_token=test")).send().await.unwrap();
    assert_eq!(json(r).await["response_token"], "sha256=bumfqA43gEy/KBnlkqNYYD5Br+1mrNY4P6Yah0zUdzI=");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decodes_the_token_and_ignores_other_parameters() {
    let s = TestServer::start(BEARER).await;
    for (query, token) in
        [("x=1&crc_token=a%2Bb%3D", "a+b="), ("crc_token=a+b&y", "a b"), ("crc_token=%E2%9C%93", "\u{2713}")]
    {
        let r = s.client().get(s.url(&format!("/?{query}"))).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{query}");
        let expected = alertray::challenge::response_token(b"secret", token);
        assert_eq!(json(r).await["response_token"], expected.as_str(), "{query}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_on_a_custom_path_even_when_client_certificates_are_required() {
    let ca = TestCa::new("Test Root");
    let dir = tempfile::tempdir().unwrap();
    let ca_path = ca.write(dir.path());
    let cfg = format!(
        "[server]\npath = \"/netdata/hook\"\n[auth]\nclient_certificate = \"required\"\nclient_ca = \"{}\"\nchallenge_secret = \"secret\"\n",
        ca_path.display()
    );
    let s = TestServer::start(&cfg).await;
    let r = s.client().get(s.url("/netdata/hook?crc_token=abc123")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(json(r).await["response_token"], "sha256=WuWsgCoaXJT7aD4b+hIfn3AKJplSE/8vwcUD60PsccY=");
    let r = s.client().get(s.url("/?crc_token=abc123")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_token_or_secret_is_a_clear_json_error() {
    let s = TestServer::start(BEARER).await;
    for q in ["/", "/?other=1", "/?crc_token="] {
        let r = s.client().get(s.url(q)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{q}");
        let body = json(r).await;
        assert!(body["error"].as_str().unwrap().contains("crc_token"), "{body}");
    }
    let s = TestServer::start("[auth]\nmethod = \"bearer\"\ntoken = \"t\"").await;
    let r = s.client().get(s.url("/?crc_token=abc")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = json(r).await;
    assert!(body["error"].as_str().unwrap().contains("auth.challenge_secret"), "{body}");
    assert!(body.get("response_token").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_else_is_served() {
    let s = TestServer::start(BEARER).await;
    let c = s.client();
    let r = c.get(s.url("/other?crc_token=x")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(json(r).await["error"].is_string());
    for m in [reqwest::Method::PUT, reqwest::Method::DELETE, reqwest::Method::PATCH] {
        let r = c.request(m.clone(), s.url("/")).bearer_auth("test-token").send().await.unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "{m}");
        assert!(r.headers().contains_key("allow"));
    }
}
