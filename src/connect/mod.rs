//! How gameday connects to a real estate: TLS (a private CA, client certificates, TLS-first),
//! credentials (passwords, password files, NATS creds and nkeys), and the one place that turns a
//! failed handshake into a sentence that says what is wrong and which setting fixes it.
//!
//! Every connection of a kind is built here, so sources, faults and `check` connect alike:
//! [`nats`] for every NATS client, [`postgres`] for every PostgreSQL session, [`http`] for
//! probes (the webhook forwarder builds its own in the proxy daemon from the same settings).

pub mod http;
pub mod nats;
pub mod postgres;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where a target's TLS material lives (paths, never contents: those are secrets).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM file of the CA(s) that sign the server's certificate (a private CA).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for servers that require one.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub key_file: Option<PathBuf>,
}

impl TlsFiles {
    pub fn is_empty(&self) -> bool {
        self.ca_file.is_none() && self.cert_file.is_none() && self.key_file.is_none()
    }

    /// The client certificate and key, when both are set.
    pub fn identity(&self) -> Option<(&Path, &Path)> {
        Some((self.cert_file.as_deref()?, self.key_file.as_deref()?))
    }
}

/// A warning when a file holding a secret (a key, credentials, a password file) can be read by
/// other users.
pub fn private_file_warning(what: &str, path: &Path) -> Option<String> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "{what} {} is readable by other users (mode {:o}): chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        )
    })
}

/// An error and every error it wraps, in one line: the cause of a failed handshake is usually
/// several levels down ("IO error: invalid peer certificate: UnknownIssuer").
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

/// Settings that fix each kind of failure, per kind of target.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// The CA setting (`ca_file`, `sslrootcert`).
    pub ca: &'static str,
    /// The client certificate settings (`cert_file`/`key_file`, `sslcert`/`sslkey`).
    pub client_cert: &'static str,
    /// The credentials settings.
    pub credentials: &'static str,
}

pub const NATS: Settings = Settings {
    ca: "`ca_file` in [nats]",
    client_cert: "`cert_file` and `key_file` in [nats]",
    credentials: "`creds`, `nkey`, `user`/`password` or `token` in [nats]",
};
pub const POSTGRES: Settings = Settings {
    ca: "`sslrootcert` in [postgres] (or ?sslrootcert= in the URL)",
    client_cert: "`sslcert` and `sslkey` in [postgres]",
    credentials: "the password in the URL, `${ENV}`, or `passfile` in [postgres]",
};
pub const DOCKER: Settings = Settings {
    ca: "`ca.pem` in DOCKER_CERT_PATH (with DOCKER_TLS_VERIFY=1)",
    client_cert: "`cert.pem` and `key.pem` in DOCKER_CERT_PATH",
    credentials: "the engine's TLS client certificates in DOCKER_CERT_PATH",
};
pub const HTTP: Settings = Settings {
    ca: "`ca_file` on the probe or webhook",
    client_cert: "`cert_file` and `key_file` on the probe or webhook",
    credentials: "`headers` (e.g. Authorization = \"Bearer ${TOKEN}\")",
};

/// What a connection error means, said plainly with the setting that fixes it, or `None` when
/// it is not a TLS or credentials problem (the caller keeps its own wording then).
pub fn explain(error: &str, settings: Settings) -> Option<String> {
    let e = error.to_ascii_lowercase();
    let has = |needle: &str| e.contains(&needle.to_ascii_lowercase());
    if has("UnknownIssuer") || has("unknown authority") || has("self-signed certificate") {
        return Some(format!(
            "certificate signed by an unknown authority: set {}",
            settings.ca
        ));
    }
    if has("not valid for name") || has("NotValidForName") {
        let detail = error
            .find("certificate not valid for name")
            .map(|i| {
                error[i..]
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string()
            })
            .unwrap_or_default();
        return Some(format!(
            "certificate name mismatch: {}; connect by a name the certificate holds",
            if detail.is_empty() {
                "the server's certificate is not valid for the host connected to".into()
            } else {
                detail
            }
        ));
    }
    if has("certificate expired") || has("Expired") {
        return Some("the server's certificate has expired".into());
    }
    if has("NotValidYet") || has("not valid yet") {
        return Some("the server's certificate is not valid yet (check the clocks)".into());
    }
    // The server's alert about *our* certificate (it does not trust its CA, or finds it bad).
    if has("alert: UnknownCA")
        || has("alert: CertificateUnknown")
        || has("alert: UnsupportedCertificate")
    {
        return Some(format!(
            "the server does not accept the client certificate (not signed by a CA it trusts): set {}",
            settings.client_cert
        ));
    }
    if has("CertificateRequired")
        || has("certificate required")
        || has("requires a valid client certificate")
        || has("client didn't provide a certificate")
        || (has("alert") && (has("BadCertificate") || has("HandshakeFailure")))
    {
        return Some(format!(
            "the server requires a client certificate it accepts: set {}",
            settings.client_cert
        ));
    }
    if has("no pg_hba.conf entry") && has("no encryption") {
        return Some(
            "the server accepts only TLS connections here: set sslmode = \"require\", \"verify-ca\" or \"verify-full\""
                .into(),
        );
    }
    if has("authorization violation")
        || has("password authentication failed")
        || has("authentication failed")
        || has("no password supplied")
        || has("no pg_hba.conf entry")
        || has("user authentication expired")
    {
        return Some(format!(
            "credentials refused by the server ({}): check {}",
            short_reason(error),
            settings.credentials
        ));
    }
    if has("tls upgrade required") || has("server does not support tls") || has("ssl off") {
        return Some(format!(
            "TLS could not be negotiated: {}",
            short_reason(error)
        ));
    }
    None
}

/// The last, most specific part of an error chain.
fn short_reason(error: &str) -> String {
    error
        .rsplit(": ")
        .find(|part| !part.trim().is_empty())
        .unwrap_or(error)
        .trim()
        .to_string()
}

/// `explain`, or the error as it is.
pub fn describe(error: &str, settings: Settings) -> String {
    explain(error, settings).unwrap_or_else(|| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_is_named_with_the_setting_that_fixes_it() {
        let cases = [
            (
                "IO error: invalid peer certificate: UnknownIssuer",
                "unknown authority: set `ca_file`",
            ),
            (
                "error communicating with database: invalid peer certificate: certificate not valid for name \"db.internal\"; certificate is only valid for localhost",
                "certificate name mismatch: certificate not valid for name \"db.internal\"",
            ),
            (
                "invalid peer certificate: certificate expired: verification time 2 (UNIX), but certificate is not valid after 1 (1 seconds ago)",
                "has expired",
            ),
            (
                "IO error: received fatal alert: CertificateRequired",
                "requires a client certificate it accepts: set `cert_file` and `key_file`",
            ),
            (
                "authorization violation",
                "credentials refused by the server",
            ),
            (
                "client error (Connect): received fatal alert: UnknownCA",
                "does not accept the client certificate",
            ),
        ];
        for (error, expected) in cases {
            let said = explain(error, NATS).unwrap_or_default();
            assert!(said.contains(expected), "{error} → {said}");
        }
        assert_eq!(explain("connection refused", NATS), None);
        assert!(
            explain(
                "FATAL: password authentication failed for user \"app\"",
                POSTGRES
            )
            .unwrap()
            .contains("passfile")
        );
    }

    #[test]
    fn a_key_others_can_read_gets_a_warning_naming_it() {
        let dir = std::env::temp_dir().join(format!("gameday-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("client.key");
        std::fs::write(&key, "secret").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let warning = private_file_warning("key", &key).unwrap();
        assert!(
            warning.contains("client.key") && warning.contains("chmod 600"),
            "{warning}"
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(private_file_warning("key", &key), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
