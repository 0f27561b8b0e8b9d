//! Properties of the payload parser, over inputs nobody wrote by hand.

use alertray::payload::{parse, Notification, PayloadError};
use proptest::prelude::*;
use serde_json::{Map, Value};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        "\\PC{0,20}".prop_map(Value::String),
        // Words the parser looks for, so that shapes are hit, not only missed.
        prop_oneof![
            Just("Critical"),
            Just("warning"),
            Just("CLEAR"),
            Just("reachable"),
            Just("unreachable"),
            Just("Raised to Critical, x, on h"),
            Just("Recovered, y"),
            Just("Test Notification"),
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6).prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop_oneof![
            Just("message"),
            Just("alert"),
            Just("alarm"),
            Just("severity"),
            Just("status"),
            Just("reachable"),
            Just("node"),
            Just("nodes"),
            Just("space"),
            Just("rooms"),
            Just("Rooms"),
            Just("token"),
            Just("title"),
            Just("state"),
            Just("chart"),
            Just("context"),
            Just("transition_id"),
            Just("triggered_at"),
            Just("date"),
            Just("duration"),
            Just("log"),
            Just("url"),
            Just("alarm_url"),
            Just("hostname"),
            Just("name"),
            Just("value_str"),
        ]
        .prop_map(str::to_string),
        "[a-zA-Z_]{1,10}",
    ]
}

fn object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec((key(), json_value()), 0..10).prop_map(|kv| kv.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// Any bytes: an answer, never a panic.
    #[test]
    fn never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&bytes);
    }

    /// Any JSON object is a notification (never an error), and its message is never empty.
    #[test]
    fn every_object_is_a_notification(obj in object()) {
        let body = serde_json::to_vec(&Value::Object(obj.clone())).unwrap();
        let n = parse(&body).unwrap();
        if let Notification::Unknown(u) = &n {
            prop_assert!(!u.message.is_empty());
        }
        // A `message` string that is not blank is what the notification shows.
        if let Some(Value::String(m)) = obj.get("message") {
            if !m.trim().is_empty() {
                prop_assert_eq!(n.message(), m.trim());
            }
        }
    }

    /// An object of keys the parser does not know stays unknown, summarised by its keys.
    #[test]
    fn unknown_keys_stay_unknown(obj in prop::collection::btree_map("zz[a-z]{1,8}", json_value(), 0..8)) {
        let body = serde_json::to_vec(&obj).unwrap();
        match parse(&body).unwrap() {
            Notification::Unknown(u) => {
                if obj.is_empty() {
                    prop_assert_eq!(u.message, "an empty JSON object");
                } else {
                    let first = obj.keys().next().unwrap();
                    prop_assert!(u.message.contains(first.as_str()), "{} lacks {}", u.message, first);
                }
            }
            other => prop_assert!(false, "{:?}", other),
        }
    }

    /// JSON that is not an object is refused with a reason, whatever it is.
    #[test]
    fn non_objects_are_refused(v in json_value().prop_filter("not an object", |v| !v.is_object())) {
        let body = serde_json::to_vec(&v).unwrap();
        prop_assert!(matches!(parse(&body), Err(PayloadError::NotObject(_)) | Err(PayloadError::TooDeep)));
    }

    /// Parsing is deterministic: the same body gives the same notification (and the same key).
    #[test]
    fn deterministic(obj in object()) {
        let body = serde_json::to_vec(&Value::Object(obj)).unwrap();
        prop_assert_eq!(parse(&body).unwrap(), parse(&body).unwrap());
    }
}
