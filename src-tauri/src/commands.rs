//! The commands the windows' pages invoke. Each one forwards to the core and returns its
//! result, or a [`CommandError`] with a stable `code` and a message for the user.

use alertray::alerts::Alert;
use alertray::app::ReceiverStatus;
use alertray::check::Report;
use alertray::config::{self, ConfigError, RawConfig};
use alertray::guide::ConnectGuide;
use alertray::policy::{Snooze, SnoozeScope};
use alertray::store::{self, HistoryEntry, HistoryQuery, SnoozeChange, VerificationToken};
use alertray::tray::TrayModel;
use alertray::tunnel::TunnelStatus;
use serde::{Deserialize, Serialize};
use tauri::{Runtime, State};

use crate::Shell;

/// An error a command returns to the page: `{"code": ..., "message": ..., "key": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandError {
    /// What kind of failure: `invalid_config`, `store`, `not_found`, `refused`, `io`.
    pub code: &'static str,
    /// A sentence for the user.
    pub message: String,
    /// The config key at fault, for `invalid_config` (the first one's, when several are).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// When several settings are at fault, each one, so that the page shows each at its field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
}

/// One setting at fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Its key, when the problem is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// What is wrong with it.
    pub message: String,
}

impl CommandError {
    fn new(code: &'static str, message: impl ToString) -> CommandError {
        CommandError { code, message: message.to_string(), key: None, problems: Vec::new() }
    }
}

impl From<ConfigError> for CommandError {
    fn from(e: ConfigError) -> CommandError {
        let problems = match &e {
            ConfigError::Several(all) => {
                all.iter().map(|p| Problem { key: p.key().map(str::to_string), message: p.to_string() }).collect()
            }
            _ => Vec::new(),
        };
        CommandError { code: "invalid_config", key: e.key().map(str::to_string), message: e.to_string(), problems }
    }
}

impl From<store::StoreError> for CommandError {
    fn from(e: store::StoreError) -> CommandError {
        CommandError::new("store", e)
    }
}

impl From<store::QueryError> for CommandError {
    fn from(e: store::QueryError) -> CommandError {
        CommandError::new("store", e)
    }
}

type Result<T> = std::result::Result<T, CommandError>;

/// The invoke handler with every command.
pub fn handler<R: Runtime>() -> impl Fn(tauri::ipc::Invoke<R>) -> bool + Send + Sync + 'static {
    tauri::generate_handler![
        status,
        active_alerts,
        history,
        history_count,
        acknowledge,
        dismiss,
        snooze,
        resume,
        settings,
        validate_settings,
        save_settings,
        generate_secret,
        guide,
        check_connection,
        open_url,
        set_autostart,
        copy_text,
        open_window
    ]
}

/// What the windows show in their header, and where files are.
#[derive(Debug, Serialize)]
pub struct Status {
    receiver: ReceiverStatus,
    tray: TrayModel,
    snoozes: Vec<Snooze>,
    config_path: String,
    data_dir: String,
    log_dir: String,
}

#[tauri::command]
fn status<R: Runtime>(app: tauri::AppHandle<R>, shell: State<'_, Shell>) -> Status {
    Status {
        receiver: shell.core.status(),
        tray: crate::tray::current_model(&app),
        // Only those in force: expired ones stay in the policy until the next change.
        snoozes: shell.core.policy.get().snoozes.into_iter().filter(|s| s.until_ms > store::now_ms()).collect(),
        config_path: shell.core.paths.config_file.display().to_string(),
        data_dir: shell.core.paths.data_dir.display().to_string(),
        log_dir: shell.log_dir.display().to_string(),
    }
}

#[tauri::command]
fn active_alerts(shell: State<'_, Shell>) -> Result<Vec<Alert>> {
    Ok(store::active(&shell.core.reader()?)?)
}

/// History filters as the page sends them.
#[derive(Debug, Default, Deserialize)]
pub struct HistoryArgs {
    since_ms: Option<i64>,
    status: Option<String>,
    host: Option<String>,
    text: Option<String>,
    before_id: Option<i64>,
    limit: Option<usize>,
}

impl HistoryArgs {
    fn query(self) -> HistoryQuery {
        let nonempty = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
        HistoryQuery {
            since_ms: self.since_ms,
            until_ms: None,
            status: nonempty(self.status),
            host: nonempty(self.host),
            text: nonempty(self.text),
            before_id: self.before_id,
            limit: Some(self.limit.unwrap_or(50).clamp(1, 500)),
        }
    }
}

#[tauri::command]
fn history(shell: State<'_, Shell>, query: HistoryArgs) -> Result<Vec<HistoryEntry>> {
    Ok(store::history(&shell.core.reader()?, &query.query())?)
}

/// How many notifications match the History filters, all pages together. Counting reads
/// every matching row, so it runs off the window's thread and the page asks for it after
/// showing the rows.
#[tauri::command]
async fn history_count(shell: State<'_, Shell>, query: HistoryArgs) -> Result<u64> {
    let conn = shell.core.reader()?;
    let q = query.query();
    tauri::async_runtime::spawn_blocking(move || store::history_count(&conn, &q))
        .await
        .map_err(|e| CommandError::new("store", e))?
        .map_err(CommandError::from)
}

#[tauri::command]
async fn acknowledge<R: Runtime>(
    app: tauri::AppHandle<R>,
    shell: State<'_, Shell>,
    key: String,
    acknowledged: bool,
) -> Result<()> {
    if !shell.core.store.acknowledge(&key, acknowledged).await? {
        return Err(CommandError::new("not_found", "this alert is no longer active"));
    }
    crate::request_refresh(&app, "alerts");
    Ok(())
}

#[tauri::command]
async fn dismiss<R: Runtime>(app: tauri::AppHandle<R>, shell: State<'_, Shell>, key: String) -> Result<()> {
    if !shell.core.store.dismiss(&key).await? {
        return Err(CommandError::new("not_found", "this alert is no longer active"));
    }
    crate::request_refresh(&app, "alerts");
    Ok(())
}

/// A snooze as the page asks for it.
#[derive(Debug, Deserialize)]
pub struct SnoozeArgs {
    #[serde(flatten)]
    scope: SnoozeScope,
    /// Minutes from now; ignored when `until_tomorrow` is set.
    minutes: Option<i64>,
    /// Until the next 08:00.
    #[serde(default)]
    until_tomorrow: bool,
}

#[tauri::command]
async fn snooze<R: Runtime>(app: tauri::AppHandle<R>, shell: State<'_, Shell>, snooze: SnoozeArgs) -> Result<i64> {
    let until_ms = if snooze.until_tomorrow {
        alertray::policy::next_eight_am(chrono::Local::now()).timestamp_millis()
    } else {
        let minutes = snooze.minutes.unwrap_or(60);
        if !(1..=7 * 24 * 60).contains(&minutes) {
            return Err(CommandError::new("refused", "a snooze lasts from 1 minute to 7 days"));
        }
        store::now_ms() + minutes * 60_000
    };
    shell.core.snooze(SnoozeChange::Set(Snooze { scope: snooze.scope, until_ms })).await?;
    crate::request_refresh(&app, "snooze");
    Ok(until_ms)
}

#[tauri::command]
async fn resume<R: Runtime>(
    app: tauri::AppHandle<R>,
    shell: State<'_, Shell>,
    scope: Option<SnoozeScope>,
) -> Result<()> {
    let change = match scope {
        Some(s) => SnoozeChange::Clear(s),
        None => SnoozeChange::ClearAll,
    };
    shell.core.snooze(change).await?;
    crate::request_refresh(&app, "snooze");
    Ok(())
}

/// The config as written, for the Settings form.
#[derive(Debug, Serialize)]
pub struct Settings {
    raw: RawConfig,
    /// Why the file could not be read, if it could not (the form then starts from defaults).
    load_error: Option<CommandError>,
    /// Why the file's latest edit by hand is not applied (the receiver runs on as it was).
    refused: Option<String>,
    config_path: String,
    log_dir: String,
    autostart: bool,
}

#[tauri::command]
fn settings<R: Runtime>(app: tauri::AppHandle<R>, shell: State<'_, Shell>) -> Settings {
    let (raw, load_error) = match config::load_raw(&shell.core.paths.config_file) {
        Ok(raw) => (raw, None),
        // The form shows what the file holds but the setting at fault, not the defaults.
        Err(e) => (config::salvage_raw(&shell.core.paths.config_file).unwrap_or_default(), Some(CommandError::from(e))),
    };
    Settings {
        raw,
        load_error,
        refused: shell.core.refused_edit(),
        config_path: shell.core.paths.config_file.display().to_string(),
        log_dir: shell.log_dir.display().to_string(),
        autostart: autostart_enabled(&app),
    }
}

#[tauri::command]
fn validate_settings(shell: State<'_, Shell>, raw: RawConfig) -> Result<()> {
    raw.validate(config::config_base(&shell.core.paths.config_file))?;
    Ok(())
}

#[tauri::command]
async fn save_settings<R: Runtime>(
    app: tauri::AppHandle<R>,
    shell: State<'_, Shell>,
    raw: RawConfig,
) -> Result<ReceiverStatus> {
    let new = raw.clone().validate(config::config_base(&shell.core.paths.config_file))?;
    let status = shell.core.save_config(&raw, new).await?;
    crate::request_refresh(&app, "receiver");
    Ok(status)
}

#[tauri::command]
fn generate_secret() -> String {
    config::generate_secret().expose().to_string()
}

/// What the Connect guide shows.
#[derive(Debug, Serialize)]
pub struct Guide {
    guide: Option<ConnectGuide>,
    token: Option<VerificationToken>,
    receiver: ReceiverStatus,
    tunnel: TunnelStatus,
    now_ms: i64,
}

#[tauri::command]
async fn guide(shell: State<'_, Shell>) -> Result<Guide> {
    // Without a store (degraded) the guide still shows everything else.
    let token = shell.core.reader().ok().and_then(|c| store::latest_token(&c).ok()).flatten();
    let core = &shell.core;
    Ok(Guide {
        guide: core.config().await.map(|c| ConnectGuide::of(&c).with_webhook_url(core.webhook_url(&c))),
        token,
        receiver: core.status(),
        tunnel: core.tunnel_status(),
        now_ms: store::now_ms(),
    })
}

/// "Check connection": the path from the internet to the receiver, step by step.
#[tauri::command]
async fn check_connection(shell: State<'_, Shell>) -> Result<Report> {
    Ok(shell.core.check().await)
}

/// Opens an http(s) URL in the default browser.
pub fn open_in_browser(url: &str) {
    if let Err(e) = alertray::notify::open_url(url) {
        tracing::warn!("{e}");
    }
}

/// Opens (or brings forward) the window of `page` (`alerts`, `settings`, `guide`), at
/// `anchor` (a setting's key, for Settings), so a link in one window never turns it into
/// another.
#[tauri::command]
fn open_window<R: Runtime>(app: tauri::AppHandle<R>, page: String, anchor: Option<String>) -> Result<()> {
    let page = crate::windows::Page::named(&page)
        .ok_or_else(|| CommandError::new("not_found", format!("no window {page:?}")))?;
    crate::windows::open_at(&app, page, anchor.as_deref());
    Ok(())
}

#[tauri::command]
fn open_url(url: String) -> Result<()> {
    alertray::notify::open_url(&url).map_err(|e| CommandError::new("refused", e))
}

fn autostart_enabled<R: Runtime>(app: &tauri::AppHandle<R>) -> bool {
    use tauri::Manager as _;
    app.try_state::<tauri_plugin_autostart::AutoLaunchManager>().is_some_and(|m| m.is_enabled().unwrap_or(false))
}

#[tauri::command]
fn set_autostart<R: Runtime>(app: tauri::AppHandle<R>, enabled: bool) -> Result<bool> {
    use tauri::Manager as _;
    let manager = app
        .try_state::<tauri_plugin_autostart::AutoLaunchManager>()
        .ok_or_else(|| CommandError::new("refused", "autostart is not available here"))?;
    let result = if enabled { manager.enable() } else { manager.disable() };
    result.map_err(|e| CommandError::new("io", format!("cannot change autostart: {e}")))?;
    Ok(manager.is_enabled().unwrap_or(enabled))
}

#[tauri::command]
fn copy_text<R: Runtime>(app: tauri::AppHandle<R>, text: String) -> Result<()> {
    use tauri::Manager as _;
    use tauri_plugin_clipboard_manager::ClipboardExt as _;
    if app.try_state::<tauri_plugin_clipboard_manager::Clipboard<R>>().is_none() {
        return Err(CommandError::new("refused", "the clipboard is not available here"));
    }
    app.clipboard().write_text(text).map_err(|e| CommandError::new("io", format!("cannot copy: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_errors_have_a_stable_json_shape() {
        let e = CommandError::from(alertray::config::Config::from_toml("[auth]\nmethod = \"x\"").unwrap_err());
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({
                "code": "invalid_config",
                "key": "auth.method",
                "message": "auth.method = \"x\" is not accepted: \"none\", \"basic\" or \"bearer\""
            })
        );
        let two = "[server]\nlisten = \"nowhere\"\n[auth]\nmethod = \"x\"";
        let e = CommandError::from(alertray::config::Config::from_toml(two).unwrap_err());
        assert_eq!(
            serde_json::to_value(&e).unwrap()["problems"],
            serde_json::json!([
                {"key": "server.listen", "message": "server.listen = \"nowhere\" is not accepted: an IP address and port, like \"127.0.0.1:8443\" or \"[::1]:8443\""},
                {"key": "auth.method", "message": "auth.method = \"x\" is not accepted: \"none\", \"basic\" or \"bearer\""},
            ])
        );
        assert_eq!(e.key.as_deref(), Some("server.listen"));
        let e = CommandError::new("not_found", "gone");
        assert_eq!(serde_json::to_value(&e).unwrap(), serde_json::json!({"code": "not_found", "message": "gone"}));
    }
}
