//! Every PostgreSQL connection gameday opens (the source, `check`, held sessions and locks of
//! the faults) is built here from a URL and the `[postgres]` settings, with libpq's meaning for
//! each: `sslmode` (disable, allow, prefer, require, verify-ca, verify-full), `sslrootcert`,
//! `sslcert`, `sslkey`, and `passfile` (the `.pgpass` format). A setting in the URL's query wins
//! over the same one in the config, as with libpq. Without `passfile`, `PGPASSFILE` and
//! `~/.pgpass` are read as libpq does.

use std::path::Path;
use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgSslMode};

use crate::config::PostgresConfig;
use crate::redact;

/// The `sslmode` values libpq knows.
pub const SSL_MODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

/// Options for `url` (the config's `url` or `admin_url`) with the config's TLS and password file.
pub fn options(pg: &PostgresConfig, url: &str) -> Result<PgConnectOptions, String> {
    let mut options = PgConnectOptions::from_str(url)
        .map_err(|e| format!("bad postgres URL {}: {e}", redact::url(url)))?;
    let in_url = |key: &str| query_has(url, key);
    if let Some(mode) = pg.sslmode.as_deref().filter(|_| !in_url("sslmode")) {
        let mode = PgSslMode::from_str(mode).map_err(|e| format!("sslmode: {e}"))?;
        options = options.ssl_mode(mode);
    }
    if let Some(root) = pg.sslrootcert.as_deref().filter(|_| !in_url("sslrootcert")) {
        options = options.ssl_root_cert(root);
    }
    if let Some(cert) = pg.sslcert.as_deref().filter(|_| !in_url("sslcert")) {
        options = options.ssl_client_cert(cert);
    }
    if let Some(key) = pg.sslkey.as_deref().filter(|_| !in_url("sslkey")) {
        options = options.ssl_client_key(key);
    }
    if let Some(file) = &pg.passfile
        && redact::secrets_in_url(url).is_empty()
    {
        let password = lookup_password(
            file,
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or(options.get_username()),
            options.get_username(),
        )?;
        if let Some(password) = password {
            options = options.password(&password);
        }
    }
    Ok(options)
}

fn query_has(url: &str, key: &str) -> bool {
    url.split_once('?').is_some_and(|(_, query)| {
        query
            .split('&')
            .any(|pair| pair.split('=').next() == Some(key))
    })
}

/// The password for a connection from a `.pgpass`-format file: the first line whose fields
/// (`host:port:database:username:password`, `*` matching anything, `\:` and `\\` escaped) match.
pub fn lookup_password(
    file: &Path,
    host: &str,
    port: u16,
    database: &str,
    user: &str,
) -> Result<Option<String>, String> {
    let text =
        std::fs::read_to_string(file).map_err(|e| format!("passfile {}: {e}", file.display()))?;
    let port = port.to_string();
    for line in text.lines() {
        if line.trim_start().starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = split_fields(line);
        let [h, p, d, u, password] = fields.as_slice() else {
            continue;
        };
        let matches = |pattern: &str, value: &str| pattern == "*" || pattern == value;
        if matches(h, host) && matches(p, &port) && matches(d, database) && matches(u, user) {
            return Ok(Some(password.clone()));
        }
    }
    Ok(None)
}

fn split_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().expect("one field").push(next);
                }
            }
            // The password is the rest of the line, colons included.
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pg(extra: impl FnOnce(&mut PostgresConfig)) -> PostgresConfig {
        let mut pg: PostgresConfig =
            toml::from_str("url = \"postgres://app@db.internal:5433/tasks\"").unwrap();
        extra(&mut pg);
        pg
    }

    #[test]
    fn a_pgpass_line_matches_field_by_field_with_wildcards_and_escapes() {
        let dir = std::env::temp_dir().join(format!("gameday-pgpass-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pgpass");
        std::fs::write(
            &file,
            "# comment\nother:5433:tasks:app:nope\ndb.internal:5433:tasks:app:s3cr\\:et:x\n*:*:*:*:fallback\n",
        )
        .unwrap();
        let found = |host, db, user| lookup_password(&file, host, 5433, db, user).unwrap();
        assert_eq!(
            found("db.internal", "tasks", "app").as_deref(),
            Some("s3cr:et:x")
        );
        assert_eq!(
            found("elsewhere", "tasks", "app").as_deref(),
            Some("fallback")
        );
        assert!(lookup_password(&dir.join("missing"), "h", 1, "d", "u").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn config_settings_apply_unless_the_url_says_otherwise() {
        let config = pg(|p| {
            p.sslmode = Some("verify-full".into());
            p.sslrootcert = Some("/etc/ca.pem".into());
        });
        let from_config = options(&config, &config.url).unwrap();
        assert!(format!("{from_config:?}").contains("VerifyFull"));
        let from_url = options(&config, "postgres://app@db:5432/tasks?sslmode=disable").unwrap();
        assert!(format!("{from_url:?}").contains("Disable"));
        assert!(
            options(
                &pg(|p| p.sslmode = Some("sometimes".into())),
                "postgres://a@b/c"
            )
            .is_err()
        );
    }
}
