//! Popups on Linux and the BSDs: the freedesktop notification service on the session bus.
//!
//! One connection sends every popup and hears every click. It subscribes to the service's
//! signals before its first popup goes out, so:
//! - a click is never missed, however soon it comes;
//! - a server that sends its signals only to the popup's sender is heard;
//! - one thread listens for all popups, however many are up.
//!
//! (notify-rust, used on the other platforms, opens a connection per popup and subscribes on
//! it only once the popup is up, in a thread of its own per popup.)

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use futures_util::StreamExt as _;
use zbus::Variant;

use super::{NotifyError, Popup, Urgency};
use crate::lock::MutexExt as _;

const SERVICE: &str = "org.freedesktop.Notifications";
const PATH: &str = "/org/freedesktop/Notifications";

/// How many popups' clicks are remembered; beyond that the one shown longest ago is
/// forgotten, so a server that never says a popup closed cannot make the list grow.
const CLICKABLE: usize = 512;

/// The connection to the notification service: made at the first popup, made again if it
/// breaks (the session bus restarted).
#[derive(Default)]
pub(super) struct Bus {
    session: Mutex<Option<Arc<Session>>>,
    /// The id of the popup shown last for each tag, for the next one to replace.
    ids: Mutex<HashMap<String, u32>>,
}

struct Session {
    conn: zbus::Connection,
    /// What a click on each popup opens.
    clicks: Arc<Mutex<Clickable>>,
    /// Set by the listening thread when the connection has ended.
    closed: Arc<AtomicBool>,
    /// Whether the server reads bodies as markup, once it has answered.
    body_markup: OnceLock<bool>,
}

impl Bus {
    /// Shows `popup`, in place of the last one shown with its tag.
    pub(super) fn show(&self, app_name: &str, icon: &str, popup: &Popup) -> Result<(), NotifyError> {
        let session = self.session()?;
        let replaces = self.ids.locked().get(&popup.tag).copied().unwrap_or(0);
        // Servers that read bodies as markup would take "<a href=...>" in an alert's message
        // for a link, and drop "< 10%": the text goes as text.
        let body = if session.body_markup() { super::escape_markup(&popup.body) } else { popup.body.clone() };
        let actions: &[&str] = if popup.url.is_some() { &["default", "Open", "open", "Open in Netdata"] } else { &[] };
        let urgency: u8 = match popup.urgency {
            Urgency::Low => 0,
            Urgency::Normal => 1,
            Urgency::Critical => 2,
        };
        let hints = HashMap::from([("urgency", Variant::U8(urgency))]);
        // -1: the server's own timeout for the urgency.
        let call = (app_name, replaces, icon, popup.summary.as_str(), body.as_str(), actions, hints, -1i32);
        let id = zbus::block_on(async {
            let reply = session.conn.call_method(Some(SERVICE), PATH, Some(SERVICE), "Notify", &call).await?;
            reply.body().deserialize::<u32>()
        })
        .map_err(|e| NotifyError(e.to_string()))?;
        // No click can come before the server has answered: it is a person's, on a popup drawn.
        session.clicks.locked().shown(id, popup.url.as_deref());
        self.ids.locked().insert(popup.tag.clone(), id);
        Ok(())
    }

    fn session(&self) -> Result<Arc<Session>, NotifyError> {
        let mut current = self.session.locked();
        if let Some(s) = current.as_ref().filter(|s| !s.closed.load(Ordering::SeqCst)) {
            return Ok(s.clone());
        }
        let s = Arc::new(Session::open()?);
        *current = Some(s.clone());
        Ok(s)
    }
}

impl Session {
    /// Connects, subscribes to the service's signals, and starts the thread that hears them.
    /// The thread drives the connection and ends with it.
    fn open() -> Result<Session, NotifyError> {
        let clicks = Arc::new(Mutex::new(Clickable::default()));
        let closed = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let (heard, ended) = (clicks.clone(), closed.clone());
        std::thread::Builder::new()
            .name("alertray-clicks".into())
            .spawn(move || {
                zbus::block_on(async move {
                    let subscribed = async {
                        let conn = zbus::Connection::session().await?;
                        // Answers the calls any peer may make (Ping, Introspect), so that a
                        // tool going through the bus's connections does not wait on this one.
                        conn.object_server();
                        let rule = zbus::MatchRule::builder()
                            .msg_type(zbus::message::Type::Signal)
                            .interface(SERVICE)
                            .path(PATH)
                            .build()?;
                        let signals = zbus::MessageStream::for_match_rule(rule, &conn, None).await?;
                        Ok::<_, zbus::Error>((conn, signals))
                    };
                    match subscribed.await {
                        Ok((conn, signals)) => {
                            let _ = tx.send(Ok(conn));
                            listen(signals, &heard).await;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                        }
                    }
                    ended.store(true, Ordering::SeqCst);
                })
            })
            .map_err(|e| NotifyError(format!("cannot start the popup thread: {e}")))?;
        let conn = rx
            .recv()
            .map_err(|_| NotifyError("the popup thread ended".into()))?
            .map_err(|e| NotifyError(format!("no session bus: {e}")))?;
        Ok(Session { conn, clicks, closed, body_markup: OnceLock::new() })
    }

    /// Whether the server reads bodies as markup; until it has answered, yes (most do).
    fn body_markup(&self) -> bool {
        if let Some(known) = self.body_markup.get() {
            return *known;
        }
        let asked = zbus::block_on(async {
            let reply = self.conn.call_method(Some(SERVICE), PATH, Some(SERVICE), "GetCapabilities", &()).await?;
            reply.body().deserialize::<Vec<String>>()
        });
        match asked {
            Ok(caps) => *self.body_markup.get_or_init(|| caps.iter().any(|c| c == "body-markup")),
            Err(_) => true,
        }
    }
}

/// What a click on each of Alertray's popups opens, by popup id.
#[derive(Default)]
struct Clickable {
    /// Popup id -> when it was last shown (a count of popups shown) and its link.
    urls: HashMap<u32, (u64, String)>,
    shown: u64,
}

impl Clickable {
    /// Popup `id` was shown, new or in place of an earlier one with the same id.
    fn shown(&mut self, id: u32, url: Option<&str>) {
        let Some(url) = url else {
            // A replacement without a link: a click on it opens nothing, not the old link.
            self.urls.remove(&id);
            return;
        };
        self.shown += 1;
        self.urls.insert(id, (self.shown, url.to_owned()));
        if self.urls.len() > CLICKABLE {
            // A popup replaced in place keeps its id: the one to forget is the one shown
            // longest ago, not the lowest id.
            let oldest = self.urls.iter().min_by_key(|(_, (shown, _))| *shown).map(|(id, _)| *id);
            if let Some(oldest) = oldest {
                self.urls.remove(&oldest);
            }
        }
    }

    fn url(&self, id: u32) -> Option<String> {
        self.urls.get(&id).map(|(_, url)| url.clone())
    }

    fn closed(&mut self, id: u32) {
        self.urls.remove(&id);
    }
}

/// Opens what a click on one of Alertray's popups asks for, until the connection ends.
async fn listen(mut signals: zbus::MessageStream, clicks: &Mutex<Clickable>) {
    while let Some(Ok(msg)) = signals.next().await {
        let header = msg.header();
        match header.member().map(|m| m.as_str()) {
            Some("ActionInvoked") => {
                let Ok((id, action)) = msg.body().deserialize::<(u32, String)>() else { continue };
                // Other programs' popups have other ids.
                let url = clicks.locked().url(id);
                if let Some(url) = url.filter(|_| action == "default" || action == "open") {
                    if let Err(e) = super::open_url(&url) {
                        tracing::warn!("{e}");
                    }
                }
            }
            Some("NotificationClosed") => {
                if let Ok((id, _reason)) = msg.body().deserialize::<(u32, u32)>() {
                    clicks.locked().closed(id);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_popup_replaced_in_place_is_remembered_past_newer_ones() {
        let mut clicks = Clickable::default();
        for id in 1..=CLICKABLE as u32 {
            clicks.shown(id, Some(&format!("https://app.netdata.cloud/a/{id}")));
        }
        // Popup 1 changes in place (same id), then popups keep coming.
        clicks.shown(1, Some("https://app.netdata.cloud/a/1-updated"));
        for id in 1000..1010 {
            clicks.shown(id, Some("https://app.netdata.cloud/new"));
        }
        assert_eq!(clicks.urls.len(), CLICKABLE);
        assert_eq!(clicks.url(1).as_deref(), Some("https://app.netdata.cloud/a/1-updated"));
        // The ten shown longest ago went, in order.
        assert!((2..=11).all(|id| clicks.url(id).is_none()));
        assert_eq!(clicks.url(12).as_deref(), Some("https://app.netdata.cloud/a/12"));
    }

    #[test]
    fn a_replacement_without_a_link_and_a_closed_popup_open_nothing() {
        let mut clicks = Clickable::default();
        clicks.shown(7, Some("https://app.netdata.cloud/a/7"));
        clicks.shown(8, Some("https://app.netdata.cloud/a/8"));
        clicks.shown(7, None);
        clicks.closed(8);
        assert_eq!(clicks.url(7), None);
        assert_eq!(clicks.url(8), None);
    }
}
