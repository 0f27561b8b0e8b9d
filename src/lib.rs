//! Alertray's core: receives Netdata Cloud alert webhooks over HTTPS, verifies and understands
//! them, keeps them, and tells subscribers (the desktop shell, the CLI, the notifier) what
//! changed. It has no GUI dependency and runs headless as `alertray serve`.
//!
//! # Layout
//!
//! Data flows one way, one module per step:
//!
//! ```text
//! TCP accept -> tls -> server (HTTP) -> auth -> payload -> store (committed before the 2xx)
//!   -> alerts (active state, events) -> notify (desktop popups) / tray / UI
//! ```
//!
//! - [`config`]: the TOML config, read raw then validated, with errors naming the key.
//! - [`tls`]: the server certificate (self-signed or reloaded PEM files) and the client
//!   certificate verifier against the Netdata Root CA.
//! - [`acme`]: a publicly trusted certificate from an ACME CA, via TLS-ALPN-01 on our own port.
//! - [`server`]: the HTTPS receiver (axum over hyper over rustls) and its limits.
//! - [`auth`]: client certificate names, Basic, Bearer, extra headers, failure throttling.
//! - [`challenge`]: the `crc_token` HMAC answer.
//! - [`payload`]: any body to one [`payload::Notification`].
//! - [`store`]: SQLite, group-committed by one writer thread; history and token queries.
//! - [`alerts`]: what a notification does to the active set; the [`alerts::Event`]s.
//! - [`notify`]: the [`notify::Notifier`] port, desktop popups, storm folding.
//! - [`policy`]: which popups are held back (snooze, quiet hours, minimum severity).
//! - [`tray`]: what the tray shows (icon, tooltip, menu entries), for the shell to draw.
//! - [`guide`]: the values to paste into Netdata Cloud's webhook form.
//! - [`tunnel`]: the user's tunnel command, supervised, and the public URL read from its output.
//! - [`check`]: "Check connection", through the public URL as Netdata would go.
//! - [`headless`]: `alertray serve`, the receiver without a window.
//! - [`text`]: text from notifications made safe to show on one line.
//! - [`app`]: paths and start-up wiring shared by the CLI and the desktop shell.
//! - [`lock`]: locks that a panic elsewhere does not poison for good.

pub mod acme;
pub mod alerts;
pub mod app;
pub mod auth;
pub mod challenge;
pub mod check;
pub mod config;
pub mod guide;
pub mod headless;
pub mod lock;
pub mod notify;
pub mod payload;
pub mod policy;
pub mod server;
pub mod store;
pub mod text;
pub mod tls;
pub mod tray;
pub mod tunnel;
