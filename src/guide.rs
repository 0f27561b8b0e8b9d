//! The values to paste into Netdata Cloud's webhook form, from the config in use.

use serde::Serialize;

use crate::config::{AuthMethod, ClientCertMode, Config};

/// What the user pastes into Netdata Cloud, field by field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectGuide {
    /// `server.public_url` joined with `server.path`, when the public URL is set.
    pub webhook_url: Option<String>,
    /// Where the receiver listens locally (what the tunnel must forward to).
    pub listen: String,
    /// `none`, `basic` or `bearer`.
    pub method: &'static str,
    /// The Basic user name.
    pub username: Option<String>,
    /// The Basic password.
    pub password: Option<String>,
    /// The bearer token.
    pub token: Option<String>,
    /// Extra headers, name and value.
    pub headers: Vec<(String, String)>,
    /// The challenge secret.
    pub challenge_secret: Option<String>,
    /// Whether a client certificate is asked for.
    pub client_certificate: ClientCertMode,
    /// Whether `tunnel.command` is set: the webhook URL is then the tunnel's, once it runs.
    pub tunnel_command: bool,
}

impl ConnectGuide {
    /// The guide for `cfg`.
    pub fn of(cfg: &Config) -> ConnectGuide {
        let (username, password, token) = match &cfg.auth.method {
            AuthMethod::None => (None, None, None),
            AuthMethod::Basic { username, password } => (Some(username.clone()), Some(password.expose().into()), None),
            AuthMethod::Bearer { token } => (None, None, Some(token.expose().into())),
        };
        ConnectGuide {
            webhook_url: cfg.server.webhook_url(),
            listen: cfg.server.listen.to_string(),
            method: cfg.auth.method.name(),
            username,
            password,
            token,
            headers: cfg.auth.headers.iter().map(|(k, v)| (k.to_string(), v.expose().to_string())).collect(),
            challenge_secret: cfg.auth.challenge_secret.as_ref().map(|s| s.expose().to_string()),
            client_certificate: cfg.auth.client_certificate,
            tunnel_command: cfg.tunnel.is_some(),
        }
    }

    /// The guide with `url` as the webhook URL (the tunnel's, when one is up).
    pub fn with_webhook_url(mut self, url: Option<String>) -> ConnectGuide {
        if url.is_some() {
            self.webhook_url = url;
        }
        self
    }

    /// The guide as plain text, one field a line.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let url = self.webhook_url.clone().unwrap_or_else(|| match self.tunnel_command {
            true => "(the tunnel's, once `alertray serve` or the app has started it)".into(),
            false => "(set tunnel.command, or server.public_url to your tunnel's https:// URL)".into(),
        });
        s.push_str(&format!("Webhook URL:        {url}\n"));
        match self.method {
            "basic" => s.push_str(&format!(
                "Authentication:     Basic\nUsername:           {}\nPassword:           {}\n",
                self.username.as_deref().unwrap_or_default(),
                self.password.as_deref().unwrap_or_default()
            )),
            "bearer" => s.push_str(&format!(
                "Authentication:     Bearer\nToken:              {}\n",
                self.token.as_deref().unwrap_or_default()
            )),
            _ => s.push_str("Authentication:     Mutual TLS (no Basic/Bearer)\n"),
        }
        for (name, value) in &self.headers {
            s.push_str(&format!("Extra header:       {name}: {value}\n"));
        }
        match &self.challenge_secret {
            Some(c) => s.push_str(&format!("Challenge secret:   {c}\n")),
            None => s.push_str("Challenge secret:   (not set: add auth.challenge_secret)\n"),
        }
        s.push_str(match self.client_certificate {
            ClientCertMode::Required => "Client certificate: required (needs a tunnel that passes TLS through)\n",
            ClientCertMode::Optional => "Client certificate: checked when presented\n",
            ClientCertMode::Off => "Client certificate: not asked for\n",
        });
        s
    }
}
