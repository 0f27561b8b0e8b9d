//! What the tray shows, computed from the active set: the icon, the tooltip, the status line
//! and the alert entries of the menu. The desktop shell only draws this.

use chrono::{DateTime, Local};
use serde::Serialize;

use crate::alerts::{self, Alert, Level, Summary};
use crate::text::one_line_within;

/// The most alerts listed in the tray menu; the rest are summed up in "N more...".
pub const MAX_MENU_ALERTS: usize = 15;

/// One icon per state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrayIcon {
    /// Nothing active (or everything acknowledged).
    AllClear,
    /// The worst unacknowledged alert is a Warning.
    Warning,
    /// A Critical alert is active and unacknowledged.
    Critical,
    /// A node is unreachable (and nothing is Critical).
    Unreachable,
    /// Popups are snoozed.
    Snoozed,
    /// The receiver is not running (bad config, port taken).
    NotRunning,
}

impl TrayIcon {
    /// The icon's file name in `icons/`.
    pub fn file_name(self) -> &'static str {
        match self {
            TrayIcon::AllClear => "tray-clear.png",
            TrayIcon::Warning => "tray-warning.png",
            TrayIcon::Critical => "tray-critical.png",
            TrayIcon::Unreachable => "tray-unreachable.png",
            TrayIcon::Snoozed => "tray-snoozed.png",
            TrayIcon::NotRunning => "tray-stopped.png",
        }
    }
}

/// One alert in the tray menu.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrayEntry {
    /// The alert's key.
    pub key: String,
    /// "host: alert = value" (acknowledged entries are marked).
    pub label: String,
    /// The node's hostname.
    pub host: String,
    /// Where "open" goes.
    pub url: Option<String>,
    /// Whether the user acknowledged it.
    pub acknowledged: bool,
}

/// Everything the tray shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrayModel {
    /// Which icon.
    pub icon: TrayIcon,
    /// The tooltip: counts.
    pub tooltip: String,
    /// The first, disabled line of the menu.
    pub status_line: String,
    /// The alerts listed, worst and newest first.
    pub entries: Vec<TrayEntry>,
    /// How many more are active than listed.
    pub more: usize,
    /// The tunnel's state, when Alertray runs one.
    pub tunnel_line: Option<String>,
    /// Every popup is snoozed: "Resume notifications" has something to lift.
    pub snoozed: bool,
}

impl TrayModel {
    /// The tray when nothing can be stored (`reason`): the not-running icon and the reason
    /// first, since deliveries are refused until it is fixed.
    pub fn degraded(mut self, reason: Option<&str>) -> TrayModel {
        if let Some(r) = reason {
            self.icon = TrayIcon::NotRunning;
            self.status_line = format!("Degraded: {r}");
            self.tooltip = format!("Alertray: {r}");
        }
        self
    }
}

/// Computes the tray for `active`, given why the receiver is not running (if it is not) and
/// until when popups are snoozed (if they are).
pub fn tray_model(active: &[Alert], receiver_error: Option<&str>, snoozed_until: Option<DateTime<Local>>) -> TrayModel {
    let mut sorted = active.to_vec();
    alerts::sort_for_display(&mut sorted);
    let summary = Summary::of(&sorted);
    let worst = sorted.iter().filter(|a| !a.acknowledged).map(|a| a.level).max_by_key(|l| match l {
        Level::Critical => 3,
        Level::Unreachable => 2,
        Level::Warning => 1,
        _ => 0,
    });
    let icon = if receiver_error.is_some() {
        TrayIcon::NotRunning
    } else if snoozed_until.is_some() {
        TrayIcon::Snoozed
    } else {
        match worst {
            Some(Level::Critical) => TrayIcon::Critical,
            Some(Level::Unreachable) => TrayIcon::Unreachable,
            Some(Level::Warning) => TrayIcon::Warning,
            _ => TrayIcon::AllClear,
        }
    };
    let counts = summary.describe();
    let status_line = match (receiver_error, snoozed_until) {
        (Some(e), _) => format!("Receiver not running: {e}"),
        (None, Some(t)) => format!("{counts} (snoozed until {})", t.format("%a %H:%M")),
        (None, None) => counts.clone(),
    };
    let tooltip = match snoozed_until {
        Some(t) => format!("Alertray: {counts}, popups snoozed until {}", t.format("%H:%M")),
        None => format!("Alertray: {counts}"),
    };
    let entries = sorted
        .iter()
        .take(MAX_MENU_ALERTS)
        .map(|a| {
            let host = one_line_within(&a.host, MAX_HOST_CHARS);
            let mut label = format!("{host}: {}", a.name);
            if let Some(v) = &a.value {
                label.push_str(&format!(" = {v}"));
            }
            if a.level == Level::Unreachable {
                label = format!("{host} is unreachable");
            }
            let marker = match (a.acknowledged, a.level) {
                (true, _) => "✓ ",
                (false, Level::Critical | Level::Unreachable) => "● ",
                (false, _) => "○ ",
            };
            TrayEntry {
                key: a.key.clone(),
                label: format!("{marker}{}", menu_text(&label)),
                host: a.host.clone(),
                url: a.url.clone(),
                acknowledged: a.acknowledged,
            }
        })
        .collect();
    TrayModel {
        icon,
        tooltip,
        status_line,
        entries,
        more: sorted.len().saturating_sub(MAX_MENU_ALERTS),
        tunnel_line: None,
        snoozed: snoozed_until.is_some(),
    }
}

/// The most characters of one menu label taken from a notification.
const MAX_LABEL_CHARS: usize = 80;

/// The most characters of a host name in a menu label, so that a long one leaves room for
/// the alert's name.
const MAX_HOST_CHARS: usize = 40;

/// Text from the network made fit for a menu label: control and bidirectional-formatting
/// characters dropped, white space runs (line breaks too) made one space, cut to
/// [`MAX_LABEL_CHARS`] with an ellipsis, and `&` doubled, since menus take a single `&` for a
/// keyboard mnemonic ("R&D" showed as "RD").
pub fn menu_text(text: &str) -> String {
    one_line_within(text, MAX_LABEL_CHARS).replace('&', "&&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn menu_labels_are_one_short_plain_line() {
        assert_eq!(menu_text("R&D: disk = 91%"), "R&&D: disk = 91%");
        assert_eq!(menu_text("web1:\n  load\t= 3\r\n"), "web1: load = 3");
        assert_eq!(menu_text("evil\u{202E}gnp.exe\u{7}"), "evilgnp.exe");
        let long = menu_text(&"x".repeat(500));
        assert_eq!(long.chars().count(), MAX_LABEL_CHARS + 1);
        assert!(long.ends_with('…'));
        assert_eq!(menu_text(&"é".repeat(90)).chars().count(), MAX_LABEL_CHARS + 1, "cut on characters, not bytes");
    }

    fn alert(key: &str, level: Level, updated: i64, ack: bool) -> Alert {
        Alert {
            since_ms: updated,
            updated_ms: updated,
            acknowledged: ack,
            ..crate::alerts::sample_alert(key, level, &format!("host-{key}"))
        }
    }

    #[test]
    fn the_worst_unacknowledged_state_wins() {
        let m = tray_model(&[], None, None);
        assert_eq!((m.icon, m.status_line.as_str()), (TrayIcon::AllClear, "All clear"));
        let w = alert("w", Level::Warning, 1, false);
        let u = alert("u", Level::Unreachable, 2, false);
        let c = alert("c", Level::Critical, 3, false);
        assert_eq!(tray_model(std::slice::from_ref(&w), None, None).icon, TrayIcon::Warning);
        assert_eq!(tray_model(&[w.clone(), u.clone()], None, None).icon, TrayIcon::Unreachable);
        assert_eq!(tray_model(&[w.clone(), u.clone(), c.clone()], None, None).icon, TrayIcon::Critical);
        let acked = alert("c", Level::Critical, 3, true);
        let m = tray_model(&[w.clone(), acked], None, None);
        assert_eq!(m.icon, TrayIcon::Warning, "acknowledged alerts do not count");
        assert_eq!(m.tooltip, "Alertray: 1 warning, 1 acknowledged");
        assert!(m.entries.iter().any(|e| e.label.starts_with("✓ ")));
        assert_eq!(tray_model(std::slice::from_ref(&c), Some("port taken"), None).icon, TrayIcon::NotRunning);
        assert!(!m.snoozed, "nothing to resume");
        let snooze = Local::now() + chrono::Duration::hours(1);
        let m = tray_model(&[c], None, Some(snooze));
        assert_eq!(m.icon, TrayIcon::Snoozed);
        assert!(m.status_line.contains("snoozed until"));
        assert!(m.snoozed, "Resume has a snooze to lift");
    }

    #[test]
    fn critical_first_then_newest_up_to_fifteen() {
        let mut active: Vec<Alert> = (0..20).map(|i| alert(&format!("w{i:02}"), Level::Warning, i, false)).collect();
        active.push(alert("c", Level::Critical, 0, false));
        let m = tray_model(&active, None, None);
        assert_eq!(m.entries.len(), MAX_MENU_ALERTS);
        assert_eq!(m.more, 6);
        assert_eq!(m.entries[0].key, "c");
        assert_eq!(m.entries[1].key, "w19", "then newest");
        assert_eq!(m.entries[0].label, "● host-c: cpu = 97%");
        assert_eq!(m.tooltip, "Alertray: 1 critical, 20 warning");
    }

    #[test]
    fn a_long_host_name_leaves_room_for_the_alert() {
        let host = format!("{}.example.internal", "k8s-worker-pool-b-7f9c".repeat(4));
        let a = Alert { host: host.clone(), ..alert("c", Level::Critical, 1, false) };
        let label = &tray_model(std::slice::from_ref(&a), None, None).entries[0].label;
        assert!(label.ends_with("…: cpu = 97%"), "{label}");
        assert!(label.starts_with(&format!("● {}", &host[..MAX_HOST_CHARS])), "{label}");
        let down = Alert { level: Level::Unreachable, ..a };
        let label = &tray_model(&[down], None, None).entries[0].label;
        assert!(label.ends_with("… is unreachable"), "{label}");
        // A short one is left whole.
        assert_eq!(
            tray_model(&[alert("c", Level::Critical, 1, false)], None, None).entries[0].label,
            "● host-c: cpu = 97%"
        );
    }
}
