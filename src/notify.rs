//! Desktop notifications: the [`Notifier`] port, its desktop implementation, what each
//! event looks like as a popup, and storm folding.
//!
//! A notifier that fails logs and carries on: popups are a convenience on top of the store,
//! never a reason to refuse a delivery.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::alerts::{Alert, Change, Event, Level};

#[cfg(all(unix, not(target_os = "macos")))]
mod fdo;

/// How urgent a popup is (the freedesktop urgency levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Urgency {
    /// Recoveries, reachable again.
    Low,
    /// Warnings, tests.
    Normal,
    /// Critical alerts, unreachable nodes.
    Critical,
}

/// One popup to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Popup {
    /// Popups with the same tag replace each other (one alert, one popup).
    pub tag: String,
    /// The title line.
    pub summary: String,
    /// The body text.
    pub body: String,
    /// How urgent.
    pub urgency: Urgency,
    /// What a click opens, if anything.
    pub url: Option<String>,
    /// How it counts during a storm.
    pub storm: StormClass,
}

/// How a popup counts when too many arrive at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StormClass {
    /// Folded with the critical ones: critical alerts, unreachable nodes.
    Critical,
    /// Folded with the warnings.
    Warning,
    /// Folded as "other": recoveries, reachable nodes, notifications of unknown shape.
    Other,
    /// Never folded: the user asked for it (the Test button).
    Exempt,
}

/// Why a popup could not be shown.
#[derive(Debug, Error)]
#[error("desktop notification failed: {0}")]
pub struct NotifyError(pub String);

/// Shows popups. Implementations may block (D-Bus round trips); callers run them off the
/// async threads.
pub trait Notifier: Send + Sync + 'static {
    /// Shows a popup, replacing the earlier one with the same tag where the platform allows.
    fn show(&self, popup: &Popup) -> Result<(), NotifyError>;

    /// Whether a popup with the tag of one on screen replaces it in place (rather than adding
    /// another one).
    fn replaces_in_place(&self) -> bool {
        false
    }
}

/// What an event looks like as a popup, if it gets one.
pub fn popup_for(event: &Event) -> Option<Popup> {
    match event {
        Event::Alert { change, alert, .. } => Some(alert_popup(*change, alert)),
        Event::TestReceived { token, .. } => Some(Popup {
            tag: "test".into(),
            summary: "Netdata test notification received".into(),
            body: match token {
                Some(t) => {
                    format!("Verification token: {t}\nPaste it into Netdata Cloud's webhook form.")
                }
                None => "The webhook is connected.".into(),
            },
            urgency: Urgency::Normal,
            url: None,
            storm: StormClass::Exempt,
        }),
        Event::Unknown { message, notification_id } => Some(Popup {
            tag: format!("unknown-{notification_id}"),
            summary: "Netdata notification".into(),
            body: message.clone(),
            urgency: Urgency::Normal,
            url: None,
            storm: StormClass::Other,
        }),
        Event::ConfigFileRejected { reason } => Some(Popup {
            tag: "config".into(),
            summary: "Alertray: the config file's edit is not applied".into(),
            body: format!("{reason}\nThe receiver runs on with its settings until the file is fixed."),
            urgency: Urgency::Normal,
            url: None,
            storm: StormClass::Exempt,
        }),
        Event::Listening { .. }
        | Event::ReceiverFailed { .. }
        | Event::StateChanged
        | Event::TunnelChanged
        | Event::ConfigFileApplied => None,
    }
}

fn alert_popup(change: Change, a: &Alert) -> Popup {
    let (summary, urgency) = match (change, a.level) {
        (Change::Unreachable, _) => (format!("{} is unreachable", a.host), Urgency::Critical),
        (Change::Reachable, _) => (format!("{} is reachable again", a.host), Urgency::Low),
        (Change::Cleared, _) => (format!("{}: {} recovered", a.host, a.name), Urgency::Low),
        (_, Level::Critical) => (format!("{}: {} is Critical", a.host, a.name), Urgency::Critical),
        (_, level) => (format!("{}: {} is {}", a.host, a.name, level.label()), Urgency::Normal),
    };
    let mut body = Vec::new();
    if let Some(v) = &a.value {
        body.push(format!("Value: {v}"));
    }
    match &a.summary {
        Some(s) => body.push(s.clone()),
        None if !a.message.is_empty() => body.push(a.message.clone()),
        None => {}
    }
    if !a.rooms.is_empty() {
        let names: Vec<&str> = a.rooms.iter().map(|r| r.name.as_str()).collect();
        body.push(format!("Rooms: {}", names.join(", ")));
    }
    let storm = match urgency {
        Urgency::Critical => StormClass::Critical,
        Urgency::Normal => StormClass::Warning,
        Urgency::Low => StormClass::Other,
    };
    Popup { tag: a.key.clone(), summary, body: body.join("\n"), urgency, url: a.url.clone(), storm }
}

/// Limits popups to `limit` a minute; the rest are counted into one summary popup
/// ("12 more alerts: 3 critical, 9 warning") that is replaced in place as more arrive.
/// Where popups replace each other in place, a popup that replaces one shown in the last
/// minute (the same alert again) adds nothing to the screen, so it is always shown: what is
/// on screen never falls behind its alert.
#[derive(Debug)]
pub struct StormGate {
    limit: usize,
    shown: VecDeque<Instant>,
    /// Whether the notifier replaces a popup in place.
    replaces: bool,
    /// The tags shown in the last minute, and when.
    on_screen: HashMap<String, Instant>,
    folded: FoldCounts,
    /// Something was folded since the summary was last taken.
    unsent: bool,
}

/// What was folded during the current storm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FoldCounts {
    /// Critical alerts and unreachable nodes.
    pub critical: usize,
    /// Warnings.
    pub warning: usize,
    /// Recoveries and everything else.
    pub other: usize,
}

impl FoldCounts {
    /// How many in all.
    pub fn total(&self) -> usize {
        self.critical + self.warning + self.other
    }
}

/// What to do with one popup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GateDecision {
    /// Show it.
    Show,
    /// It was folded into the storm summary, which should be refreshed.
    Folded,
}

const STORM_WINDOW: Duration = Duration::from_secs(60);

impl StormGate {
    /// A gate allowing `limit` new popups a minute, for a notifier that replaces popups in
    /// place (`replaces`) or not.
    pub fn new(limit: u32, replaces: bool) -> StormGate {
        StormGate {
            limit: limit.max(1) as usize,
            shown: VecDeque::new(),
            replaces,
            on_screen: HashMap::new(),
            folded: FoldCounts::default(),
            unsent: false,
        }
    }

    /// Decides on `popup` at `now`.
    pub fn admit(&mut self, popup: &Popup, now: Instant) -> GateDecision {
        let recent = |t: &Instant| now.saturating_duration_since(*t) < STORM_WINDOW;
        while self.shown.front().is_some_and(|t| !recent(t)) {
            self.shown.pop_front();
        }
        self.on_screen.retain(|_, t| recent(t));
        if self.shown.is_empty() && !self.unsent {
            // A minute after the last popup shown the storm is over (its summary is out);
            // the next summary starts from zero.
            self.folded = FoldCounts::default();
        }
        if popup.storm == StormClass::Exempt {
            return GateDecision::Show;
        }
        if let Some(at) = self.on_screen.get_mut(&popup.tag).filter(|_| self.replaces) {
            *at = now;
            return GateDecision::Show;
        }
        if self.shown.len() < self.limit && self.folded.total() == 0 {
            self.shown.push_back(now);
            self.on_screen.insert(popup.tag.clone(), now);
            return GateDecision::Show;
        }
        self.fold(popup.storm);
        GateDecision::Folded
    }

    /// Changes the limit (a new config).
    pub fn set_limit(&mut self, limit: u32) {
        self.limit = limit.max(1) as usize;
    }

    /// Counts a popup of `class` into the summary without showing it.
    pub fn fold(&mut self, class: StormClass) {
        match class {
            StormClass::Critical => self.folded.critical += 1,
            StormClass::Warning => self.folded.warning += 1,
            StormClass::Other | StormClass::Exempt => self.folded.other += 1,
        }
        self.unsent = true;
    }

    /// The counts folded so far in this storm.
    pub fn folded(&self) -> FoldCounts {
        self.folded
    }

    /// The summary popup, when something was folded since it was last taken: every fold
    /// reaches the screen, the last ones of a storm too.
    /// Forgets what was folded, without a summary (popups went off meanwhile).
    pub fn drop_folds(&mut self) {
        self.folded = FoldCounts::default();
        self.unsent = false;
    }

    pub fn take_summary(&mut self) -> Option<Popup> {
        if !std::mem::take(&mut self.unsent) {
            return None;
        }
        let f = self.folded;
        let mut parts = Vec::new();
        for (n, word) in [(f.critical, "critical"), (f.warning, "warning"), (f.other, "other")] {
            if n > 0 {
                parts.push(format!("{n} {word}"));
            }
        }
        let noun = if f.total() == 1 { "alert" } else { "alerts" };
        Some(Popup {
            tag: "storm".into(),
            summary: format!("{} more {noun}: {}", f.total(), parts.join(", ")),
            body: "Too many notifications at once; all are stored and listed in Alertray.".into(),
            urgency: if f.critical > 0 { Urgency::Critical } else { Urgency::Normal },
            url: None,
            storm: StormClass::Exempt,
        })
    }
}

/// Decides whether a popup is held back (snoozed, quiet hours, below the minimum severity).
/// Held-back alerts are still stored, listed and counted.
pub trait PopupFilter: Send + Sync + 'static {
    /// `true` to show the popup for `event`.
    fn allows(&self, event: &Event) -> bool;

    /// `false` while no popup at all may be shown (popups turned off, or every popup
    /// snoozed): storm summaries included.
    fn any(&self) -> bool {
        true
    }
}

/// A filter that holds nothing back.
pub struct AllowAll;

impl PopupFilter for AllowAll {
    fn allows(&self, _event: &Event) -> bool {
        true
    }
}

/// Turns events into popups until `shutdown`: filtered, gated against storms, shown one at
/// a time on a blocking thread. A lagging subscriber counts what it missed into the storm
/// summary.
pub async fn run_popups(
    mut events: broadcast::Receiver<Event>,
    notifier: Arc<dyn Notifier>,
    filter: Arc<dyn PopupFilter>,
    max_per_minute: Arc<std::sync::atomic::AtomicU32>,
    shutdown: CancellationToken,
) {
    let mut gate = StormGate::new(max_per_minute.load(Ordering::Relaxed), notifier.replaces_in_place());
    let mut last_error: Option<Instant> = None;
    // Refreshing the summary at most once a second keeps a storm from becoming a D-Bus storm.
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let popup = tokio::select! {
            _ = shutdown.cancelled() => break,
            // Folds taken while popups are off are dropped with their summary.
            _ = tick.tick() => if filter.any() {
                gate.take_summary()
            } else {
                gate.drop_folds();
                None
            },
            ev = events.recv() => match ev {
                Ok(ev) => {
                    let Some(p) = popup_for(&ev).filter(|_| filter.allows(&ev)) else { continue };
                    gate.set_limit(max_per_minute.load(Ordering::Relaxed));
                    match gate.admit(&p, Instant::now()) {
                        GateDecision::Show => Some(p),
                        GateDecision::Folded => None,
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    if filter.any() {
                        tracing::warn!("popups fell {n} events behind; counting them into the summary");
                        for _ in 0..n {
                            gate.fold(StormClass::Other);
                        }
                    }
                    None
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        };
        let Some(popup) = popup else { continue };
        let n = notifier.clone();
        let summary = crate::text::one_line(&popup.summary);
        let result = tokio::task::spawn_blocking(move || n.show(&popup)).await;
        let err = match result {
            Ok(Ok(())) => {
                // The notification server has answered: the popup is up (or replaced its
                // earlier one).
                tracing::debug!(%summary, "popup shown");
                None
            }
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(format!("the notifier panicked: {e}")),
        };
        if let Some(e) = err {
            // One line a minute is enough to say that no notification server is there.
            if last_error.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                tracing::warn!("{e} (alerts are still stored and listed)");
                last_error = Some(Instant::now());
            }
        }
    }
}

/// Opens an `http(s)` URL in the default browser; anything else is refused, since URLs come
/// from the network.
pub fn open_url(url: &str) -> Result<(), String> {
    let lower = url.trim().to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return Err(format!("refusing to open {url:?}: only http(s) URLs are opened"));
    }
    open::that_detached(url.trim()).map_err(|e| {
        tracing::debug!("opening {url}: {e}");
        format!("no browser opened {url} (is a default browser set?)")
    })
}

/// `text` as freedesktop notification body markup that shows it as written.
pub fn escape_markup(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Desktop popups: the freedesktop notification service on Linux and the BSDs (see
/// [`fdo`]), notify-rust elsewhere (where popups are neither replaced nor clicked through).
pub struct DesktopNotifier {
    app_name: String,
    icon: Option<String>,
    #[cfg(all(unix, not(target_os = "macos")))]
    bus: fdo::Bus,
}

impl DesktopNotifier {
    /// A notifier showing popups as `app_name`, with `icon` (a path or icon name).
    pub fn new(app_name: &str, icon: Option<String>) -> DesktopNotifier {
        DesktopNotifier {
            app_name: app_name.into(),
            icon,
            #[cfg(all(unix, not(target_os = "macos")))]
            bus: Default::default(),
        }
    }
}

impl Notifier for DesktopNotifier {
    #[cfg(all(unix, not(target_os = "macos")))]
    fn show(&self, popup: &Popup) -> Result<(), NotifyError> {
        self.bus.show(&self.app_name, self.icon.as_deref().unwrap_or_default(), popup)
    }

    #[cfg(not(all(unix, not(target_os = "macos"))))]
    fn show(&self, popup: &Popup) -> Result<(), NotifyError> {
        let mut n = notify_rust::Notification::new();
        n.appname(&self.app_name).summary(&popup.summary).body(&popup.body);
        if let Some(icon) = &self.icon {
            n.icon(icon);
        }
        n.show().map_err(|e| NotifyError(e.to_string()))?;
        Ok(())
    }

    /// freedesktop servers replace a popup given the id of the one to replace.
    fn replaces_in_place(&self) -> bool {
        cfg!(all(unix, not(target_os = "macos")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::Room;

    fn alert(level: Level) -> Alert {
        Alert {
            key: "k".into(),
            host: "web1".into(),
            value: Some("99%".into()),
            summary: Some("CPU utilization".into()),
            message: "m".into(),
            url: Some("https://u".into()),
            rooms: vec![Room { name: "All nodes".into(), url: None }],
            ..crate::alerts::sample_alert("k", level, "web1")
        }
    }

    /// Records the popups it is asked to show. (A stand-in for the notification server, which
    /// tests/desktop.rs uses for real: here the question is only which popups are asked for,
    /// with the settings changed while the loop runs.)
    #[derive(Default)]
    struct Recorder(std::sync::Mutex<Vec<String>>);

    impl Notifier for Recorder {
        fn show(&self, popup: &Popup) -> Result<(), NotifyError> {
            self.0.lock().unwrap().push(popup.summary.clone());
            Ok(())
        }
    }

    #[tokio::test]
    async fn popups_turned_off_mid_storm_show_no_summary() {
        // The clock moves only while every task here waits (and not while a popup is shown),
        // so a slow machine cannot put the loop's tick between the fold and the switch.
        tokio::time::pause();
        let (tx, rx) = broadcast::channel(64);
        let recorder = Arc::new(Recorder::default());
        let policy = crate::policy::SharedPolicy::new(Default::default());
        let shutdown = CancellationToken::new();
        let popups = tokio::spawn(run_popups(
            rx,
            recorder.clone(),
            Arc::new(policy.clone()),
            Arc::new(std::sync::atomic::AtomicU32::new(1)),
            shutdown.clone(),
        ));
        let raise = |key: &str| Event::Alert {
            change: Change::Raised,
            alert: crate::alerts::sample_alert(key, Level::Warning, key),
            previous: None,
        };
        // The summary is due at the loop's ticks, a second apart: the first passes now.
        tokio::time::sleep(Duration::from_millis(100)).await;
        tx.send(raise("a")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while recorder.0.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "the first popup never came");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Two more fold into the storm; then popups go off before the summary is due.
        tx.send(raise("b")).unwrap();
        tx.send(raise("c")).unwrap();
        // The loop shares this thread: it folds them while this test yields, and the clock
        // stands still until the test sleeps.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        policy.update(|p| p.off = true);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        shutdown.cancel();
        popups.await.unwrap();
        assert_eq!(*recorder.0.lock().unwrap(), ["a: cpu is Warning"]);
    }

    #[test]
    fn popups_have_the_right_words_and_urgency() {
        let ev = |change, level| Event::Alert { change, alert: alert(level), previous: None };
        let p = popup_for(&ev(Change::Raised, Level::Critical)).unwrap();
        assert_eq!(p.summary, "web1: cpu is Critical");
        assert_eq!(p.urgency, Urgency::Critical);
        assert_eq!(p.body, "Value: 99%\nCPU utilization\nRooms: All nodes");
        assert_eq!(p.url.as_deref(), Some("https://u"));
        let p = popup_for(&ev(Change::Raised, Level::Warning)).unwrap();
        assert_eq!((p.summary.as_str(), p.urgency), ("web1: cpu is Warning", Urgency::Normal));
        let p = popup_for(&ev(Change::Cleared, Level::Clear)).unwrap();
        assert_eq!((p.summary.as_str(), p.urgency), ("web1: cpu recovered", Urgency::Low));
        let p = popup_for(&ev(Change::Unreachable, Level::Unreachable)).unwrap();
        assert_eq!((p.summary.as_str(), p.urgency), ("web1 is unreachable", Urgency::Critical));
        let p = popup_for(&ev(Change::Reachable, Level::Reachable)).unwrap();
        assert_eq!(p.urgency, Urgency::Low);
        assert!(popup_for(&Event::StateChanged).is_none());
    }

    fn popup(tag: &str, storm: StormClass) -> Popup {
        Popup { tag: tag.into(), summary: tag.into(), body: String::new(), urgency: Urgency::Normal, url: None, storm }
    }

    #[test]
    fn storm_folds_beyond_the_limit_and_resets_after_a_quiet_minute() {
        let mut g = StormGate::new(10, true);
        let t0 = Instant::now();
        for i in 0..10 {
            assert_eq!(g.admit(&popup(&format!("w{i}"), StormClass::Warning), t0), GateDecision::Show);
        }
        for i in 0..3 {
            assert_eq!(g.admit(&popup(&format!("c{i}"), StormClass::Critical), t0), GateDecision::Folded);
        }
        for i in 0..9 {
            assert_eq!(g.admit(&popup(&format!("x{i}"), StormClass::Warning), t0), GateDecision::Folded);
        }
        let s = g.take_summary().unwrap();
        assert_eq!(s.summary, "12 more alerts: 3 critical, 9 warning");
        assert_eq!(s.urgency, Urgency::Critical);
        assert!(g.take_summary().is_none(), "nothing new was folded since");
        // Still within the minute: folded.
        assert_eq!(g.admit(&popup("late", StormClass::Other), t0 + Duration::from_secs(59)), GateDecision::Folded);
        assert_eq!(g.take_summary().unwrap().summary, "13 more alerts: 3 critical, 9 warning, 1 other");
        // A minute after the last shown popup, the storm is over.
        assert_eq!(g.admit(&popup("next", StormClass::Other), t0 + Duration::from_secs(61)), GateDecision::Show);
        assert!(g.take_summary().is_none());
    }

    #[test]
    fn a_popup_replacing_one_on_screen_is_shown_even_in_a_storm() {
        let mut g = StormGate::new(2, true);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(g.admit(&popup("a", StormClass::Warning), at(0)), GateDecision::Show);
        assert_eq!(g.admit(&popup("b", StormClass::Warning), at(30)), GateDecision::Show);
        assert_eq!(g.admit(&popup("c", StormClass::Critical), at(30)), GateDecision::Folded);
        // "b" escalates, then recovers: its popup on screen follows, and nothing is counted.
        assert_eq!(g.admit(&popup("b", StormClass::Critical), at(35)), GateDecision::Show);
        assert_eq!(g.admit(&popup("b", StormClass::Other), at(50)), GateDecision::Show);
        assert_eq!(g.take_summary().unwrap().summary, "1 more alert: 1 critical");
        // A minute after its last popup, "a" would be a new popup again: the storm (until a
        // minute after "b" was first shown) folds it.
        assert_eq!(g.admit(&popup("a", StormClass::Warning), at(70)), GateDecision::Folded);
        assert_eq!(g.take_summary().unwrap().summary, "2 more alerts: 1 critical, 1 warning");
        // Where popups do not replace each other, the same alert again is a new popup.
        let mut g = StormGate::new(1, false);
        assert_eq!(g.admit(&popup("a", StormClass::Warning), at(0)), GateDecision::Show);
        assert_eq!(g.admit(&popup("a", StormClass::Critical), at(1)), GateDecision::Folded);
    }

    #[test]
    fn test_popups_are_never_folded_and_unknown_ones_fold_as_other() {
        let mut g = StormGate::new(1, true);
        let t0 = Instant::now();
        assert_eq!(g.admit(&popup("a", StormClass::Warning), t0), GateDecision::Show);
        let test = popup_for(&Event::TestReceived { token: Some("t".into()), received_ms: 0 }).unwrap();
        let unknown = popup_for(&Event::Unknown { message: "m".into(), notification_id: 7 }).unwrap();
        assert_eq!(g.admit(&test, t0), GateDecision::Show);
        assert_eq!(g.admit(&test, t0), GateDecision::Show);
        assert_eq!(g.admit(&unknown, t0), GateDecision::Folded);
        assert_eq!(g.take_summary().unwrap().summary, "1 more alert: 1 other");
    }

    #[test]
    fn the_last_folds_of_a_storm_still_reach_the_summary() {
        let mut g = StormGate::new(1, true);
        let t0 = Instant::now();
        assert_eq!(g.admit(&popup("a", StormClass::Warning), t0), GateDecision::Show);
        assert_eq!(g.admit(&popup("b", StormClass::Critical), t0 + Duration::from_secs(59)), GateDecision::Folded);
        // The storm ends before the summary is taken: the next popup must not erase the fold.
        assert_eq!(g.admit(&popup("c", StormClass::Warning), t0 + Duration::from_secs(61)), GateDecision::Folded);
        assert_eq!(g.take_summary().unwrap().summary, "2 more alerts: 1 critical, 1 warning");
        assert_eq!(g.admit(&popup("d", StormClass::Warning), t0 + Duration::from_secs(62)), GateDecision::Show);
        assert!(g.take_summary().is_none());
    }
}
