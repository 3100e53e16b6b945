//! `${VAR}` and `${VAR:-default}` in config strings, expanded from the environment.

use super::RawConfig;
use crate::toml_input::{InputError, TomlDoc};

/// Expands one string. `Err` carries the message for the operator.
pub fn expand(value: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("expected `}}` to close `${{` in \"{value}\""));
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "expected a variable name like ${{PGPASSWORD}}, got ${{{inner}}}"
            ));
        }
        match (lookup(name), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "environment variable {name} is not set (used as ${{{name}}}; set it, or write ${{{name}:-default}})"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn field(doc: &TomlDoc, path: &str, value: &mut String) -> Result<(), InputError> {
    if value.contains("${") {
        *value =
            expand(value, |name| std::env::var(name).ok()).map_err(|m| doc.error_at(path, m))?;
    }
    Ok(())
}

/// A file path may come from the environment too (`${HOME}/certs/ca.pem`).
fn path_field(
    doc: &TomlDoc,
    path: &str,
    value: &mut Option<std::path::PathBuf>,
) -> Result<(), InputError> {
    if let Some(p) = value {
        let mut text = p.display().to_string();
        field(doc, path, &mut text)?;
        *p = std::path::PathBuf::from(text);
    }
    Ok(())
}

fn opt_field(doc: &TomlDoc, path: &str, value: &mut Option<String>) -> Result<(), InputError> {
    match value {
        Some(v) => field(doc, path, v),
        None => Ok(()),
    }
}

pub(super) fn expand_all(raw: &mut RawConfig, doc: &TomlDoc) -> Result<(), InputError> {
    if let Some(n) = &mut raw.nats {
        field(doc, "nats.url", &mut n.url)?;
        opt_field(doc, "nats.monitor_url", &mut n.monitor_url)?;
        opt_field(doc, "nats.user", &mut n.user)?;
        opt_field(doc, "nats.password", &mut n.password)?;
        opt_field(doc, "nats.token", &mut n.token)?;
        opt_field(doc, "nats.nkey", &mut n.nkey)?;
        path_field(doc, "nats.creds", &mut n.creds)?;
        path_field(doc, "nats.ca_file", &mut n.ca_file)?;
        path_field(doc, "nats.cert_file", &mut n.cert_file)?;
        path_field(doc, "nats.key_file", &mut n.key_file)?;
    }
    if let Some(pg) = &mut raw.postgres {
        field(doc, "postgres.url", &mut pg.url)?;
        opt_field(doc, "postgres.admin_url", &mut pg.admin_url)?;
        opt_field(doc, "postgres.sslmode", &mut pg.sslmode)?;
        path_field(doc, "postgres.sslrootcert", &mut pg.sslrootcert)?;
        path_field(doc, "postgres.sslcert", &mut pg.sslcert)?;
        path_field(doc, "postgres.sslkey", &mut pg.sslkey)?;
        path_field(doc, "postgres.passfile", &mut pg.passfile)?;
        for (i, g) in pg.gauges.iter_mut().enumerate() {
            field(doc, &format!("postgres.gauge[{i}].sql"), &mut g.sql)?;
        }
    }
    for (i, w) in raw.webhook.iter_mut().enumerate() {
        field(doc, &format!("webhook[{i}].upstream"), &mut w.upstream)?;
        path_field(doc, &format!("webhook[{i}].ca_file"), &mut w.ca_file)?;
    }
    for (i, p) in raw.probe.iter_mut().enumerate() {
        field(doc, &format!("probe[{i}].url"), &mut p.url)?;
        opt_field(doc, &format!("probe[{i}].body"), &mut p.body)?;
        for (k, v) in p.headers.iter_mut() {
            field(doc, &format!("probe[{i}].headers.{k}"), v)?;
        }
        path_field(doc, &format!("probe[{i}].ca_file"), &mut p.ca_file)?;
        path_field(doc, &format!("probe[{i}].cert_file"), &mut p.cert_file)?;
        path_field(doc, &format!("probe[{i}].key_file"), &mut p.key_file)?;
    }
    for (i, p) in raw.prometheus.iter_mut().enumerate() {
        field(doc, &format!("prometheus[{i}].url"), &mut p.url)?;
        for (k, v) in p.headers.iter_mut() {
            field(doc, &format!("prometheus[{i}].headers.{k}"), v)?;
        }
        path_field(doc, &format!("prometheus[{i}].ca_file"), &mut p.ca_file)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::expand;

    fn env(name: &str) -> Option<String> {
        (name == "PGPASSWORD").then(|| "s3cret".to_string())
    }

    #[test]
    fn expands_set_variables_and_defaults() {
        assert_eq!(
            expand("postgres://app:${PGPASSWORD}@h/db", env).unwrap(),
            "postgres://app:s3cret@h/db"
        );
        assert_eq!(expand("${NOPE:-4222}", env).unwrap(), "4222");
        assert_eq!(expand("plain", env).unwrap(), "plain");
    }

    #[test]
    fn missing_variable_is_named() {
        let err = expand("${NOPE}", env).unwrap_err();
        assert!(
            err.starts_with("environment variable NOPE is not set"),
            "{err}"
        );
        assert!(
            expand("${unterminated", env)
                .unwrap_err()
                .contains("to close")
        );
        assert!(
            expand("${bad-name}", env)
                .unwrap_err()
                .contains("expected a variable name")
        );
    }
}
