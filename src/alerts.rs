//! Alert state: what a notification does to the set of active problems, and the events that
//! tell the rest of the app about it.
//!
//! Warning or Critical raises or updates an alert under its key; Clear removes it. An
//! unreachable node is active until it is reachable again. A notification older than the one
//! that set the current state (Netdata does not promise ordering) is kept in history but
//! changes nothing. The functions here are pure; the store applies them inside the same
//! transaction that records the notification.

use chrono::{DateTime, FixedOffset};
use serde::{Deserialize, Serialize};

use crate::payload::{node_name, Notification, Room, Status};

/// What kind of problem an active entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A health alert on a node.
    Alert,
    /// A node's reachability.
    Node,
}

/// The state of an alert or node after a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// The alert recovered.
    Clear,
    /// The node is reachable again.
    Reachable,
    /// The alert is at Warning.
    Warning,
    /// The alert is at Critical.
    Critical,
    /// The node cannot be reached.
    Unreachable,
}

impl Level {
    /// `true` for the levels that make an entry active.
    pub fn is_active(self) -> bool {
        matches!(self, Level::Warning | Level::Critical | Level::Unreachable)
    }

    /// How bad it is, for ordering (higher is worse); unreachable ranks with critical.
    pub fn rank(self) -> u8 {
        match self {
            Level::Clear | Level::Reachable => 0,
            Level::Warning => 1,
            Level::Critical | Level::Unreachable => 2,
        }
    }

    /// The word shown to users.
    pub fn label(self) -> &'static str {
        match self {
            Level::Clear => "Clear",
            Level::Reachable => "Reachable",
            Level::Warning => "Warning",
            Level::Critical => "Critical",
            Level::Unreachable => "Unreachable",
        }
    }
}

/// An alert or node as the tray, the window and the notifier see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The stable key across transitions.
    pub key: String,
    /// Alert or node.
    pub kind: AlertKind,
    /// Its level now.
    pub level: Level,
    /// The node's hostname (or id, if no hostname was sent).
    pub host: String,
    /// The alert's name, or `reachability` for a node.
    pub name: String,
    /// The value as a display string.
    pub value: Option<String>,
    /// The rendered summary.
    pub summary: Option<String>,
    /// Netdata's message.
    pub message: String,
    /// Where to open it in Netdata Cloud.
    pub url: Option<String>,
    /// The node's rooms.
    pub rooms: Vec<Room>,
    /// The space's name.
    pub space: Option<String>,
    /// When it became active (Unix ms of the first raising delivery).
    pub since_ms: i64,
    /// When it last changed (Unix ms).
    pub updated_ms: i64,
    /// When Netdata says the transition happened, with the node's offset.
    pub triggered_at: Option<DateTime<FixedOffset>>,
    /// The stored notification that set this state.
    pub notification_id: i64,
    /// Which of that notification's nodes this is: 0 for the first (and for every alert),
    /// 1 for the next, and so on (see [`crate::payload::ReachabilityNotification::each_node`]).
    #[serde(default, skip_serializing)]
    pub part: u32,
    /// Whether the user acknowledged it (dropped when it escalates or is raised again).
    #[serde(default)]
    pub acknowledged: bool,
    /// `true` when `host` is the node's id, its notification having named no hostname: a
    /// hostname known from an earlier notification is kept then.
    #[serde(default, skip_serializing)]
    pub host_is_id: bool,
}

/// How an alert's state changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// It became active.
    Raised,
    /// It went from Warning to Critical.
    Escalated,
    /// It stayed active; its value, level (Critical to Warning) or message changed.
    Updated,
    /// It recovered (whether or not it was known to be active).
    Cleared,
    /// A node became unreachable.
    Unreachable,
    /// A node is reachable again.
    Reachable,
}

/// What the core tells its subscribers.
// One value per notification, moved a few times: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// An alert or node changed state.
    Alert {
        /// How.
        change: Change,
        /// The alert after the change (for Cleared/Reachable: as the notification described it).
        alert: Alert,
        /// Its level before, if it was active.
        previous: Option<Level>,
    },
    /// A Test notification arrived.
    TestReceived {
        /// Its verification token.
        token: Option<String>,
        /// When it arrived (Unix ms).
        received_ms: i64,
    },
    /// A notification of no known shape arrived.
    Unknown {
        /// Its message or a summary of its keys.
        message: String,
        /// The stored notification.
        notification_id: i64,
    },
    /// The receiver is listening.
    Listening {
        /// The bound address.
        addr: String,
        /// The server certificate's SHA-256 fingerprint.
        fingerprint: String,
    },
    /// The receiver could not start or stopped with an error.
    ReceiverFailed {
        /// Why.
        reason: String,
    },
    /// The user acknowledged alerts or the active set changed without a delivery.
    StateChanged,
    /// The tunnel started, came up, failed or stopped.
    TunnelChanged,
    /// The config file was edited by hand and its new content applied.
    ConfigFileApplied,
    /// The config file was edited by hand, and the edit left unapplied while the receiver
    /// runs on with its settings.
    ConfigFileRejected {
        /// Why, for the user (names the setting; no secret).
        reason: String,
    },
}

/// What a notification does to the active set.
// One value per notification, moved a few times: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum StateUpdate {
    /// Insert or replace this entry.
    Upsert(Alert),
    /// Remove the entry with this key.
    Remove(String),
    /// Leave the active set as it is.
    Keep,
}

/// The state update and the event one notification causes.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// What to do to the active set.
    pub update: StateUpdate,
    /// What to tell subscribers, if anything.
    pub event: Option<Event>,
}

/// The alert or node a notification describes, as if it had just become its state; `None`
/// for tests, unknown notifications, and alerts with a status word we do not know.
pub fn describe(n: &Notification, id: i64, now_ms: i64) -> Option<Alert> {
    let (key, kind, level, hostname, node_id, name) = match n {
        Notification::Alert(a) => {
            let level = match a.status {
                Status::Critical => Level::Critical,
                Status::Warning => Level::Warning,
                Status::Clear => Level::Clear,
                Status::Other => return None,
            };
            (&a.key, AlertKind::Alert, level, &a.host, &a.node_id, a.name.clone())
        }
        Notification::Reachability(r) => {
            let level = if r.reachable { Level::Reachable } else { Level::Unreachable };
            (&r.key, AlertKind::Node, level, &r.host, &r.node_id, "reachability".to_string())
        }
        Notification::Test(_) | Notification::Unknown(_) => return None,
    };
    let mut alert = Alert {
        key: key.clone(),
        kind,
        level,
        host: node_name(hostname, node_id).unwrap_or("unknown node").to_string(),
        name,
        value: None,
        summary: None,
        message: n.message().to_string(),
        url: None,
        rooms: Vec::new(),
        space: None,
        since_ms: now_ms,
        updated_ms: now_ms,
        triggered_at: None,
        notification_id: id,
        part: 0,
        acknowledged: false,
        host_is_id: hostname.is_none() && node_id.is_some(),
    };
    match n {
        Notification::Alert(a) => {
            alert.value = a.value.clone();
            alert.summary = a.summary.clone();
            alert.url = a.url.clone();
            alert.rooms = a.rooms.clone();
            alert.space = a.space.clone();
            alert.triggered_at = a.triggered_at;
        }
        Notification::Reachability(r) => {
            alert.url = r.url.clone();
            alert.space = r.space.clone();
        }
        _ => {}
    }
    Some(alert)
}

/// Computes what notification `n` (stored as `id`, received at `now_ms`) does, given the
/// active entry under its key, if any, and the newest `triggered_at` (Unix ms) stored for its
/// key, if any: a notification older than that is stale, whether the alert is active or was
/// cleared since.
pub fn transition(prev: Option<&Alert>, n: &Notification, id: i64, now_ms: i64, newest_ms: Option<i64>) -> Transition {
    match n {
        Notification::Test(t) => Transition {
            update: StateUpdate::Keep,
            event: Some(Event::TestReceived { token: t.token.clone(), received_ms: now_ms }),
        },
        Notification::Unknown(u) => Transition {
            update: StateUpdate::Keep,
            event: Some(Event::Unknown { message: u.message.clone(), notification_id: id }),
        },
        // An unknown status word changes nothing; the notification is still stored.
        _ => match describe(n, id, now_ms) {
            Some(alert)
                if !is_stale(newest_ms, ordering_ms(alert.triggered_at.map(|t| t.timestamp_millis()), now_ms)) =>
            {
                apply_level(prev, alert)
            }
            _ => keep(),
        },
    }
}

/// The longest a delivery is taken to arrive after Netdata dates its transition.
const MAX_DELIVERY_DELAY_MS: i64 = 24 * 3600 * 1000;

fn keep() -> Transition {
    Transition { update: StateUpdate::Keep, event: None }
}

/// How far after its arrival a notification's `triggered_at` is still taken as it is: a
/// node's clock a little ahead of ours keeps the order Netdata gave.
pub const FUTURE_SLACK_MS: i64 = 5 * 60 * 1000;

/// When a notification received at `received_ms` happened, to order it among the others of
/// its alert: its `triggered_at`, but no later than [`FUTURE_SLACK_MS`] after its arrival
/// (then its arrival), so that a node's clock far ahead of ours (or a date in the far future)
/// cannot leave every later change "older".
pub fn ordering_ms(triggered_ms: Option<i64>, received_ms: i64) -> Option<i64> {
    triggered_ms.map(|t| if t > received_ms + FUTURE_SLACK_MS { received_ms } else { t })
}

fn is_stale(newest_ms: Option<i64>, at_ms: Option<i64>) -> bool {
    matches!((newest_ms, at_ms), (Some(newest), Some(at)) if at < newest)
}

fn apply_level(prev: Option<&Alert>, mut alert: Alert) -> Transition {
    let previous = prev.map(|p| p.level);
    if !alert.level.is_active() {
        let change = if alert.kind == AlertKind::Node { Change::Reachable } else { Change::Cleared };
        if let Some(p) = prev {
            alert.since_ms = p.since_ms;
            keep_hostname(&mut alert, p);
        }
        return Transition {
            update: StateUpdate::Remove(alert.key.clone()),
            event: Some(Event::Alert { change, alert, previous }),
        };
    }
    let change = match prev {
        None => {
            // Active since Netdata says it happened, when it says so (a delivery retried for a
            // while, or kept while Alertray was not running, arrives late), never later than
            // it arrived (a node's clock ahead of ours).
            if let Some(at) = alert.triggered_at.map(|t| t.timestamp_millis()) {
                // A day is more than Netdata retries for: a time older than that is a node's
                // clock behind ours.
                if at >= alert.since_ms - MAX_DELIVERY_DELAY_MS {
                    alert.since_ms = alert.since_ms.min(at);
                }
            }
            if alert.kind == AlertKind::Node {
                Change::Unreachable
            } else {
                Change::Raised
            }
        }
        Some(p) => {
            alert.since_ms = p.since_ms;
            keep_hostname(&mut alert, p);
            if alert.level.rank() > p.level.rank() {
                // Escalation drops an acknowledgement: the user must see it again.
                Change::Escalated
            } else {
                alert.acknowledged = p.acknowledged;
                if alert.level == p.level && alert.value == p.value && alert.message == p.message {
                    // A repeat notification of the same state: refresh silently.
                    return Transition { update: StateUpdate::Upsert(alert), event: None };
                }
                Change::Updated
            }
        }
    };
    Transition { update: StateUpdate::Upsert(alert.clone()), event: Some(Event::Alert { change, alert, previous }) }
}

/// A notification naming its node only by id keeps the hostname an earlier one gave.
fn keep_hostname(alert: &mut Alert, prev: &Alert) {
    if alert.host_is_id && !prev.host_is_id {
        alert.host.clone_from(&prev.host);
        alert.host_is_id = false;
    }
}

/// Sorts active alerts for display: unacknowledged first; among them Critical, then
/// unreachable nodes, then Warning; then newest.
pub fn sort_for_display(alerts: &mut [Alert]) {
    let rank = |l: Level| match l {
        Level::Critical => 3,
        Level::Unreachable => 2,
        Level::Warning => 1,
        Level::Clear | Level::Reachable => 0,
    };
    alerts.sort_by(|a, b| {
        a.acknowledged
            .cmp(&b.acknowledged)
            .then(rank(b.level).cmp(&rank(a.level)))
            .then(b.updated_ms.cmp(&a.updated_ms))
            .then(a.key.cmp(&b.key))
    });
}

/// Counts for the tray and its tooltip.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Active critical alerts not acknowledged.
    pub critical: usize,
    /// Active warning alerts not acknowledged.
    pub warning: usize,
    /// Unreachable nodes not acknowledged.
    pub unreachable: usize,
    /// Active entries the user acknowledged.
    pub acknowledged: usize,
}

impl Summary {
    /// Counts a set of active alerts.
    pub fn of(alerts: &[Alert]) -> Summary {
        let mut s = Summary::default();
        for a in alerts {
            if a.acknowledged {
                s.acknowledged += 1;
                continue;
            }
            match a.level {
                Level::Critical => s.critical += 1,
                Level::Warning => s.warning += 1,
                Level::Unreachable => s.unreachable += 1,
                Level::Clear | Level::Reachable => {}
            }
        }
        s
    }

    /// "2 critical, 1 unreachable, 3 warning" (worst first, as everywhere), or "All clear".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (n, word) in [(self.critical, "critical"), (self.unreachable, "unreachable"), (self.warning, "warning")] {
            if n > 0 {
                parts.push(format!("{n} {word}"));
            }
        }
        if self.acknowledged > 0 {
            parts.push(format!("{} acknowledged", self.acknowledged));
        }
        if parts.is_empty() {
            "All clear".into()
        } else {
            parts.join(", ")
        }
    }
}

/// A sample active alert for tests of the modules that draw alerts.
#[cfg(test)]
pub(crate) fn sample_alert(key: &str, level: Level, host: &str) -> Alert {
    Alert {
        key: key.into(),
        kind: if level == Level::Unreachable { AlertKind::Node } else { AlertKind::Alert },
        level,
        host: host.into(),
        name: "cpu".into(),
        value: Some("97%".into()),
        summary: None,
        message: String::new(),
        url: Some(format!("https://app.netdata.cloud/{key}")),
        rooms: vec![],
        space: None,
        since_ms: 0,
        updated_ms: 0,
        triggered_at: None,
        notification_id: 1,
        part: 0,
        acknowledged: false,
        host_is_id: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::parse;
    use serde_json::json;

    fn alert_body(status: &str, at: &str, value: &str) -> Notification {
        parse(
            json!({
                "message": format!("{status} x"),
                "node": {"id": "n1", "hostname": "h1"},
                "alert": {"name": "cpu", "chart": {"id": "system.cpu"}, "state": {"status": status, "value_str": value}, "triggered_at": at}
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap()
    }

    /// The newest triggered_at the store would know: the active entry's.
    fn newest(prev: Option<&Alert>) -> Option<i64> {
        prev.and_then(|p| p.triggered_at).map(|t| t.timestamp_millis())
    }

    fn upserted(t: &Transition) -> Alert {
        match &t.update {
            StateUpdate::Upsert(a) => a.clone(),
            other => panic!("{other:?}"),
        }
    }

    fn change(t: &Transition) -> Option<Change> {
        match &t.event {
            Some(Event::Alert { change, .. }) => Some(*change),
            _ => None,
        }
    }

    #[test]
    fn active_since_netdata_says_it_happened_but_not_after_it_arrived() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().timestamp_millis();
        let w = alert_body("Warning", "2026-01-01T00:00:00Z", "90%");
        // Arrived ten minutes late (retried, or kept while Alertray was down).
        let late = upserted(&transition(None, &w, 1, at + 600_000, None));
        assert_eq!(late.since_ms, at);
        // From a node whose clock is ahead: since it arrived.
        let early = upserted(&transition(None, &w, 1, at - 5_000, None));
        assert_eq!(early.since_ms, at - 5_000);
        // Or far behind: since it arrived, too.
        let behind = upserted(&transition(None, &w, 1, at + 3 * 86_400_000, None));
        assert_eq!(behind.since_ms, at + 3 * 86_400_000);
        // An update keeps the start.
        let c = alert_body("Critical", "2026-01-01T00:05:00Z", "99%");
        let escalated = upserted(&transition(Some(&late), &c, 2, at + 900_000, newest(Some(&late))));
        assert_eq!(escalated.since_ms, at);
    }

    #[test]
    fn raise_escalate_update_clear() {
        // Received a few minutes after the times they carry.
        let t0 = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:10:00Z").unwrap().timestamp_millis();
        let w = alert_body("Warning", "2026-01-01T00:00:00Z", "90%");
        let t = transition(None, &w, 1, t0 + 1000, newest(None));
        assert_eq!(change(&t), Some(Change::Raised));
        let mut a = upserted(&t);
        a.acknowledged = true;

        let c = alert_body("Critical", "2026-01-01T00:01:00Z", "99%");
        let t = transition(Some(&a), &c, 2, t0 + 2000, newest(Some(&a)));
        assert_eq!(change(&t), Some(Change::Escalated));
        let a2 = upserted(&t);
        assert!(!a2.acknowledged, "escalation drops the acknowledgement");
        // Active since it was raised, as Netdata dates it.
        assert_eq!(a2.since_ms, t0 - 600_000);

        let mut acked = a2.clone();
        acked.acknowledged = true;
        let w2 = alert_body("Warning", "2026-01-01T00:02:00Z", "91%");
        let t = transition(Some(&acked), &w2, 3, t0 + 3000, newest(Some(&acked)));
        assert_eq!(change(&t), Some(Change::Updated));
        assert!(upserted(&t).acknowledged, "de-escalation keeps it");

        let clear = alert_body("Clear", "2026-01-01T00:03:00Z", "10%");
        let t = transition(Some(&a2), &clear, 4, t0 + 4000, newest(Some(&a2)));
        assert_eq!(t.update, StateUpdate::Remove(a2.key.clone()));
        assert_eq!(change(&t), Some(Change::Cleared));
    }

    #[test]
    fn stale_and_repeated_notifications_change_nothing_visible() {
        // Received a few minutes after the times they carry.
        let t0 = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:10:00Z").unwrap().timestamp_millis();
        let c = alert_body("Critical", "2026-01-01T00:05:00Z", "99%");
        let a = upserted(&transition(None, &c, 1, t0 + 1000, newest(None)));
        let old_clear = alert_body("Clear", "2026-01-01T00:04:00Z", "1%");
        assert_eq!(transition(Some(&a), &old_clear, 2, t0 + 2000, newest(Some(&a))), keep());
        let repeat = transition(Some(&a), &c, 3, t0 + 3000, newest(Some(&a)));
        assert!(repeat.event.is_none());
        assert!(matches!(repeat.update, StateUpdate::Upsert(_)));
        // Cleared, then an older raise arrives late: it must not raise the alert again.
        let clear = alert_body("Clear", "2026-01-01T00:06:00Z", "1%");
        assert_eq!(
            transition(Some(&a), &clear, 4, t0 + 4000, newest(Some(&a))).update,
            StateUpdate::Remove(a.key.clone())
        );
        let late_raise = alert_body("Critical", "2026-01-01T00:05:30Z", "98%");
        let cleared_at = Some(chrono::DateTime::parse_from_rfc3339("2026-01-01T00:06:00Z").unwrap().timestamp_millis());
        assert_eq!(transition(None, &late_raise, 5, t0 + 5000, cleared_at), keep());
    }

    #[test]
    fn summary_counts_unacknowledged() {
        let c = alert_body("Critical", "2026-01-01T00:05:00Z", "99%");
        let a = upserted(&transition(None, &c, 1, 1000, newest(None)));
        let mut b = a.clone();
        b.acknowledged = true;
        let s = Summary::of(&[a, b]);
        assert_eq!(s.describe(), "1 critical, 1 acknowledged");
        assert_eq!(Summary::default().describe(), "All clear");
        // Worst first, as the window's counts and the menu's list go.
        let s = Summary { critical: 2, warning: 3, unreachable: 1, acknowledged: 0 };
        assert_eq!(s.describe(), "2 critical, 1 unreachable, 3 warning");
    }
}
