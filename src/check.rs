//! `gameday check`: validate the config and every theme and scenario file, then try each target
//! and print one row per target. Exit 0 all good, 1 a target unreachable, 2 invalid input.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::console::{EXIT_INVALID_INPUT, load_config};
use crate::faults::container;
use crate::faults::docker::DockerHandle;
use crate::snapshot::collect;
use crate::sources::{SourceId, SourceStatus};

/// One line of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub name: String,
    pub kind: &'static str,
    pub result: Result<String, String>,
}

pub fn main(config_path: Option<&std::path::Path>) -> ExitCode {
    let config = match load_config(config_path) {
        Ok(c) => Arc::new(c),
        Err(code) => return code,
    };
    if let Err(e) = crate::theme::validate_dir(&config.console.themes) {
        eprintln!("gameday: {e}");
        return ExitCode::from(EXIT_INVALID_INPUT);
    }
    println!("config {}: valid", config.file.display());
    if config.console.environment.is_some() || config.console.production {
        println!("environment: {}", config.console.environment_label());
    }
    for warning in &config.warnings {
        println!("⚠ {warning}");
    }
    for file in crate::scenario::Scenario::files(&config.console.scenarios) {
        match crate::scenario::Scenario::load(&file, &config) {
            Ok(s) => println!("scenario {}: valid ({})", file.display(), s.title),
            Err(e) => {
                eprintln!("gameday: {e}");
                return ExitCode::from(EXIT_INVALID_INPUT);
            }
        }
    }
    let runtime = match crate::console::runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let rows = runtime.block_on(targets(&config));
    print!("{}", format_rows(&rows));
    if rows.iter().all(|r| r.result.is_ok()) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

pub fn format_rows(rows: &[Row]) -> String {
    let name_w = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    let kind_w = rows.iter().map(|r| r.kind.len()).max().unwrap_or(4).max(4);
    let mut out = format!("{:name_w$}  {:kind_w$}  STATUS\n", "NAME", "KIND");
    for r in rows {
        let status = match &r.result {
            Ok(detail) => format!(
                "✔ reachable{}",
                if detail.is_empty() {
                    String::new()
                } else {
                    format!(" ({detail})")
                }
            ),
            Err(reason) => format!("✖ {reason}"),
        };
        out.push_str(&format!(
            "{:name_w$}  {:kind_w$}  {status}\n",
            r.name, r.kind
        ));
    }
    out
}

/// Tries every configured target.
pub async fn targets(config: &Arc<Config>) -> Vec<Row> {
    let collected = collect(config, None, Duration::from_secs(6)).await;
    let status_row = |id: SourceId, name: String, kind: &'static str| {
        let result = match collected.statuses.get(&id) {
            Some(SourceStatus::Up) => Ok(String::new()),
            Some(SourceStatus::Down { reason }) => Err(reason.clone()),
            _ => Err("no answer within 6s".into()),
        };
        Row { name, kind, result }
    };
    let mut rows = Vec::new();
    let redact = config.redactor();
    if let Some(n) = &config.nats {
        rows.push(status_row(
            SourceId::nats(),
            redact.text(&crate::redact::url(&n.url)).into_owned(),
            "nats",
        ));
    }
    if let Some(p) = &config.postgres {
        rows.push(status_row(
            SourceId::postgres(),
            redact.text(&crate::redact::url(&p.url)).into_owned(),
            "postgres",
        ));
    }
    for b in &config.pgbouncers {
        rows.push(status_row(
            crate::sources::pgbouncer::source_id(&b.name),
            format!("{} ({})", b.name, redact.text(&crate::redact::url(&b.url))),
            "pgbouncer",
        ));
    }
    for p in &config.probes {
        rows.push(status_row(
            SourceId::probe(&p.name),
            p.name.clone(),
            "probe",
        ));
    }
    for p in &config.prometheus {
        rows.push(status_row(
            SourceId::prometheus(&p.name),
            p.name.clone(),
            "prometheus",
        ));
    }
    for w in &config.webhooks {
        let result = tcp_reachable(&upstream_addr(&w.upstream)).await;
        rows.push(Row {
            name: format!("{} upstream", w.name),
            kind: "webhook",
            result,
        });
    }
    for p in &config.proxies {
        let result = tcp_reachable(&p.upstream).await;
        rows.push(Row {
            name: format!("{} upstream", p.name),
            kind: "proxy",
            result,
        });
    }
    rows.extend(container_rows(config).await);
    for note in collected.notes {
        rows.push(Row {
            name: "proxy daemon".into(),
            kind: "daemon",
            result: Err(note),
        });
    }
    rows
}

/// The Docker engine and every declared `[[container]]`, when the config declares any.
async fn container_rows(config: &Config) -> Vec<Row> {
    if config.containers.is_empty() {
        return Vec::new();
    }
    let handle = DockerHandle::from_env();
    let engine = container::check_engine(&handle).await;
    let engine_up = engine.is_ok();
    let mut rows = vec![Row {
        name: "docker engine".into(),
        kind: "docker",
        result: engine,
    }];
    for target in &config.containers {
        let result = match engine_up {
            true => match handle.get().await {
                Ok(docker) => container::check_target(docker, target).await,
                Err(reason) => Err(reason),
            },
            false => Err("not checked: the Docker engine is not reachable".into()),
        };
        rows.push(Row {
            name: target.name.clone(),
            kind: "container",
            result,
        });
    }
    rows
}

/// `http://host:port/path` → `host:port` (port 80 when absent).
fn upstream_addr(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:80")
    }
}

async fn tcp_reachable(addr: &str) -> Result<String, String> {
    match tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Ok(addr.to_string()),
        Ok(Err(e)) => Err(format!("{addr}: {e}")),
        Err(_) => Err(format!("{addr}: no answer within 3s")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_addresses() {
        assert_eq!(
            upstream_addr("http://127.0.0.1:9000/bot/x"),
            "127.0.0.1:9000"
        );
        assert_eq!(upstream_addr("http://example.test/x"), "example.test:80");
    }

    #[test]
    fn rows_align_and_say_why() {
        let rows = vec![
            Row {
                name: "nats://127.0.0.1:4222".into(),
                kind: "nats",
                result: Ok(String::new()),
            },
            Row {
                name: "api".into(),
                kind: "probe",
                result: Err("connection refused".into()),
            },
        ];
        let text = format_rows(&rows);
        assert!(
            text.contains("api                    probe  ✖ connection refused"),
            "{text}"
        );
    }
}
