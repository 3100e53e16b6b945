//! Keeping secrets (DSN passwords, bot tokens, auth headers) off the screen, the timeline and
//! reports. Two layers: structural redaction of URLs and tokens wherever they are shown, and a
//! last-line `Redactor` that masks every secret value the config knows about in any text it writes.

use std::borrow::Cow;

pub const MASK: &str = "***";

/// `postgres://app:s3cret@host/db` → `postgres://app:***@host/db`; also masks `token=`/`password=`
/// query parameters and Telegram-style `/bot<token>/` path segments.
pub fn url(raw: &str) -> String {
    let mut out = raw.to_string();
    if let Some(scheme_end) = out.find("://") {
        let authority_start = scheme_end + 3;
        let authority_end = out[authority_start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| authority_start + i);
        if let Some(at) = out[authority_start..authority_end].rfind('@') {
            let userinfo = &out[authority_start..authority_start + at];
            let masked = match userinfo.find(':') {
                Some(colon) => format!("{}:{MASK}", &userinfo[..colon]),
                // A bare user part in nats://TOKEN@host is a token.
                None if out.starts_with("nats") => MASK.to_string(),
                None => userinfo.to_string(),
            };
            out.replace_range(authority_start..authority_start + at, &masked);
        }
    }
    mask_bot_token(&mask_query_secrets(&out)).into_owned()
}

fn mask_query_secrets(raw: &str) -> String {
    let Some(q) = raw.find('?') else {
        return raw.to_string();
    };
    let (head, query) = raw.split_at(q + 1);
    let parts: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) if is_secret_name(k) => format!("{k}={MASK}"),
            _ => pair.to_string(),
        })
        .collect();
    format!("{head}{}", parts.join("&"))
}

/// Telegram puts the bot token in the path: `/bot123456:ABC-DEF/sendMessage`.
pub fn mask_bot_token(path: &str) -> Cow<'_, str> {
    let Some(start) = path.find("/bot") else {
        return Cow::Borrowed(path);
    };
    let token_start = start + 4;
    let token_end = path[token_start..]
        .find('/')
        .map_or(path.len(), |i| token_start + i);
    if token_end == token_start || &path[token_start..token_end] == MASK {
        return Cow::Borrowed(path);
    }
    let mut out = path.to_string();
    out.replace_range(token_start..token_end, MASK);
    Cow::Owned(out)
}

/// Masks every URL (`scheme://…`) found in arbitrary text with [`url`], and any bare Telegram
/// token path (`/bot123456:ABC…`) outside one. For log lines and error strings, which quote
/// URLs in the middle of prose.
pub fn free_text(text: &str) -> Cow<'_, str> {
    if !text.contains("://") && !text.contains("/bot") {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(sep) = rest.find("://") {
        // Scheme characters are ASCII, so walking back byte by byte stays on char boundaries.
        let bytes = rest.as_bytes();
        let mut start = sep;
        while start > 0 && is_scheme_byte(bytes[start - 1]) {
            start -= 1;
        }
        let end = rest[sep..]
            .find(|c: char| c.is_whitespace() || URL_END.contains(&c))
            .map_or(rest.len(), |i| sep + i);
        out.push_str(&rest[..start]);
        if start == sep {
            // No scheme in front: not a URL.
            out.push_str(&rest[sep..end]);
        } else {
            out.push_str(&url(&rest[start..end]));
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    let masked = mask_bare_bot_tokens(&out);
    if masked == text {
        Cow::Borrowed(text)
    } else {
        Cow::Owned(masked)
    }
}

/// Characters that end a URL quoted in prose or in a `Debug`-formatted field.
const URL_END: [char; 6] = ['"', '\'', '<', '>', '`', '\\'];

fn is_scheme_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')
}

/// `/bot<digits>:<token>` anywhere in the text. Stricter than [`mask_bot_token`] (digits, a
/// colon, then token characters) so prose such as "/bottom" is left alone.
fn mask_bare_bot_tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("/bot") {
        let token_start = at + 4;
        let tail = &rest[token_start..];
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        let secret = tail[digits..]
            .strip_prefix(':')
            .map(|after| {
                after
                    .bytes()
                    .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
                    .count()
            })
            .unwrap_or(0);
        out.push_str(&rest[..token_start]);
        if digits > 0 && secret > 0 {
            out.push_str(MASK);
            rest = &tail[digits + 1 + secret..];
        } else {
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

/// Header or parameter names whose values are secrets.
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "password",
        "passwd",
        "secret",
        "token",
        "authorization",
        "api-key",
        "api_key",
        "apikey",
        "cookie",
    ]
    .iter()
    .any(|s| n.contains(s))
}

/// Masks every known secret value in arbitrary text. Built from the config's secrets.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| s.len() >= 3).collect();
        // Longest first so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Redactor { secrets }
    }

    pub fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if !self.secrets.iter().any(|s| text.contains(s.as_str())) {
            return Cow::Borrowed(text);
        }
        let mut out = text.to_string();
        for secret in &self.secrets {
            out = out.replace(secret.as_str(), MASK);
        }
        Cow::Owned(out)
    }
}

/// Secrets embedded in a URL: the password, a token user, secret query parameters, a bot token.
pub fn secrets_in_url(raw: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(scheme_end) = raw.find("://") {
        let rest = &raw[scheme_end + 3..];
        let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
        if let Some(at) = authority.rfind('@') {
            let userinfo = &authority[..at];
            match userinfo.split_once(':') {
                Some((_, password)) => out.push(password.to_string()),
                None if raw.starts_with("nats") => out.push(userinfo.to_string()),
                None => {}
            }
        }
    }
    if let Some((_, query)) = raw.split_once('?') {
        for pair in query.split('&') {
            if let Some((k, v)) = pair.split_once('=')
                && is_secret_name(k)
            {
                out.push(v.to_string());
            }
        }
    }
    if let Some(start) = raw.find("/bot") {
        let token = &raw[start + 4..];
        let token = &token[..token.find('/').unwrap_or(token.len())];
        if !token.is_empty() {
            out.push(token.to_string());
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_password_is_masked() {
        assert_eq!(
            url("postgres://app:s3cret@127.0.0.1:5432/tasks"),
            "postgres://app:***@127.0.0.1:5432/tasks"
        );
        assert_eq!(
            url("postgres://app@127.0.0.1/tasks"),
            "postgres://app@127.0.0.1/tasks"
        );
        assert_eq!(
            url("nats://tok@127.0.0.1:4222"),
            "nats://***@127.0.0.1:4222"
        );
        assert_eq!(url("http://h/x?token=abc&a=1"), "http://h/x?token=***&a=1");
        assert_eq!(
            url("http://h:9000/bot123:ABC/sendMessage"),
            "http://h:9000/bot***/sendMessage"
        );
    }

    #[test]
    fn redactor_masks_known_secrets_anywhere() {
        let r = Redactor::new(secrets_in_url("postgres://app:s3cret@h/db"));
        assert_eq!(
            r.text("error: password s3cret rejected"),
            "error: password *** rejected"
        );
        assert!(matches!(r.text("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn secrets_are_found_in_urls() {
        assert_eq!(
            secrets_in_url("http://h/bot12:AB/send?api_key=k1"),
            vec!["k1".to_string(), "12:AB".to_string()]
        );
    }

    #[test]
    fn free_text_masks_every_url_and_bare_bot_token() {
        let line = "upstream=http://127.0.0.1:9/bot123456:SECRETTOKEN/ failed; \
                    dsn \"postgres://app:s3cret@db:5432/x\", retry nats://tok@h:4222 then \
                    POST /bot42:AbC_d-9/sendMessage";
        let masked = free_text(line);
        for secret in ["SECRETTOKEN", "s3cret", "tok@", "AbC_d-9"] {
            assert!(!masked.contains(secret), "{secret} survived: {masked}");
        }
        assert!(masked.contains("http://127.0.0.1:9/bot***/ failed"));
        assert!(masked.contains("postgres://app:***@db:5432/x\""));
        assert!(masked.contains("nats://***@h:4222 then"));
        assert!(masked.contains("POST /bot***/sendMessage"));
    }

    #[test]
    fn free_text_leaves_harmless_text_borrowed() {
        for text in [
            "tcp proxy listening bound=127.0.0.1:5000 upstream=127.0.0.1:4222",
            "see http://127.0.0.1:8222/varz and /bottom/of/page",
            "odd ://no-scheme and /bot:x and /bot12",
            "",
        ] {
            assert!(
                matches!(free_text(text), Cow::Borrowed(_)),
                "{text:?} was rewritten"
            );
        }
    }

    #[test]
    fn free_text_handles_non_ascii_around_urls() {
        assert_eq!(
            free_text("échec → http://u:pw@h/é fin"),
            "échec → http://u:***@h/é fin"
        );
    }
}
