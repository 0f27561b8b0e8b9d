//! Any query string: a token, no token, or a reason, never a panic; a token found is never
//! empty nor longer than the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(query) = std::str::from_utf8(data) {
        if let Ok(Some(token)) = alertray::challenge::crc_token_from_query(Some(query)) {
            assert!(!token.is_empty() && token.len() <= alertray::challenge::MAX_TOKEN_LEN);
            let answer = alertray::challenge::response_token(b"secret", &token);
            assert!(answer.starts_with("sha256=") && answer.len() == 51);
        }
    }
});
