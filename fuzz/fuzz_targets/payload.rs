//! Any body: the parser answers (a notification or a reason), never panics, and an object
//! is always a notification.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match alertray::payload::parse(data) {
        Ok(n) => {
            let _ = n.kind();
            let _ = n.message();
        }
        Err(e) => {
            let _ = e.to_string();
            if let Ok(serde_json::Value::Object(_)) = serde_json::from_slice::<serde_json::Value>(data) {
                // Only depth may refuse an object.
                assert!(matches!(e, alertray::payload::PayloadError::TooDeep), "{e}");
            }
        }
    }
});
