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
}
