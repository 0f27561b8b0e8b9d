//! Which popups are held back: snoozes (everything, one alert, or one node, for a while),
//! quiet hours (with an optional exception for Critical), and a minimum severity.
//!
//! Held-back alerts are still stored, listed and counted; only the popup is skipped. The
//! policy is shared between the notifier (which asks) and the shell (which changes it).

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Local, NaiveTime, TimeZone};
use serde::{Deserialize, Serialize};

use crate::alerts::{Alert, Change, Event, Level};
use crate::lock::RwLockExt as _;
use crate::notify::PopupFilter;

/// What a snooze covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "scope", content = "target", rename_all = "snake_case")]
pub enum SnoozeScope {
    /// Every alert popup.
    All,
    /// One alert, by its key.
    Alert(String),
    /// Every alert of one node, by its hostname (any case).
    Node(String),
}

impl SnoozeScope {
    /// The scope as stored: (`all`|`alert`|`node`, target).
    pub fn parts(&self) -> (&'static str, &str) {
        match self {
            SnoozeScope::All => ("all", ""),
            SnoozeScope::Alert(k) => ("alert", k),
            SnoozeScope::Node(h) => ("node", h),
        }
    }

    /// Rebuilds a scope from its stored parts.
    pub fn from_parts(scope: &str, target: &str) -> Option<SnoozeScope> {
        match scope {
            "all" => Some(SnoozeScope::All),
            "alert" => Some(SnoozeScope::Alert(target.to_string())),
            "node" => Some(SnoozeScope::Node(target.to_string())),
            _ => None,
        }
    }

    fn covers(&self, a: &Alert) -> bool {
        match self {
            SnoozeScope::All => true,
            SnoozeScope::Alert(k) => &a.key == k,
            SnoozeScope::Node(h) => a.host.eq_ignore_ascii_case(h),
        }
    }
}

/// One snooze, until a time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snooze {
    /// What it covers.
    #[serde(flatten)]
    pub scope: SnoozeScope,
    /// Until when (Unix ms).
    pub until_ms: i64,
}

/// Quiet hours, in local time; `from` == `to` means none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuietHours {
    /// When they start.
    pub from: NaiveTime,
    /// When they end (the next day if before `from`).
    pub to: NaiveTime,
    /// Whether Critical alerts and unreachable nodes still pop up.
    pub allow_critical: bool,
}

impl QuietHours {
    /// `true` when `t` is inside the quiet hours.
    pub fn contains(&self, t: NaiveTime) -> bool {
        if self.from == self.to {
            false
        } else if self.from < self.to {
            t >= self.from && t < self.to
        } else {
            t >= self.from || t < self.to
        }
    }
}

/// The least severe popups shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MinSeverity {
    /// Everything, recoveries included.
    #[default]
    Clear,
    /// Warnings and worse; no recovery popups.
    Warning,
    /// Only Critical alerts and unreachable nodes.
    Critical,
}

/// The popup policy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PopupPolicy {
    /// Popups turned off (`notifications.enabled = false`): nothing pops up, not even a Test.
    pub off: bool,
    /// The least severe popup shown.
    pub min_severity: MinSeverity,
    /// Quiet hours, if any.
    pub quiet_hours: Option<QuietHours>,
    /// Snoozes in force (expired ones are ignored and pruned).
    pub snoozes: Vec<Snooze>,
}

impl PopupPolicy {
    /// `true` if the popup for `event` is shown at `now`.
    pub fn allows_at<Tz: TimeZone>(&self, event: &Event, now: &DateTime<Tz>) -> bool {
        if self.off {
            return false;
        }
        let Event::Alert { change, alert, .. } = event else {
            // Tests, unknown notifications: the user asked for them or must see them.
            return true;
        };
        if *change == Change::Updated && alert.acknowledged {
            // Acknowledged: quiet while it changes within its level or steps down to Warning.
            // Escalating or a new raise drops the acknowledgement, and those pop up.
            return false;
        }
        let now_ms = now.timestamp_millis();
        if self.snoozes.iter().any(|s| s.until_ms > now_ms && s.scope.covers(alert)) {
            return false;
        }
        let recovery = matches!(change, Change::Cleared | Change::Reachable);
        let critical = !recovery && matches!(alert.level, Level::Critical | Level::Unreachable);
        let severity_ok = match self.min_severity {
            MinSeverity::Clear => true,
            MinSeverity::Warning => !recovery,
            MinSeverity::Critical => critical,
        };
        if !severity_ok {
            return false;
        }
        match self.quiet_hours {
            Some(q) if q.contains(now.naive_local().time()) => q.allow_critical && critical,
            _ => true,
        }
    }

    /// `false` while no popup at all may be shown at `now`: popups turned off, every popup
    /// snoozed, or quiet hours that let nothing through.
    pub fn any_at<Tz: TimeZone>(&self, now: &DateTime<Tz>) -> bool {
        let silent = self.quiet_hours.is_some_and(|q| !q.allow_critical && q.contains(now.naive_local().time()));
        !self.off && !silent && self.snoozed_all_until(now.timestamp_millis()).is_none()
    }

    /// The global snooze in force at `now_ms`, if any: until when.
    pub fn snoozed_all_until(&self, now_ms: i64) -> Option<i64> {
        self.snoozes.iter().filter(|s| s.scope == SnoozeScope::All && s.until_ms > now_ms).map(|s| s.until_ms).max()
    }

    /// Drops expired snoozes.
    pub fn prune(&mut self, now_ms: i64) {
        self.snoozes.retain(|s| s.until_ms > now_ms);
    }
}

/// The policy shared between the notifier and whoever changes it.
#[derive(Debug, Clone, Default)]
pub struct SharedPolicy(Arc<RwLock<PopupPolicy>>);

impl SharedPolicy {
    /// A shared handle to `policy`.
    pub fn new(policy: PopupPolicy) -> SharedPolicy {
        SharedPolicy(Arc::new(RwLock::new(policy)))
    }

    /// A copy of the policy now.
    pub fn get(&self) -> PopupPolicy {
        self.0.reading().clone()
    }

    /// Changes the policy.
    pub fn update(&self, f: impl FnOnce(&mut PopupPolicy)) {
        f(&mut self.0.writing());
    }
}

impl PopupFilter for SharedPolicy {
    fn allows(&self, event: &Event) -> bool {
        self.0.reading().allows_at(event, &Local::now())
    }

    fn any(&self) -> bool {
        let p = self.0.reading();
        p.any_at(&Local::now())
    }
}

/// When "until 08:00" ends, seen from `now` (local time): the next 08:00, so that a snooze
/// chosen at 01:00 ends the same morning.
pub fn next_eight_am(now: DateTime<Local>) -> DateTime<Local> {
    let today = now.date_naive();
    let date = if now.time() < NaiveTime::from_hms_opt(8, 0, 0).unwrap_or_default() {
        today
    } else {
        today.succ_opt().unwrap_or(today)
    };
    let naive = date.and_hms_opt(8, 0, 0).unwrap_or_default();
    // A DST gap at 08:00 is not a real risk, but fall back to a day from now rather than panic.
    Local.from_local_datetime(&naive).earliest().unwrap_or(now + chrono::Duration::hours(24))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn ev(change: Change, level: Level, key: &str, host: &str) -> Event {
        Event::Alert { change, alert: crate::alerts::sample_alert(key, level, host), previous: None }
    }

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 1, h, m, 0).unwrap()
    }

    #[test]
    fn snoozes_cover_all_one_alert_or_one_node_until_they_expire() {
        let now = at(12, 0);
        let until = now.timestamp_millis() + 60_000;
        let crit = ev(Change::Raised, Level::Critical, "k1", "web1");
        let other = ev(Change::Raised, Level::Critical, "k2", "web2");
        for (scope, blocks_crit, blocks_other) in [
            (SnoozeScope::All, true, true),
            (SnoozeScope::Alert("k1".into()), true, false),
            (SnoozeScope::Node("WEB1".into()), true, false),
        ] {
            let p =
                PopupPolicy { snoozes: vec![Snooze { scope: scope.clone(), until_ms: until }], ..Default::default() };
            assert_eq!(!p.allows_at(&crit, &now), blocks_crit, "{scope:?}");
            assert_eq!(!p.allows_at(&other, &now), blocks_other, "{scope:?}");
            assert!(p.allows_at(&crit, &(now + chrono::Duration::minutes(2))), "expired");
        }
        let p =
            PopupPolicy { snoozes: vec![Snooze { scope: SnoozeScope::All, until_ms: until }], ..Default::default() };
        assert!(p.allows_at(&Event::TestReceived { token: None, received_ms: 0 }, &now));
        assert_eq!(p.snoozed_all_until(now.timestamp_millis()), Some(until));
    }

    #[test]
    fn an_acknowledged_alert_is_quiet_until_it_escalates_or_recovers() {
        let p = PopupPolicy::default();
        let now = at(12, 0);
        let acked = |change, level| {
            let mut alert = crate::alerts::sample_alert("k1", level, "web1");
            alert.acknowledged = true;
            Event::Alert { change, alert, previous: None }
        };
        assert!(!p.allows_at(&acked(Change::Updated, Level::Critical), &now));
        assert!(!p.allows_at(&acked(Change::Updated, Level::Warning), &now));
        assert!(p.allows_at(&acked(Change::Cleared, Level::Clear), &now));
        assert!(p.allows_at(&ev(Change::Updated, Level::Warning, "k1", "web1"), &now), "not acknowledged");
    }

    #[test]
    fn quiet_hours_wrap_midnight_and_may_let_critical_through() {
        let q = QuietHours {
            from: NaiveTime::from_hms_opt(22, 0, 0).unwrap(),
            to: NaiveTime::from_hms_opt(7, 0, 0).unwrap(),
            allow_critical: true,
        };
        assert!(q.contains(NaiveTime::from_hms_opt(23, 0, 0).unwrap()));
        assert!(q.contains(NaiveTime::from_hms_opt(3, 0, 0).unwrap()));
        assert!(!q.contains(NaiveTime::from_hms_opt(7, 0, 0).unwrap()));
        assert!(!q.contains(NaiveTime::from_hms_opt(12, 0, 0).unwrap()));
        let p = PopupPolicy { quiet_hours: Some(q), ..Default::default() };
        let night = at(23, 30);
        assert!(p.allows_at(&ev(Change::Raised, Level::Critical, "k", "h"), &night));
        assert!(p.allows_at(&ev(Change::Unreachable, Level::Unreachable, "k", "h"), &night));
        assert!(!p.allows_at(&ev(Change::Raised, Level::Warning, "k", "h"), &night));
        assert!(!p.allows_at(&ev(Change::Cleared, Level::Clear, "k", "h"), &night));
        assert!(p.allows_at(&ev(Change::Raised, Level::Warning, "k", "h"), &at(12, 0)));
        let strict = PopupPolicy { quiet_hours: Some(QuietHours { allow_critical: false, ..q }), ..Default::default() };
        assert!(!strict.allows_at(&ev(Change::Raised, Level::Critical, "k", "h"), &night));
        // Quiet hours that let nothing through hold back storm summaries too.
        assert!(!strict.any_at(&night) && strict.any_at(&at(12, 0)));
        assert!(p.any_at(&night), "critical alerts still come through, and their summary");
    }

    #[test]
    fn minimum_severity() {
        let now = at(12, 0);
        let warn = ev(Change::Raised, Level::Warning, "k", "h");
        let clear = ev(Change::Cleared, Level::Clear, "k", "h");
        let crit = ev(Change::Escalated, Level::Critical, "k", "h");
        let p = |m| PopupPolicy { min_severity: m, ..Default::default() };
        assert!(p(MinSeverity::Clear).allows_at(&clear, &now));
        assert!(!p(MinSeverity::Warning).allows_at(&clear, &now));
        assert!(p(MinSeverity::Warning).allows_at(&warn, &now));
        assert!(!p(MinSeverity::Critical).allows_at(&warn, &now));
        assert!(p(MinSeverity::Critical).allows_at(&crit, &now));
    }

    #[test]
    fn popups_turned_off_show_nothing() {
        let now = at(12, 0);
        let off = PopupPolicy { off: true, ..Default::default() };
        let test = Event::TestReceived { token: Some("t".into()), received_ms: 0 };
        for e in [
            ev(Change::Escalated, Level::Critical, "k", "h"),
            ev(Change::Unreachable, Level::Unreachable, "k", "h"),
            test,
        ] {
            assert!(PopupPolicy::default().allows_at(&e, &now), "{e:?}");
            assert!(!off.allows_at(&e, &now), "{e:?}");
        }
    }

    #[test]
    fn no_popup_at_all_while_off_or_everything_is_snoozed() {
        use crate::notify::PopupFilter as _;
        let shared = SharedPolicy::new(PopupPolicy::default());
        assert!(shared.any());
        let in_an_hour = Local::now().timestamp_millis() + 3_600_000;
        shared.update(|p| p.snoozes = vec![Snooze { scope: SnoozeScope::Node("web1".into()), until_ms: in_an_hour }]);
        assert!(shared.any(), "a node's snooze leaves the others");
        shared.update(|p| p.snoozes.push(Snooze { scope: SnoozeScope::All, until_ms: in_an_hour }));
        assert!(!shared.any());
        shared.update(|p| {
            p.snoozes.clear();
            p.off = true;
        });
        assert!(!shared.any());
    }

    #[test]
    fn until_eight_ends_at_the_next_eight_oclock() {
        let at = |d: u32, h: u32, m: u32| Local.with_ymd_and_hms(2026, 3, d, h, m, 0).unwrap();
        assert_eq!(next_eight_am(at(10, 1, 0)), at(10, 8, 0), "after midnight: this morning");
        assert_eq!(next_eight_am(at(10, 7, 59)), at(10, 8, 0));
        assert_eq!(next_eight_am(at(10, 8, 0)), at(11, 8, 0));
        assert_eq!(next_eight_am(at(10, 23, 30)), at(11, 8, 0));
    }
}
