//! Every NATS connection gameday opens (the source, `check`, floods, consumer pauses) is built
//! here from `[nats]`: several seed URLs (comma-separated), TLS with a private CA, a client
//! certificate and key, TLS-first handshakes, and credentials — a `.creds` file (JWT and nkey
//! seed, as operator-mode and managed NATS hand them out), an nkey seed (a file, or the seed
//! itself from `${ENV}`), user and password, or a token.

use async_nats::{ConnectOptions, ServerAddr};

use crate::config::NatsConfig;
use crate::redact;

/// The seed URLs in `url`, in order (`nats://a:4222,nats://b:4222`).
pub fn server_addrs(config: &NatsConfig) -> Result<Vec<ServerAddr>, String> {
    config
        .url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| {
            u.parse::<ServerAddr>()
                .map_err(|e| format!("bad NATS URL {}: {e}", redact::url(u)))
        })
        .collect()
}

/// The URLs as they may be shown (secrets masked).
pub fn shown_urls(config: &NatsConfig) -> String {
    config
        .url
        .split(',')
        .map(|u| redact::url(u.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// TLS and credentials from the config on top of `options`.
pub async fn secure(
    config: &NatsConfig,
    mut options: ConnectOptions,
) -> Result<ConnectOptions, String> {
    let tls = config.tls();
    if let Some(ca) = &tls.ca_file {
        options = options.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = tls.identity() {
        options = options.add_client_certificate(cert.to_path_buf(), key.to_path_buf());
    }
    let tls_url = config
        .url
        .split(',')
        .any(|u| u.trim().starts_with("tls://"));
    if !tls.is_empty() || tls_url || config.tls_first {
        options = options.require_tls(true);
    }
    if config.tls_first {
        options = options.tls_first();
    }
    if let Some(creds) = &config.creds {
        options = options
            .credentials_file(creds)
            .await
            .map_err(|e| format!("creds file {}: {e}", creds.display()))?;
    }
    if let Some(nkey) = &config.nkey {
        options = options.nkey(seed(nkey)?);
    }
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &config.token {
        options = options.token(token.clone());
    }
    Ok(options)
}

/// Why a connection to the configured servers fails, in words (`None` when it succeeds): one
/// direct attempt with the full error chain, which the reconnecting client's events do not carry
/// (they say only "IO error" or "TLS error").
pub async fn diagnose(config: &NatsConfig, timeout: std::time::Duration) -> Option<String> {
    let addrs = match server_addrs(config) {
        Ok(addrs) => addrs,
        Err(e) => return Some(e),
    };
    let options = ConnectOptions::new()
        .name("gameday-diagnose")
        .connection_timeout(timeout)
        .max_reconnects(Some(1));
    let options = match secure(config, options).await {
        Ok(options) => options,
        Err(e) => return Some(e),
    };
    match tokio::time::timeout(timeout * 2, options.connect(addrs)).await {
        Ok(Ok(client)) => {
            drop(client);
            None
        }
        Ok(Err(e)) => Some(super::describe(&super::chain(&e), super::NATS)),
        Err(_) => Some(format!(
            "no answer from {} within {}",
            shown_urls(config),
            humantime::format_duration(timeout * 2)
        )),
    }
}

/// An nkey seed given as itself (from `${ENV}`) or as a file holding it.
fn seed(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.starts_with('S') && !value.contains('/') && value.len() > 50 {
        return Ok(value.to_string());
    }
    let text =
        std::fs::read_to_string(value).map_err(|e| format!("nkey seed file {value}: {e}"))?;
    text.lines()
        .map(str::trim)
        .find(|l| l.starts_with("SU") || l.starts_with("SA") || l.starts_with('S'))
        .map(str::to_string)
        .ok_or_else(|| format!("nkey seed file {value}: no seed (a line starting with S) in it"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_seed_urls_are_read_in_order() {
        let config: NatsConfig =
            toml::from_str("url = \"nats://a:4222, tls://b:4223,nats://u:pw@c:4224\"").unwrap();
        let addrs = server_addrs(&config).unwrap();
        assert_eq!(addrs.len(), 3);
        assert_eq!(addrs[1].host(), "b");
        assert!(addrs[1].tls_required());
        assert_eq!(
            shown_urls(&config),
            "nats://a:4222, tls://b:4223, nats://u:***@c:4224"
        );
    }

    #[test]
    fn a_seed_is_taken_as_itself_or_read_from_its_file() {
        let seed_value = "SUAGMJH5XLGZKQQWAWKRZJIGMOU4HPFUYLXJMXOO5NLFEO2OOQJ5LPRDPM";
        assert_eq!(seed(seed_value).unwrap(), seed_value);
        let file = std::env::temp_dir().join(format!("gameday-seed-{}", std::process::id()));
        std::fs::write(&file, format!("# user seed\n{seed_value}\n")).unwrap();
        assert_eq!(seed(&file.display().to_string()).unwrap(), seed_value);
        assert!(seed("/no/such/seed").unwrap_err().contains("/no/such/seed"));
        let _ = std::fs::remove_file(&file);
    }
}
