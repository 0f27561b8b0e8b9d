//! Any config text: a valid config or an error naming what is wrong, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match alertray::config::Config::from_toml(text) {
            Ok(cfg) => {
                let _ = cfg.server.webhook_url();
            }
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
});
