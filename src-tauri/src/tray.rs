//! The tray icon and its menu, drawn from the core's tray model. On Linux, clicks on the icon
//! itself do not reach the app, so every action is in the menu.

use alertray::app::ReceiverStatus;
use alertray::lock::MutexExt as _;
use alertray::policy::{Snooze, SnoozeScope};
use alertray::store::{self, SnoozeChange};
use alertray::tray::{tray_model, TrayIcon, TrayModel};
use tauri::image::Image;
use tauri::menu::{IsMenuItem, Menu, MenuItem, PredefinedMenuItem, Submenu};
use tauri::tray::TrayIconBuilder;
use tauri::{Manager, Runtime};

use crate::windows::{self, Page};
use crate::Shell;

/// The tray icon's id.
pub const TRAY_ID: &str = "alertray";

fn icon_bytes(icon: TrayIcon) -> &'static [u8] {
    match icon {
        TrayIcon::AllClear => include_bytes!("../../icons/tray-clear.png"),
        TrayIcon::Warning => include_bytes!("../../icons/tray-warning.png"),
        TrayIcon::Critical => include_bytes!("../../icons/tray-critical.png"),
        TrayIcon::Unreachable => include_bytes!("../../icons/tray-unreachable.png"),
        TrayIcon::Snoozed => include_bytes!("../../icons/tray-snoozed.png"),
        TrayIcon::NotRunning => include_bytes!("../../icons/tray-stopped.png"),
    }
}

/// Creates the tray icon with a first menu.
pub fn create<R: Runtime>(app: &tauri::AppHandle<R>) -> tauri::Result<()> {
    let model = current_model(app);
    let menu = build_menu(app, &model)?;
    TrayIconBuilder::with_id(TRAY_ID)
        .icon(Image::from_bytes(icon_bytes(model.icon))?)
        .tooltip(&model.tooltip)
        .menu(&menu)
        .show_menu_on_left_click(true)
        .on_menu_event(|app, event| on_menu(app, event.id().as_ref()))
        .build(app)?;
    *app.state::<Shell>().tray_model.locked() = Some(model);
    Ok(())
}

/// The tray model now, from the store, the policy and the receiver's status.
pub fn current_model<R: Runtime>(app: &tauri::AppHandle<R>) -> TrayModel {
    let shell = app.state::<Shell>();
    let core = &shell.core;
    let active = match core
        .reader()
        .and_then(|c| store::active(&c).map_err(|source| store::StoreError::Sqlite { path: core.paths.db(), source }))
    {
        Ok(a) => a,
        Err(e) => {
            // With no store at all the status line already says why.
            if core.store_error().is_none() {
                tracing::warn!("cannot read the active alerts: {e}");
            }
            Vec::new()
        }
    };
    let status = core.status();
    let snoozed = core
        .policy
        .get()
        .snoozed_all_until(store::now_ms())
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.with_timezone(&chrono::Local));
    let mut model = tray_model(&active, status.error(), snoozed).degraded(core.store_error().as_deref());
    let tunnel = core.tunnel_status();
    if tunnel.phase != alertray::tunnel::TunnelPhase::Off {
        model.tunnel_line = Some(tunnel.summary());
    }
    model
}

/// Redraws the tray if anything it shows changed.
pub fn refresh<R: Runtime>(app: &tauri::AppHandle<R>) {
    let model = current_model(app);
    let shell = app.state::<Shell>();
    let mut current = shell.tray_model.locked();
    if current.as_ref() == Some(&model) {
        return;
    }
    let Some(tray) = app.tray_by_id(TRAY_ID) else { return };
    match build_menu(app, &model) {
        Ok(menu) => {
            let _ = tray.set_menu(Some(menu));
        }
        Err(e) => tracing::warn!("cannot rebuild the tray menu: {e}"),
    }
    if current.as_ref().map(|m| m.icon) != Some(model.icon) {
        if let Ok(img) = Image::from_bytes(icon_bytes(model.icon)) {
            let _ = tray.set_icon(Some(img));
        }
    }
    let _ = tray.set_tooltip(Some(&model.tooltip));
    *current = Some(model);
}

fn item<R: Runtime>(app: &tauri::AppHandle<R>, id: &str, text: &str, enabled: bool) -> tauri::Result<MenuItem<R>> {
    MenuItem::with_id(app, id, text, enabled, None::<&str>)
}

fn build_menu<R: Runtime>(app: &tauri::AppHandle<R>, model: &TrayModel) -> tauri::Result<Menu<R>> {
    let menu = Menu::new(app)?;
    // Not running: a click on why opens Settings at the setting at fault, where it is said
    // in full (the menu cuts a long line).
    let stopped = model.icon == TrayIcon::NotRunning;
    menu.append(&item(app, "status", &alertray::tray::menu_text(&model.status_line), stopped)?)?;
    if let Some(line) = &model.tunnel_line {
        menu.append(&item(app, "tunnel", &alertray::tray::menu_text(line), false)?)?;
    }
    menu.append(&PredefinedMenuItem::separator(app)?)?;
    // Each alert's items name it by its key, not by its place in the list: the list may
    // change while the menu is open, and a click must act on the alert it was shown for.
    for e in &model.entries {
        let k = &e.key;
        let open = item(app, &format!("open:{k}"), "Open in Netdata Cloud", e.url.is_some())?;
        let ack = item(app, &format!("ack:{k}"), if e.acknowledged { "Unacknowledge" } else { "Acknowledge" }, true)?;
        let snooze_alert = item(app, &format!("snooze-alert:{k}"), "Snooze this alert for 1 hour", true)?;
        let node_label = format!("Snooze {} for 1 hour", alertray::tray::menu_text(&e.host));
        let snooze_node = item(app, &format!("snooze-node:{k}"), &node_label, true)?;
        let dismiss = item(app, &format!("dismiss:{k}"), "Dismiss (Netdata will not clear it)", true)?;
        let items: [&dyn IsMenuItem<R>; 5] = [&open, &ack, &snooze_alert, &snooze_node, &dismiss];
        menu.append(&Submenu::with_id_and_items(app, format!("alert:{k}"), &e.label, true, &items)?)?;
    }
    if model.more > 0 {
        menu.append(&item(app, "show-alerts", &format!("{} more...", model.more), true)?)?;
    }
    if !model.entries.is_empty() {
        menu.append(&PredefinedMenuItem::separator(app)?)?;
    }
    let snooze_items = [
        item(app, "snooze:15", "For 15 minutes", true)?,
        item(app, "snooze:60", "For 1 hour", true)?,
        item(app, "snooze:240", "For 4 hours", true)?,
        item(app, "snooze:tomorrow", "Until 08:00", true)?,
    ];
    let resume = item(app, "resume", "Resume notifications", model.snoozed)?;
    let sep = PredefinedMenuItem::separator(app)?;
    let mut refs: Vec<&dyn IsMenuItem<R>> = snooze_items.iter().map(|i| i as &dyn IsMenuItem<R>).collect();
    refs.push(&sep);
    refs.push(&resume);
    menu.append(&Submenu::with_id_and_items(app, "snooze", "Snooze notifications", true, &refs)?)?;
    menu.append(&PredefinedMenuItem::separator(app)?)?;
    menu.append(&item(app, "show-alerts", "Show alerts...", true)?)?;
    menu.append(&item(app, "settings", "Settings...", true)?)?;
    menu.append(&item(app, "guide", "Connect guide...", true)?)?;
    menu.append(&item(app, "copy-url", "Copy webhook URL", true)?)?;
    menu.append(&item(app, "check", "Check connection...", true)?)?;
    menu.append(&PredefinedMenuItem::separator(app)?)?;
    menu.append(&item(app, "quit", "Quit Alertray", true)?)?;
    Ok(menu)
}

/// What a menu click does.
pub fn on_menu<R: Runtime>(app: &tauri::AppHandle<R>, id: &str) {
    let shell = app.state::<Shell>();
    let core = shell.core.clone();
    let entry = |key: &str| {
        let model = shell.tray_model.locked();
        model.as_ref()?.entries.iter().find(|e| e.key == key).cloned()
    };
    let hour_from_now = store::now_ms() + 3_600_000;
    let (verb, arg) = id.split_once(':').unwrap_or((id, ""));
    match verb {
        "open" => {
            if let Some(url) = entry(arg).and_then(|e| e.url) {
                crate::commands::open_in_browser(&url);
            }
        }
        "ack" => {
            if let Some(e) = entry(arg) {
                let app = app.clone();
                tauri::async_runtime::spawn(async move {
                    if let Err(err) = core.store.acknowledge(&e.key, !e.acknowledged).await {
                        tracing::warn!("acknowledging failed: {err}");
                    }
                    crate::request_refresh(&app, "alerts");
                });
            }
        }
        "dismiss" => {
            if let Some(e) = entry(arg) {
                let app = app.clone();
                tauri::async_runtime::spawn(async move {
                    if let Err(err) = core.store.dismiss(&e.key).await {
                        tracing::warn!("dismissing failed: {err}");
                    }
                    crate::request_refresh(&app, "alerts");
                });
            }
        }
        "snooze-alert" | "snooze-node" => {
            if let Some(e) = entry(arg) {
                let scope = if verb == "snooze-alert" { SnoozeScope::Alert(e.key) } else { SnoozeScope::Node(e.host) };
                snooze(app, SnoozeChange::Set(Snooze { scope, until_ms: hour_from_now }));
            }
        }
        "snooze" => {
            let until_ms = match arg {
                "tomorrow" => alertray::policy::next_eight_am(chrono::Local::now()).timestamp_millis(),
                minutes => store::now_ms() + minutes.parse::<i64>().unwrap_or(60) * 60_000,
            };
            snooze(app, SnoozeChange::Set(Snooze { scope: SnoozeScope::All, until_ms }));
        }
        // Lifts the snooze of every popup, which the items above set; snoozes of one alert
        // or node, set in the window or the alert's submenu, stay.
        "resume" => snooze(app, SnoozeChange::Clear(SnoozeScope::All)),
        "show-alerts" => windows::open(app, Page::Alerts),
        "settings" => windows::open(app, Page::Settings),
        "status" => match core.status() {
            ReceiverStatus::Stopped { key, .. } => windows::open_at(app, Page::Settings, key.as_deref()),
            ReceiverStatus::Running { .. } => windows::open(app, Page::Settings),
        },
        "guide" => windows::open(app, Page::Guide),
        // A new anchor at each click, so that an open guide runs the check again.
        "check" => windows::open_at(app, Page::Guide, Some(&format!("check-{}", store::now_ms()))),
        "copy-url" => {
            let app = app.clone();
            tauri::async_runtime::spawn(async move {
                let url = core.config().await.and_then(|c| core.webhook_url(&c));
                match url {
                    Some(url) => {
                        use tauri_plugin_clipboard_manager::ClipboardExt as _;
                        if let Err(e) = app.clipboard().write_text(url) {
                            tracing::warn!("cannot copy to the clipboard: {e}");
                        }
                    }
                    // Nothing to copy yet: the guide explains how to get a public URL.
                    None => windows::open_at(&app, Page::Settings, Some("server.public_url")),
                }
            });
        }
        "quit" => app.exit(0),
        _ => {}
    }
}

fn snooze<R: Runtime>(app: &tauri::AppHandle<R>, change: SnoozeChange) {
    let app = app.clone();
    let core = app.state::<Shell>().core.clone();
    tauri::async_runtime::spawn(async move {
        if let Err(e) = core.snooze(change).await {
            tracing::warn!("snoozing failed: {e}");
        }
        crate::request_refresh(&app, "snooze");
    });
}
