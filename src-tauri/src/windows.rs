//! The windows, created on demand: closing one destroys it and frees its webview; the app
//! stays in the tray.

use tauri::plugin::TauriPlugin;
use tauri::{Manager, Runtime, WebviewUrl, WebviewWindowBuilder, WindowEvent};
use tauri_plugin_window_state::{AppHandleExt as _, StateFlags};

/// What is remembered of each window, across its closing and the app's restarts.
const REMEMBERED: StateFlags = StateFlags::SIZE.union(StateFlags::POSITION).union(StateFlags::MAXIMIZED);

/// Puts each window back where and how large the user left it (in the app's config dir,
/// `.window-state.json`).
pub fn state_plugin<R: Runtime>() -> TauriPlugin<R> {
    tauri_plugin_window_state::Builder::new().with_state_flags(REMEMBERED).build()
}

/// Which window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Page {
    /// Active alerts and history.
    Alerts,
    /// Every setting of the config.
    Settings,
    /// What to paste into Netdata Cloud.
    Guide,
}

impl Page {
    /// The page named by `--show alerts|settings|guide` on the command line, if any.
    pub fn from_args(args: impl Iterator<Item = String>) -> Option<Page> {
        let args: Vec<String> = args.collect();
        let i = args.iter().position(|a| a == "--show")?;
        Page::named(args.get(i + 1)?)
    }

    /// The page with this label.
    pub fn named(label: &str) -> Option<Page> {
        match label {
            "alerts" => Some(Page::Alerts),
            "settings" => Some(Page::Settings),
            "guide" => Some(Page::Guide),
            _ => None,
        }
    }

    /// The window's label (also the page's route).
    pub fn label(self) -> &'static str {
        match self {
            Page::Alerts => "alerts",
            Page::Settings => "settings",
            Page::Guide => "guide",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Page::Alerts => "Alertray: alerts",
            Page::Settings => "Alertray: settings",
            Page::Guide => "Alertray: connect Netdata Cloud",
        }
    }

    fn size(self) -> (f64, f64) {
        match self {
            Page::Alerts => (1000.0, 640.0),
            Page::Settings => (760.0, 720.0),
            Page::Guide => (820.0, 720.0),
        }
    }
}

/// Shows the window, creating it if needed.
pub fn open<R: Runtime>(app: &tauri::AppHandle<R>, page: Page) {
    open_at(app, page, None);
}

/// Shows the window scrolled to `anchor` (a config key, for Settings).
pub fn open_at<R: Runtime>(app: &tauri::AppHandle<R>, page: Page, anchor: Option<&str>) {
    let route = match anchor {
        Some(a) => format!("index.html#{}/{}", page.label(), a),
        None => format!("index.html#{}", page.label()),
    };
    if let Some(w) = app.get_webview_window(page.label()) {
        let hash = route.trim_start_matches("index.html");
        if anchor.is_some() {
            let _ = w.eval(format!("location.hash = {hash:?}"));
        } else {
            // Back to its own page, should it show another one.
            let _ = w.eval(format!("if (location.hash.split('/')[0] !== {hash:?}) location.hash = {hash:?}"));
        }
        let _ = w.unminimize();
        let _ = w.show();
        let _ = w.set_focus();
        return;
    }
    let (w, h) = remembered_size(app, page.label()).unwrap_or_else(|| page.size());
    let built = WebviewWindowBuilder::new(app, page.label(), WebviewUrl::App(route.into()))
        .title(page.title())
        .inner_size(w, h)
        .min_inner_size(560.0, 400.0)
        // Shown once the state plugin has put it back where it was, rather than jumping there.
        .visible(false)
        .build();
    match built {
        // The plugin saves to disk only when the app exits; a window closed is saved at once,
        // for a session that ends without Quit (logging out).
        Ok(window) => {
            let _ = window.show();
            let _ = window.set_focus();
            let app = app.clone();
            window.on_window_event(move |e| {
                if let WindowEvent::CloseRequested { .. } = e {
                    if let Err(e) = app.save_window_state(REMEMBERED) {
                        tracing::debug!("cannot save the windows' sizes: {e}");
                    }
                }
            });
        }
        Err(e) => tracing::error!("cannot open the {} window: {e}", page.label()),
    }
}

/// The size (logical) the window `label` was left at, as the state plugin saved it: the
/// window is made at that size, rather than made at its default and resized by the plugin.
/// Resized before it first shows, a window may never hear of its new size where no window
/// manager tells it (GTK reports sizes as the window manager configures them), and the size
/// saved when it next closes would be the default again.
fn remembered_size<R: Runtime>(app: &tauri::AppHandle<R>, label: &str) -> Option<(f64, f64)> {
    let path = app.path().app_config_dir().ok()?.join(tauri_plugin_window_state::DEFAULT_FILENAME);
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let window = saved.get(label)?;
    let (width, height) = (window.get("width")?.as_u64()?, window.get("height")?.as_u64()?);
    if width == 0 || height == 0 {
        return None;
    }
    // Saved in physical pixels.
    let scale = app.primary_monitor().ok().flatten().map_or(1.0, |m| m.scale_factor());
    Some((width as f64 / scale, height as f64 / scale))
}
