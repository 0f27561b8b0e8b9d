//! The `crc_token` challenge Netdata sends when an integration is created or updated.
//!
//! The answer is `sha256=` + base64(HMAC-SHA256(key = challenge secret, msg = crc_token)).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The longest `crc_token` we answer; Netdata's are short random strings.
pub const MAX_TOKEN_LEN: usize = 1024;

/// Computes the `response_token` value for a `crc_token`.
pub fn response_token(secret: &[u8], crc_token: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(crc_token.as_bytes());
    let digest = mac.finalize().into_bytes();
    format!("sha256={}", base64::engine::general_purpose::STANDARD.encode(digest))
}

/// Finds the `crc_token` in a raw query string, percent-decoded.
///
/// `Ok(None)` when the query has no `crc_token`; `Err` with a reason when it is there but
/// unusable (empty, too long, or not valid UTF-8 once decoded).
pub fn crc_token_from_query(query: Option<&str>) -> Result<Option<String>, &'static str> {
    let Some(query) = query else { return Ok(None) };
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name != "crc_token" {
            continue;
        }
        if value.len() > MAX_TOKEN_LEN * 3 {
            return Err("crc_token is too long");
        }
        let decoded = percent_decode(value).ok_or("crc_token is not valid percent-encoded UTF-8")?;
        if decoded.is_empty() {
            return Err("crc_token is empty");
        }
        if decoded.len() > MAX_TOKEN_LEN {
            return Err("crc_token is too long");
        }
        return Ok(Some(decoded));
    }
    Ok(None)
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space).
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                // Two hex digits exactly: `from_str_radix` alone would take "+A" for 10.
                let hex = bytes.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit))?;
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_test_vectors() {
        assert_eq!(response_token(b"secret", "abc123"), "sha256=WuWsgCoaXJT7aD4b+hIfn3AKJplSE/8vwcUD60PsccY=");
        assert_eq!(
            response_token(b"YOUR_CHALLENGE_SECRET", "test"),
            "sha256=bumfqA43gEy/KBnlkqNYYD5Br+1mrNY4P6Yah0zUdzI="
        );
    }

    #[test]
    fn query_parsing() {
        assert_eq!(crc_token_from_query(None), Ok(None));
        assert_eq!(crc_token_from_query(Some("a=b")), Ok(None));
        assert_eq!(crc_token_from_query(Some("a=b&crc_token=x%2By+z")), Ok(Some("x+y z".into())));
        assert_eq!(crc_token_from_query(Some("crc_token=")), Err("crc_token is empty"));
        assert!(crc_token_from_query(Some("crc_token=%zz")).is_err());
        assert!(crc_token_from_query(Some("crc_token=%ff")).is_err());
        assert!(crc_token_from_query(Some("crc_token=%4")).is_err());
        assert!(crc_token_from_query(Some("crc_token=%+A")).is_err());
        assert!(crc_token_from_query(Some("crc_token=%-1")).is_err());
        assert_eq!(crc_token_from_query(Some("crc_token=%4a%4A")), Ok(Some("JJ".into())));
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(crc_token_from_query(Some(&format!("crc_token={long}"))), Err("crc_token is too long"));
    }
}
