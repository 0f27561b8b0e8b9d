//! Turns any webhook body into one [`Notification`].
//!
//! Netdata has sent at least two alert shapes (the flat one of its 2023 doc, with keys renamed
//! over time, and the nested one really sent in 2026) and two reachability shapes. The parser
//! reads a body as a loose JSON tree and picks fields from whichever shape is present: unknown
//! keys are ignored, known keys may be missing, numbers may stand where strings were documented
//! and the reverse, and status words come in any case. A JSON object that matches no known
//! shape is kept as [`Notification::Unknown`], never dropped.
//!
//! This module knows nothing of HTTP or storage.

use std::borrow::Cow;

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

mod tree;

use tree::{Json, Object};

/// How deep a body may nest before it is refused (serde_json itself stops at 128).
pub const MAX_DEPTH: usize = 64;

/// Why a body could not be read as a notification at all.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PayloadError {
    /// The body is empty.
    #[error("the body is empty; a JSON object was expected")]
    Empty,
    /// The body is not JSON.
    #[error("the body is not valid JSON: {0}")]
    NotJson(String),
    /// The body is JSON but not an object.
    #[error("the body is {0} in JSON, but a JSON object was expected")]
    NotObject(&'static str),
    /// The body nests deeper than [`MAX_DEPTH`].
    #[error("the body nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// The severity of an alert as Netdata reported it, normalised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The alert recovered.
    Clear,
    /// A status word we do not know (e.g. `undefined`, `uninitialized`); it changes no state.
    Other,
    /// Raised to or still at Warning.
    Warning,
    /// Raised to or still at Critical.
    Critical,
}

impl Status {
    /// Reads a status word in any case; `None` for an empty word.
    pub fn from_word(word: &str) -> Option<Status> {
        let w = word.trim();
        if w.is_empty() {
            return None;
        }
        Some(match w.to_ascii_lowercase().as_str() {
            "critical" | "crit" => Status::Critical,
            "warning" | "warn" => Status::Warning,
            // Netdata removes an alert whose chart or configuration went away: not raised any
            // more, so it leaves the active list as a recovery does.
            "clear" | "cleared" | "recovered" | "ok" | "normal" | "removed" => Status::Clear,
            _ => Status::Other,
        })
    }

    /// The status of an alert from its status word, or from its message when the word is
    /// missing or one we do not know.
    fn of(word: &str, message: &str) -> Status {
        Status::from_word(word)
            .filter(|s| *s != Status::Other)
            .or_else(|| Status::from_message(message))
            .unwrap_or(Status::Other)
    }

    /// Reads the status from a message such as "Raised to Critical, ..." or "Recovered, ...".
    fn from_message(message: &str) -> Option<Status> {
        let m = message.trim_start().to_ascii_lowercase();
        if m.starts_with("raised to critical") || m.starts_with("escalated to critical") {
            Some(Status::Critical)
        } else if m.starts_with("raised to warning")
            || m.starts_with("escalated to warning")
            || m.starts_with("de-escalated to warning")
        {
            Some(Status::Warning)
        } else if m.starts_with("recovered") || m.starts_with("cleared") {
            Some(Status::Clear)
        } else {
            None
        }
    }

    /// The lowercase word for this status.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Clear => "clear",
            Status::Other => "other",
            Status::Warning => "warning",
            Status::Critical => "critical",
        }
    }

    /// `true` for Warning and Critical: states that make an alert active.
    pub fn is_active(self) -> bool {
        matches!(self, Status::Warning | Status::Critical)
    }
}

/// A room the node belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Room {
    /// The room's name.
    pub name: String,
    /// The room's URL in Netdata Cloud, if given.
    pub url: Option<String>,
}

/// One other active alert on the same node, from the nested shape's `log.entries`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtherAlert {
    /// The alert's name.
    pub name: String,
    /// Its status word as sent.
    pub status: String,
    /// When it was triggered, as sent.
    pub triggered_at: Option<String>,
}

/// An alert transition, normalised from either shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertNotification {
    /// The key that identifies this alert across transitions.
    pub key: String,
    /// The normalised status.
    pub status: Status,
    /// The status word exactly as sent (empty if none was sent).
    pub raw_status: String,
    /// The status before this transition, if sent.
    pub prev_status: Option<Status>,
    /// The alert's name (`used_swap`).
    pub name: String,
    /// The human message Netdata wrote.
    pub message: String,
    /// The rendered summary (or the flat `info`).
    pub summary: Option<String>,
    /// The rendered info.
    pub info: Option<String>,
    /// The value as a display string (`100%`).
    pub value: Option<String>,
    /// The chart id (`mem.swap`).
    pub chart: Option<String>,
    /// The chart context.
    pub context: Option<String>,
    /// The node's hostname.
    pub host: Option<String>,
    /// The node's id.
    pub node_id: Option<String>,
    /// The space's name.
    pub space: Option<String>,
    /// The rooms the node belongs to.
    pub rooms: Vec<Room>,
    /// The alert's URL in Netdata Cloud.
    pub url: Option<String>,
    /// The transition id, which identifies one delivery of one transition.
    pub transition_id: Option<String>,
    /// When the transition happened, with the node's offset.
    pub triggered_at: Option<DateTime<FixedOffset>>,
    /// How long the alert has been in its state, for display.
    pub duration: Option<String>,
    /// The duration in seconds, when sent as a number.
    pub duration_secs: Option<i64>,
    /// The alert's classification (`Utilization`, `Error`...).
    pub classification: Option<String>,
    /// How many other critical alerts are active on the node.
    pub other_critical: Option<i64>,
    /// How many other warning alerts are active on the node.
    pub other_warning: Option<i64>,
    /// The other active alerts on the node, where listed.
    pub other_alerts: Vec<OtherAlert>,
}

/// A node became unreachable or reachable again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReachabilityNotification {
    /// The key that identifies this node's reachability across notifications.
    pub key: String,
    /// `true` when the node is reachable again.
    pub reachable: bool,
    /// The human message Netdata wrote.
    pub message: String,
    /// The node's hostname.
    pub host: Option<String>,
    /// The node's id.
    pub node_id: Option<String>,
    /// The space's name.
    pub space: Option<String>,
    /// The node's URL in Netdata Cloud.
    pub url: Option<String>,
    /// The severity word as sent (`critical`, `info`).
    pub severity: Option<String>,
    /// The other nodes it names, after the first: a parent that goes away can take the nodes
    /// that stream through it along. Each is its own active problem, under its own key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_nodes: Vec<ReachabilityNode>,
}

/// A node named by a reachability notification after its first one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReachabilityNode {
    /// The key of this node's reachability.
    pub key: String,
    /// Its hostname.
    pub host: Option<String>,
    /// Its id.
    pub node_id: Option<String>,
    /// Its page in Netdata Cloud.
    pub url: Option<String>,
}

/// How a node is named to the user: by its hostname, else by its id.
pub fn node_name<'a>(host: &'a Option<String>, node_id: &'a Option<String>) -> Option<&'a str> {
    host.as_deref().or(node_id.as_deref())
}

impl ReachabilityNotification {
    /// One notification per node it names, the first node first: what each node's state
    /// and popup are made from. Netdata's message names the first node; each other one gets
    /// a message of the same form naming it ("Space/host is unreachable").
    pub fn each_node(&self) -> Vec<ReachabilityNotification> {
        let first = ReachabilityNotification { other_nodes: Vec::new(), ..self.clone() };
        let state = if self.reachable { "reachable" } else { "unreachable" };
        let others = self.other_nodes.iter().map(|n| {
            let name = node_name(&n.host, &n.node_id).unwrap_or("a node");
            let message = match &self.space {
                Some(space) => format!("{space}/{name} is {state}"),
                None => format!("{name} is {state}"),
            };
            ReachabilityNotification {
                key: n.key.clone(),
                host: n.host.clone(),
                node_id: n.node_id.clone(),
                url: n.url.clone(),
                message,
                ..first.clone()
            }
        });
        std::iter::once(first.clone()).chain(others).collect()
    }
}

/// The notification Netdata sends when the user presses Test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestNotification {
    /// The message.
    pub message: String,
    /// The verification token the user must paste back into Netdata Cloud.
    pub token: Option<String>,
}

/// A JSON object that matches no known shape: kept and shown by its message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnknownNotification {
    /// The `message` field, or a summary of the object's keys.
    pub message: String,
}

/// Any notification Netdata can send.
// One value per notification, moved a few times: boxing would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notification {
    /// An alert transition.
    Alert(AlertNotification),
    /// A node reachability change.
    Reachability(ReachabilityNotification),
    /// A test notification, with its verification token.
    Test(TestNotification),
    /// A JSON object of no known shape.
    Unknown(UnknownNotification),
}

impl Notification {
    /// The kind as a short word (`alert`, `reachability`, `test`, `unknown`).
    pub fn kind(&self) -> &'static str {
        match self {
            Notification::Alert(_) => "alert",
            Notification::Reachability(_) => "reachability",
            Notification::Test(_) => "test",
            Notification::Unknown(_) => "unknown",
        }
    }

    /// The human message.
    pub fn message(&self) -> &str {
        match self {
            Notification::Alert(a) => &a.message,
            Notification::Reachability(r) => &r.message,
            Notification::Test(t) => &t.message,
            Notification::Unknown(u) => &u.message,
        }
    }

    /// The transition id, for alerts that carry one.
    pub fn transition_id(&self) -> Option<&str> {
        match self {
            Notification::Alert(a) => a.transition_id.as_deref(),
            _ => None,
        }
    }

    /// The key of the alert or node it is about (the first node, for a reachability that
    /// names several); `None` for tests and unknown notifications.
    pub fn key(&self) -> Option<&str> {
        match self {
            Notification::Alert(a) => Some(&a.key),
            Notification::Reachability(r) => Some(&r.key),
            Notification::Test(_) | Notification::Unknown(_) => None,
        }
    }

    /// What the active state is made of: one notification per node for a reachability that
    /// names several, in their order; otherwise this one alone.
    pub fn each_state(&self) -> Vec<std::borrow::Cow<'_, Notification>> {
        match self {
            Notification::Reachability(r) if !r.other_nodes.is_empty() => {
                r.each_node().into_iter().map(|r| std::borrow::Cow::Owned(Notification::Reachability(r))).collect()
            }
            _ => vec![std::borrow::Cow::Borrowed(self)],
        }
    }
}

/// Parses a webhook body. A leading UTF-8 byte order mark is ignored, as RFC 8259 allows:
/// some HTTP clients (Windows PowerShell's among them) put one before the JSON.
pub fn parse(body: &[u8]) -> Result<Notification, PayloadError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(PayloadError::Empty);
    }
    let value: Json<'_> = serde_json::from_slice(body).map_err(|e| {
        if e.to_string().contains("recursion limit") {
            PayloadError::TooDeep
        } else {
            PayloadError::NotJson(e.to_string())
        }
    })?;
    if value.depth() > MAX_DEPTH {
        return Err(PayloadError::TooDeep);
    }
    match value {
        Json::Object(map) => Ok(from_object(&map)),
        Json::Array(_) => Err(PayloadError::NotObject("an array")),
        Json::String(_) => Err(PayloadError::NotObject("a string")),
        Json::Number(_) => Err(PayloadError::NotObject("a number")),
        Json::Bool(_) => Err(PayloadError::NotObject("a boolean")),
        Json::Null => Err(PayloadError::NotObject("null")),
    }
}

/// Reads a notification from an already-decoded JSON object.
fn from_object(obj: &Object<'_>) -> Notification {
    if let Some(alert) = obj.get("alert").and_then(Json::as_object) {
        return Notification::Alert(nested_alert(obj, alert));
    }
    if is_reachability(obj) {
        return Notification::Reachability(reachability(obj));
    }
    if is_flat_alert(obj) {
        return Notification::Alert(flat_alert(obj));
    }
    if is_test(obj) {
        return Notification::Test(TestNotification {
            message: text(obj.get("message")).unwrap_or_else(|| "Test Notification".into()),
            token: text(obj.get("token")),
        });
    }
    Notification::Unknown(UnknownNotification {
        message: text(obj.get("message")).or_else(|| text(obj.get("title"))).unwrap_or_else(|| summarise_keys(obj)),
    })
}

fn summarise_keys(obj: &Object<'_>) -> String {
    if obj.is_empty() {
        return "an empty JSON object".into();
    }
    let entries = obj.entries();
    let mut keys: Vec<&str> = entries.iter().map(|(k, _)| *k).take(8).collect();
    keys.sort_unstable();
    let more = entries.len().saturating_sub(keys.len());
    let mut s = format!("a JSON object with keys: {}", keys.join(", "));
    if more > 0 {
        s.push_str(&format!(" and {more} more"));
    }
    s
}

/// A string from a JSON value, accepting numbers and booleans where strings were documented.
/// Empty strings count as missing.
fn text(v: Option<&Json<'_>>) -> Option<String> {
    let s = match v? {
        Json::String(s) => s.trim().to_string(),
        Json::Number(n) => n.to_string(),
        Json::Bool(b) => b.to_string(),
        _ => return None,
    };
    (!s.is_empty()).then_some(s)
}

/// An integer from a JSON value, accepting strings that hold one (and floats, truncated).
fn integer(v: Option<&Json<'_>>) -> Option<i64> {
    match v? {
        Json::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Json::String(s) => {
            let s = s.trim();
            s.parse::<i64>().ok().or_else(|| s.parse::<f64>().ok().map(|f| f as i64))
        }
        _ => None,
    }
}

/// A boolean from a JSON value, accepting `"true"`/`"false"` and 0/1.
fn boolean(v: Option<&Json<'_>>) -> Option<bool> {
    match v? {
        Json::Bool(b) => Some(*b),
        Json::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Some(true),
            "false" | "no" | "0" => Some(false),
            _ => None,
        },
        Json::Number(n) => n.as_i64().map(|i| i != 0),
        _ => None,
    }
}

/// Looks up a key without regard to case, preferring the exact spelling.
fn get_ci<'a, 'b>(obj: &'a Object<'b>, key: &str) -> Option<&'a Json<'b>> {
    obj.get(key).or_else(|| obj.get_ignore_case(key))
}

fn first<'a, 'b>(obj: &'a Object<'b>, keys: &[&str]) -> Option<&'a Json<'b>> {
    keys.iter().filter_map(|k| get_ci(obj, k)).find(|v| !v.is_null())
}

/// The space's name from either a string or a `{name, slug}` object.
fn space_name(obj: &Object<'_>) -> Option<String> {
    match get_ci(obj, "space")? {
        Json::Object(s) => text(s.get("name")).or_else(|| text(s.get("slug"))),
        other => text(Some(other)),
    }
}

/// Rooms as a list of `{name, url}` objects, a map of name -> url, or a list of names.
fn rooms(v: Option<&Json<'_>>) -> Vec<Room> {
    match v {
        Some(Json::Array(items)) => items
            .iter()
            .flat_map(|item| match item {
                Json::Object(o) => match text(o.get("name"))
                    .or_else(|| text(o.get("slug")))
                    .or_else(|| text(o.get("id")))
                    .or_else(|| text(o.get("url")))
                {
                    // A room with no name is known by its link.
                    Some(name) => vec![Room { name, url: text(o.get("url")) }],
                    // `[{"Room A": "https://..."}]`: name -> url pairs, one object per room.
                    None => o
                        .entries()
                        .into_iter()
                        .filter_map(|(name, url)| Some(Room { name: name.to_string(), url: Some(text(Some(url))?) }))
                        .collect(),
                },
                other => text(Some(other)).map(|name| Room { name, url: None }).into_iter().collect(),
            })
            .collect(),
        Some(Json::Object(map)) => map
            .entries()
            .into_iter()
            .map(|(name, url)| match url {
                // A map of one room's fields rather than name -> url.
                Json::Object(o) => {
                    Room { name: text(o.get("name")).unwrap_or_else(|| name.to_string()), url: text(o.get("url")) }
                }
                other => Room { name: name.to_string(), url: text(Some(other)) },
            })
            .collect(),
        Some(other) => text(Some(other)).map(|name| vec![Room { name, url: None }]).unwrap_or_default(),
        None => Vec::new(),
    }
}

/// Parses a timestamp: RFC 3339 (keeping its offset), ISO 8601 without offset (taken as
/// UTC), or Unix seconds (Unix milliseconds for a number too large to be seconds).
fn timestamp(v: Option<&Json<'_>>) -> Option<DateTime<FixedOffset>> {
    match v? {
        // Unix seconds, whole or not; from 10^11 (the year 5138 in seconds, 1973 in
        // milliseconds) it can only be milliseconds.
        Json::Number(n) => {
            let ms = match n.as_i64() {
                Some(whole) if whole.unsigned_abs() >= 100_000_000_000 => whole,
                Some(secs) => secs * 1000,
                None => {
                    let f = n.as_f64()?;
                    let ms = if f.abs() >= 1e11 { f } else { f * 1000.0 };
                    Some(ms).filter(|ms| ms.abs() < 1e17)?.round() as i64
                }
            };
            Utc.timestamp_millis_opt(ms).single().map(|t| t.fixed_offset())
        }
        Json::String(s) => {
            let s = s.trim();
            DateTime::parse_from_rfc3339(s)
                .ok()
                .or_else(|| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z").ok())
                .or_else(|| DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%z").ok())
                .or_else(|| {
                    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
                        .iter()
                        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
                        .map(|n| n.and_utc().fixed_offset())
                })
                .or_else(|| {
                    // Unix seconds as text, whole or not.
                    let n = s
                        .parse::<i64>()
                        .map(serde_json::Number::from)
                        .ok()
                        .or_else(|| s.parse::<f64>().ok().and_then(serde_json::Number::from_f64))?;
                    timestamp(Some(&Json::Number(n)))
                })
        }
        _ => None,
    }
}

/// The host named at the end of a message such as "..., on web1.example.com".
fn host_from_message(message: &str) -> Option<String> {
    let (_, tail) = message.rsplit_once(" on ")?;
    let host = tail.trim().trim_end_matches('.');
    (!host.is_empty() && !host.contains(char::is_whitespace)).then(|| host.to_string())
}

/// The node id in an alert URL of the form `.../alerts/<context>.<alert>:::<node id>?...`.
fn node_id_from_url(url: &str) -> Option<String> {
    leading_id(url.split_once(":::")?.1)
}

/// The id `tail` begins with (letters, digits and `-`), without what may follow it in a URL
/// (`/`, `?from=...`, `#...`).
fn leading_id(tail: &str) -> Option<String> {
    let id: String = tail.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
    (!id.is_empty()).then_some(id)
}

/// The part of a key that names a node, the same in every shape that names it: its id where
/// one is known (ids are unique across Netdata Cloud), else the space's name and the
/// hostname. Both are lowercased, since Netdata's own spelling of them is not stable, and
/// the space's id is never used, because the flat shape does not carry it.
fn node_part(node_id: Option<&str>, space: Option<&str>, host: Option<&str>) -> String {
    let part = |s: Option<&str>| key_part(&s.unwrap_or_default().to_ascii_lowercase(), "\\|/").into_owned();
    match node_id {
        Some(_) => part(node_id),
        None => format!("{}/{}", part(space), part(host)),
    }
}

/// Joins the parts of an alert key; missing parts are left empty so keys stay comparable.
fn alert_key(node: &str, chart: Option<&str>, name: &str) -> String {
    format!("alert|{node}|{}|{}", key_part(chart.unwrap_or_default(), "\\|"), key_part(name, "\\|"))
}

/// `part` with each of `special` (the key's separators, and `\` itself) escaped by a `\`,
/// so that no two different alerts or nodes share a key: `a|b` + `c` is not `a` + `b|c`.
/// Parts without them, nearly all, are left as they are.
fn key_part<'a>(part: &'a str, special: &str) -> Cow<'a, str> {
    if !part.contains(|c| special.contains(c)) {
        return Cow::Borrowed(part);
    }
    let mut escaped = String::with_capacity(part.len() + 4);
    for c in part.chars() {
        if special.contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    Cow::Owned(escaped)
}

fn nested_alert(obj: &Object<'_>, alert: &Object<'_>) -> AlertNotification {
    let message = text(obj.get("message")).unwrap_or_default();
    let node = obj.get("node").and_then(Json::as_object);
    let state = alert.get("state").and_then(Json::as_object);
    let prev = alert.get("prev_state").and_then(Json::as_object);
    // `"state": {"status": "critical", ...}` as Netdata sends it, or the word alone.
    let raw_status = match alert.get("state") {
        Some(Json::Object(s)) => text(s.get("status")),
        other => text(other),
    }
    .unwrap_or_default();
    let status = Status::of(&raw_status, &message);
    let name = text(alert.get("name")).or_else(|| text(obj.get("alarm"))).unwrap_or_else(|| "unnamed alert".into());
    let chart = match alert.get("chart") {
        Some(Json::Object(c)) => text(c.get("id")).or_else(|| text(c.get("name"))),
        other => text(other),
    };
    let context = text(alert.get("context"));
    let host = node.and_then(|n| text(n.get("hostname"))).or_else(|| host_from_message(&message));
    let node_id = node.and_then(|n| text(n.get("id")));
    let space = space_name(obj);
    let url = text(alert.get("url")).or_else(|| text(first(obj, &["alert_url", "alarm_url"])));
    let rendered = alert.get("rendered").and_then(Json::as_object);
    let duration = alert.get("duration");
    let (duration_str, duration_secs) = match duration {
        Some(Json::Object(d)) => (text(d.get("value_str")), integer(d.get("value"))),
        other => (text(other), integer(other)),
    };
    let config = alert.get("config").and_then(Json::as_object);
    let log = alert.get("log").and_then(Json::as_object);
    let totals = log.and_then(|l| l.get("total")).and_then(Json::as_object);
    let other_alerts = log
        .and_then(|l| l.get("entries"))
        .and_then(Json::as_array)
        .map(|entries| {
            entries
                .iter()
                .filter_map(Json::as_object)
                .filter_map(|e| {
                    Some(OtherAlert {
                        name: text(e.get("name"))?,
                        status: text(e.get("status")).unwrap_or_default(),
                        triggered_at: text(e.get("triggered_at")),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let node_key = node_part(node_id.as_deref(), space.as_deref(), host.as_deref());
    AlertNotification {
        key: alert_key(&node_key, chart.as_deref().or(context.as_deref()), &name),
        status,
        raw_status,
        prev_status: prev.and_then(|p| text(p.get("status"))).and_then(|s| Status::from_word(&s)),
        name,
        summary: rendered.and_then(|r| text(r.get("summary"))).or_else(|| text(obj.get("info"))),
        info: rendered.and_then(|r| text(r.get("info"))),
        value: state.and_then(|s| text(s.get("value_str")).or_else(|| text(s.get("value")))),
        chart,
        context,
        host,
        node_id: node_id.or_else(|| url.as_deref().and_then(node_id_from_url)),
        space,
        rooms: rooms(node.and_then(|n| n.get("rooms")).or_else(|| first(obj, &["rooms"]))),
        url,
        transition_id: text(alert.get("transition_id")),
        triggered_at: timestamp(alert.get("triggered_at")).or_else(|| timestamp(obj.get("date"))),
        duration: duration_str,
        duration_secs,
        classification: config
            .and_then(|c| text(c.get("classification")))
            .or_else(|| text(first(obj, &["class", "classification"]))),
        other_critical: totals.and_then(|t| integer(t.get("critical"))),
        other_warning: totals.and_then(|t| integer(t.get("warning"))),
        other_alerts,
        message,
    }
}

const FLAT_ALERT_NAMES: &[&str] = &["alert", "alarm", "alert_name", "alarm_name"];

fn is_flat_alert(obj: &Object<'_>) -> bool {
    let named = FLAT_ALERT_NAMES.iter().any(|k| get_ci(obj, k).is_some_and(|v| text(Some(v)).is_some()));
    let severity =
        text(get_ci(obj, "severity")).and_then(|s| Status::from_word(&s)).is_some_and(|s| s != Status::Other);
    named
        || (severity
            && (first(obj, &["chart", "context", "alert_url", "alarm_url"]).is_some()
                || text(obj.get("message")).and_then(|m| Status::from_message(&m)).is_some()))
}

fn flat_alert(obj: &Object<'_>) -> AlertNotification {
    let message = text(obj.get("message")).unwrap_or_default();
    let raw_status = text(first(obj, &["severity", "status"])).unwrap_or_default();
    let status = Status::of(&raw_status, &message);
    let name = text(first(obj, FLAT_ALERT_NAMES)).unwrap_or_else(|| "unnamed alert".into());
    let chart = text(first(obj, &["chart"]));
    let context = text(first(obj, &["context"]));
    let url = text(first(obj, &["alert_url", "alarm_url", "url"]));
    let host = text(first(obj, &["host", "hostname", "node"])).or_else(|| host_from_message(&message));
    let node_id = text(first(obj, &["node_id"])).or_else(|| url.as_deref().and_then(node_id_from_url));
    let space = space_name(obj);
    let duration = first(obj, &["duration"]);
    let node_key = node_part(node_id.as_deref(), space.as_deref(), host.as_deref());
    AlertNotification {
        key: alert_key(&node_key, chart.as_deref().or(context.as_deref()), &name),
        status,
        raw_status,
        prev_status: None,
        name,
        summary: text(first(obj, &["summary", "info"])),
        info: text(first(obj, &["info"])),
        value: text(first(obj, &["value", "value_string", "value_str"])),
        chart,
        context,
        host,
        node_id,
        space,
        rooms: rooms(first(obj, &["rooms"])),
        url,
        transition_id: text(first(obj, &["transition_id"])),
        triggered_at: timestamp(first(obj, &["date", "triggered_at", "when"])),
        duration: text(duration),
        duration_secs: integer(duration),
        classification: text(first(obj, &["class", "classification"])),
        other_critical: integer(first(obj, &["additional_active_critical_alerts", "critical_count"])),
        other_warning: integer(first(obj, &["additional_active_warning_alerts", "warning_count"])),
        other_alerts: Vec::new(),
        message,
    }
}

fn is_reachability(obj: &Object<'_>) -> bool {
    if boolean(get_ci(obj, "reachable")).is_some() {
        return true;
    }
    match get_ci(obj, "status") {
        Some(Json::Object(s)) => boolean(get_ci(s, "reachable")).is_some(),
        Some(Json::String(s)) => {
            matches!(s.trim().to_ascii_lowercase().as_str(), "reachable" | "unreachable")
        }
        _ => false,
    }
}

fn reachability(obj: &Object<'_>) -> ReachabilityNotification {
    let message = text(obj.get("message")).unwrap_or_default();
    let status = get_ci(obj, "status");
    let reachable = boolean(get_ci(obj, "reachable"))
        .or_else(|| match status {
            Some(Json::Object(s)) => boolean(get_ci(s, "reachable")),
            Some(Json::String(s)) => Some(s.trim().eq_ignore_ascii_case("reachable")),
            _ => None,
        })
        .unwrap_or(false);
    let listed: Vec<&Object<'_>> = obj
        .get("nodes")
        .and_then(Json::as_array)
        .map(|n| n.iter().filter_map(Json::as_object).collect())
        .unwrap_or_default();
    let node = listed.first().copied().or_else(|| obj.get("node").and_then(Json::as_object));
    let url = text(obj.get("url"));
    let node_id = node
        .and_then(|n| text(n.get("id")))
        .or_else(|| url.as_deref().and_then(|u| u.rsplit_once("/nodes/")).and_then(|(_, tail)| leading_id(tail)));
    let host = node
        .and_then(|n| text(n.get("hostname")))
        .or_else(|| text(first(obj, &["host", "hostname"])))
        .or_else(|| host_from_reachability_message(&message));
    let space = space_name(obj);
    let key_of = |id: &Option<String>, host: &Option<String>| {
        format!("node|{}", node_part(id.as_deref(), space.as_deref(), host.as_deref()))
    };
    let key = key_of(&node_id, &host);
    let mut other_nodes: Vec<ReachabilityNode> = Vec::new();
    for n in listed.iter().skip(1) {
        let (id, host) = (text(n.get("id")), text(n.get("hostname")));
        if id.is_none() && host.is_none() {
            continue;
        }
        let node_key = key_of(&id, &host);
        if node_key == key || other_nodes.iter().any(|o| o.key == node_key) {
            continue;
        }
        // The URL names the first node's page: the same page of this node where its id is
        // known, else the list of nodes the page sits in, never the first node's page.
        let url = match (&url, &node_id, &id) {
            (Some(u), Some(first), Some(this)) if u.contains(&format!("/nodes/{first}")) => {
                Some(u.replacen(&format!("/nodes/{first}"), &format!("/nodes/{this}"), 1))
            }
            (Some(u), _, _) => u.split_once("/nodes/").map(|(list, _)| list.to_string()),
            (None, _, _) => None,
        };
        other_nodes.push(ReachabilityNode { key: node_key, host, node_id: id, url });
    }
    ReachabilityNotification {
        key,
        reachable,
        message,
        host,
        node_id,
        space,
        url,
        severity: text(get_ci(obj, "severity")),
        other_nodes,
    }
}

/// "Space/host is unreachable" -> host.
fn host_from_reachability_message(message: &str) -> Option<String> {
    let subject = message.split(" is ").next()?.trim();
    let host = subject.rsplit('/').next()?.trim();
    (!host.is_empty() && !host.contains(char::is_whitespace)).then(|| host.to_string())
}

fn is_test(obj: &Object<'_>) -> bool {
    let says_test = |k: &str| text(obj.get(k)).is_some_and(|s| s.to_ascii_lowercase().contains("test notification"));
    obj.get("token").is_some_and(|t| text(Some(t)).is_some()) || says_test("title") || says_test("message")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn parse_value(v: Value) -> Notification {
        parse(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn status_words_in_any_case() {
        for (w, s) in [
            ("Critical", Status::Critical),
            ("CRITICAL", Status::Critical),
            ("warning", Status::Warning),
            ("WaRnInG", Status::Warning),
            ("clear", Status::Clear),
            ("Clear", Status::Clear),
            ("undefined", Status::Other),
        ] {
            assert_eq!(Status::from_word(w), Some(s), "{w}");
        }
        assert_eq!(Status::from_word("  "), None);
    }

    #[test]
    fn keys_serde_json_reserves_are_ordinary_keys() {
        // serde_json's own Value treats this key as a marker and refuses the object; a body is
        // read as plain JSON, so it is kept like any other unknown object.
        let n = parse(br#"{"$serde_json::private::RawValue": 1}"#).expect("valid JSON object");
        assert_eq!(n.kind(), "unknown");
        assert!(n.message().contains("$serde_json::private::RawValue"), "{}", n.message());
    }

    #[test]
    fn a_leading_byte_order_mark_is_ignored() {
        let body = r#"{"message": "Raised to Critical, x = 1, on web1", "alert": "x", "status": "critical"}"#;
        let mut with_bom = b"\xEF\xBB\xBF".to_vec();
        with_bom.extend_from_slice(body.as_bytes());
        assert_eq!(parse(&with_bom), parse(body.as_bytes()));
        assert_eq!(parse(&with_bom).unwrap().kind(), "alert");
    }

    #[test]
    fn refuses_non_objects_with_a_reason() {
        assert_eq!(parse(b""), Err(PayloadError::Empty));
        assert_eq!(parse(b"  \n"), Err(PayloadError::Empty));
        assert_eq!(parse(b"[1,2]"), Err(PayloadError::NotObject("an array")));
        assert_eq!(parse(b"\"x\""), Err(PayloadError::NotObject("a string")));
        assert_eq!(parse(b"null"), Err(PayloadError::NotObject("null")));
        assert!(matches!(parse(b"{nope"), Err(PayloadError::NotJson(_))));
        assert_eq!(parse(b"\xEF\xBB\xBF"), Err(PayloadError::Empty));
        assert!(matches!(parse(b"\xEF\xBB\xBF\xEF\xBB\xBF{}"), Err(PayloadError::NotJson(_))));
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(parse(deep.as_bytes()), Err(PayloadError::TooDeep));
        let very_deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        assert_eq!(parse(very_deep.as_bytes()), Err(PayloadError::TooDeep));
    }

    #[test]
    fn flat_documented_alert() {
        let n = parse_value(json!({
            "message": "Raised to Warning, disk space = 91%, on web1",
            "alarm": "disk_space_usage",
            "info": "Disk space utilization",
            "chart": "disk_space._",
            "context": "disk.space",
            "space": "My Space",
            "rooms": {"All nodes": "https://app.netdata.cloud/spaces/x/rooms/all-nodes"},
            "family": "/",
            "class": "Utilization",
            "severity": "warning",
            "date": "2023-03-01T10:20:30Z",
            "duration": "10 minutes",
            "additional_active_critical_alerts": 1,
            "additional_active_warning_alerts": "2",
            "alarm_url": "https://app.netdata.cloud/alerts/disk.space.disk_space_usage:::abc-123?x=1"
        }));
        let Notification::Alert(a) = n else { panic!("{n:?}") };
        assert_eq!(a.status, Status::Warning);
        assert_eq!(a.name, "disk_space_usage");
        assert_eq!(a.host.as_deref(), Some("web1"));
        assert_eq!(a.node_id.as_deref(), Some("abc-123"));
        assert_eq!(a.other_warning, Some(2));
        assert_eq!(a.other_critical, Some(1));
        assert_eq!(a.rooms[0].name, "All nodes");
        assert_eq!(a.classification.as_deref(), Some("Utilization"));
        assert_eq!(a.triggered_at.unwrap().timestamp(), 1_677_666_030);
        assert_eq!(a.key, "alert|abc-123|disk_space._|disk_space_usage");
    }

    #[test]
    fn a_status_word_for_a_state_fractional_unix_times_and_rooms_as_single_pairs() {
        let n = parse_value(json!({
            "node": {"id": "n1", "hostname": "h1"},
            "alert": {"name": "a", "state": "cRiTiCaL", "triggered_at": 1_775_872_308.5},
            "rooms": [{"Room A": "https://u/a"}, {"Room B": "https://u/b", "Room C": 7}, {"name": "Named"}]
        }));
        let Notification::Alert(a) = n else { panic!("{n:?}") };
        assert_eq!((a.status, a.raw_status.as_str()), (Status::Critical, "cRiTiCaL"));
        assert_eq!(a.triggered_at.unwrap().timestamp_millis(), 1_775_872_308_500);
        let n = parse_value(json!({"alarm": "x", "severity": "warning", "date": "1775872308.25",
                                   "rooms": [{"url": "https://u/nameless"}]}));
        let Notification::Alert(b) = n else { panic!("{n:?}") };
        assert_eq!(b.triggered_at.unwrap().timestamp_millis(), 1_775_872_308_250);
        assert_eq!(b.rooms[0].name, "https://u/nameless");
        // Unix milliseconds, as a number or as text, whole or not.
        for at in [json!(1_775_872_308_250_i64), json!("1775872308250"), json!(1_775_872_308_250.0)] {
            let n = parse_value(json!({"alarm": "x", "status": "WARNING", "when": at.clone()}));
            let Notification::Alert(m) = n else { panic!("{n:?}") };
            assert_eq!(m.triggered_at.map(|t| t.timestamp_millis()), Some(1_775_872_308_250), "{at}");
        }
        let rooms: Vec<(&str, Option<&str>)> = a.rooms.iter().map(|r| (r.name.as_str(), r.url.as_deref())).collect();
        assert_eq!(
            rooms,
            [("Room A", Some("https://u/a")), ("Room B", Some("https://u/b")), ("Room C", Some("7")), ("Named", None)]
        );
        // Times beyond what a date can hold are no time at all, not a panic.
        for t in [json!(1e300), json!(-1e300), json!(9_223_372_036_854_775_807i64)] {
            let n = parse_value(json!({"alarm": "x", "severity": "warning", "date": t}));
            let Notification::Alert(a) = n else { panic!("{n:?}") };
            assert_eq!(a.triggered_at, None);
        }
    }

    #[test]
    fn separators_inside_names_do_not_make_two_alerts_or_nodes_one() {
        let key = |v: Value| parse_value(v).key().map(str::to_owned).expect("a key");
        let nested = |chart: &str, name: &str| {
            json!({"node": {"id": "N1", "hostname": "h"}, "alert": {"name": name, "chart": {"id": chart},
                   "state": {"status": "critical"}}})
        };
        let (a, b) = (key(nested("a|b", "c")), key(nested("a", "b|c")));
        assert_ne!(a, b);
        assert_eq!(a, r"alert|n1|a\|b|c");
        assert_eq!(key(nested("a\\", "|c")), r"alert|n1|a\\|\|c");
        assert_ne!(key(nested("a\\", "|c")), key(nested("a", "\\|c")));
        // Without a node id, a node is its space and host: a slash inside either is escaped.
        let flat = |space: &str, host: &str| json!({"alarm": "x", "chart": "c", "space": space, "severity": "warning", "message": format!("x on {host}")});
        assert_ne!(key(flat("s/a", "b")), key(flat("s", "a/b")));
        assert_eq!(key(flat("S", "web1")), "alert|s/web1|c|x", "plain names are as they were");
        let node = |space: &str, host: &str| {
            json!({"message": format!("{space}/{host} is unreachable"),
            "space": {"name": space}, "nodes": [{"hostname": host}], "status": "unreachable"})
        };
        assert_ne!(key(node("s/a", "b")), key(node("s", "a/b")));
    }

    #[test]
    fn flat_renamed_keys() {
        let n = parse_value(json!({
            "message": "Recovered, load = 1, on db2",
            "alert": "load_15",
            "Rooms": [{"name": "Prod", "url": "https://r"}],
            "severity": "CLEAR",
            "alert_url": "https://u",
            "critical_count": 0,
            "warning_count": 3
        }));
        let Notification::Alert(a) = n else { panic!("{n:?}") };
        assert_eq!(a.status, Status::Clear);
        assert_eq!(a.raw_status, "CLEAR");
        assert_eq!(a.name, "load_15");
        assert_eq!(a.url.as_deref(), Some("https://u"));
        assert_eq!(a.rooms, vec![Room { name: "Prod".into(), url: Some("https://r".into()) }]);
        assert_eq!(a.other_warning, Some(3));
    }

    #[test]
    fn nested_alert_keeps_the_nodes_offset() {
        let n = parse_value(json!({
            "message": "Raised to Critical, x, on h",
            "node": {"id": "n1", "hostname": "H1"},
            "alert": {"name": "a", "state": {"status": "critical", "value": 5}, "triggered_at": "2026-04-10T22:11:48-05:00"}
        }));
        let Notification::Alert(a) = n else { panic!() };
        assert_eq!(a.status, Status::Critical);
        assert_eq!(a.value.as_deref(), Some("5"));
        assert_eq!(a.triggered_at.unwrap().offset().local_minus_utc(), -5 * 3600);
    }

    #[test]
    fn status_from_message_when_the_word_is_missing() {
        let n = parse_value(json!({"message": "Recovered, x, on h", "alert": {"name": "a"}}));
        let Notification::Alert(a) = n else { panic!() };
        assert_eq!(a.status, Status::Clear);
    }

    #[test]
    fn an_unknown_status_word_gives_way_to_the_message_in_both_shapes() {
        let nested = parse_value(json!({"message": "Recovered, x, on h",
            "alert": {"name": "a", "state": {"status": "Undefined"}}}));
        let flat =
            parse_value(json!({"message": "Recovered, x, on h", "alarm": "a", "chart": "c", "severity": "Undefined"}));
        for n in [nested, flat] {
            let Notification::Alert(a) = n else { panic!() };
            assert_eq!((a.status, a.raw_status.as_str()), (Status::Clear, "Undefined"));
        }
        let n =
            parse_value(json!({"message": "something else", "alert": {"name": "a", "state": {"status": "Undefined"}}}));
        let Notification::Alert(a) = n else { panic!() };
        assert_eq!(a.status, Status::Other, "no word or message we know: no state change");
        // A removed alert is not raised any more, whatever its message says.
        let n =
            parse_value(json!({"message": "Removed, x, on h", "alert": {"name": "a", "state": {"status": "REMOVED"}}}));
        let Notification::Alert(a) = n else { panic!() };
        assert_eq!((a.status, a.raw_status.as_str()), (Status::Clear, "REMOVED"));
    }

    #[test]
    fn documented_reachability() {
        let n = parse_value(json!({
            "message": "node web1 is unreachable", "url": "https://u/nodes/n9", "host": "web1",
            "severity": "critical", "status": {"reachable": false, "text": "unreachable"}
        }));
        let Notification::Reachability(r) = n else { panic!("{n:?}") };
        assert!(!r.reachable);
        assert_eq!(r.host.as_deref(), Some("web1"));
        assert_eq!(r.node_id.as_deref(), Some("n9"));
        // The node's page however the URL ends: the same node, so the same key.
        for url in ["https://u/nodes/n9?from=alert", "https://u/nodes/n9/", "https://u/nodes/n9#top"] {
            let n = parse_value(json!({"message": "node web1 is reachable", "url": url, "status": "reachable"}));
            let Notification::Reachability(again) = n else { panic!("{n:?}") };
            assert_eq!((again.key.as_str(), again.node_id.as_deref()), (r.key.as_str(), Some("n9")), "{url}");
        }
    }

    #[test]
    fn a_reachability_naming_several_nodes_keeps_each_one() {
        let n = parse_value(json!({
            "message": "3 nodes are unreachable", "space": {"id": "sp", "name": "Space"},
            "nodes": [
                {"id": "A1", "hostname": "parent"},
                {"id": "b2", "hostname": "child-1"},
                {"hostname": "child-2"},
                {"id": "a1", "hostname": "parent again"},
                {"id": "b2"},
                {"rooms": []},
                "not a node"
            ],
            "status": "unreachable", "reachable": false,
            "url": "https://app.netdata.cloud/spaces/s/rooms/all-nodes/nodes/A1?from=alert"
        }));
        let Notification::Reachability(r) = &n else { panic!("{n:?}") };
        assert_eq!((r.key.as_str(), r.host.as_deref()), ("node|a1", Some("parent")));
        let others: Vec<_> =
            r.other_nodes.iter().map(|o| (o.key.as_str(), o.host.as_deref(), o.url.as_deref())).collect();
        assert_eq!(
            others,
            [
                (
                    "node|b2",
                    Some("child-1"),
                    Some("https://app.netdata.cloud/spaces/s/rooms/all-nodes/nodes/b2?from=alert")
                ),
                ("node|space/child-2", Some("child-2"), Some("https://app.netdata.cloud/spaces/s/rooms/all-nodes")),
            ],
            "the same node twice counts once; entries naming no node are skipped"
        );
        let each: Vec<_> =
            n.each_state().iter().map(|s| (s.key().unwrap().to_string(), s.message().to_string())).collect();
        let pair = |k: &str, m: &str| (k.to_string(), m.to_string());
        assert_eq!(
            each,
            [
                pair("node|a1", "3 nodes are unreachable"),
                pair("node|b2", "Space/child-1 is unreachable"),
                pair("node|space/child-2", "Space/child-2 is unreachable")
            ]
        );
        assert!(each_state_is_itself(&parse_value(
            json!({"message": "m", "status": "reachable", "nodes": [{"id": "x"}]})
        )));
    }

    fn each_state_is_itself(n: &Notification) -> bool {
        matches!(n.each_state().as_slice(), [std::borrow::Cow::Borrowed(s)] if std::ptr::eq(*s, n))
    }

    #[test]
    fn test_notification_and_unknown() {
        let n = parse_value(json!({"message": "hi", "title": "Test Notification", "token": "t-1"}));
        assert_eq!(n, Notification::Test(TestNotification { message: "hi".into(), token: Some("t-1".into()) }));
        let n = parse_value(json!({"message": "something new"}));
        assert_eq!(n.kind(), "unknown");
        assert_eq!(n.message(), "something new");
        let n = parse_value(json!({"b": 1, "a": 2}));
        assert_eq!(n.message(), "a JSON object with keys: a, b");
    }
}
