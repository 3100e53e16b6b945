//! Container faults on a Docker engine: stop, pause, kill with a signal, restart, and disconnect
//! from a network.
//!
//! The target is resolved only as the config declares it: the exact container name or id, or every
//! container carrying a label. Anything else is refused and left alone.
//!
//! Revert needs no memory of the inject (the ledger keeps only the spec, and a killed console's
//! faults are reverted by a fresh instance): it starts, unpauses or reconnects whatever matches the
//! target and is in the faulted state. The one thing an instance remembers is which containers were
//! already in that state before it acted, so its own revert (for example the cleanup after a failed
//! inject) leaves them as it found them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use bollard::Docker;
use bollard::models::{
    ContainerInspectResponse, ContainerStateStatusEnum as Status, EndpointSettings,
    NetworkConnectRequest, NetworkDisconnectRequest,
};
use bollard::query_parameters::{
    KillContainerOptionsBuilder, ListContainersOptionsBuilder, RestartContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use futures::future::{BoxFuture, join_all};

use super::docker::{self, ApiError, CALL_DEADLINE, bounded};
use super::spec::{ContainerAction, ContainerSelector, ContainerTarget};
use super::touched::Touched;
use super::{Description, Fault, FaultContext, FaultError, fmt_duration};
use crate::config::Config;

/// How long `docker stop` (and restart) lets the stop signal work before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

/// A container a target resolved to, as the engine describes it now.
#[derive(Debug, Clone)]
pub struct Found {
    pub id: String,
    /// Without Docker's leading `/`.
    pub name: String,
    pub status: Status,
    /// Networks it is attached to, by name.
    pub networks: HashMap<String, EndpointSettings>,
}

impl Found {
    /// The 12-character id `docker ps` shows.
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }

    fn from_inspect(c: ContainerInspectResponse) -> Option<Found> {
        Some(Found {
            id: c.id?,
            name: c
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            status: c.state.and_then(|s| s.status).unwrap_or(Status::EMPTY),
            networks: c
                .network_settings
                .and_then(|n| n.networks)
                .unwrap_or_default(),
        })
    }
}

/// Every container the target names, or `Refused` with why none may be touched: nothing matches,
/// or a name resolves (through Docker's id-prefix lookup) to a container whose name differs.
pub async fn resolve(docker: &Docker, target: &ContainerTarget) -> Result<Vec<Found>, FaultError> {
    let api = |e: ApiError| api_fault(&e);
    match &target.selector {
        ContainerSelector::Name(wanted) => {
            if !plausible_reference(wanted) {
                return Err(FaultError::Refused(format!(
                    "\"{wanted}\" is not a container name or id"
                )));
            }
            let inspected = bounded(
                format!("inspect container {wanted}"),
                CALL_DEADLINE,
                docker.inspect_container(wanted, None),
            )
            .await;
            let found = match inspected {
                Ok(c) => Found::from_inspect(c),
                Err(e) if e.status() == Some(404) => {
                    return Err(FaultError::Refused(format!(
                        "no container named \"{wanted}\" on the Docker engine"
                    )));
                }
                Err(e) => return Err(api(e)),
            }
            .ok_or_else(|| FaultError::Failed(format!("{wanted}: the engine sent no id")))?;
            if !names_exactly(wanted, &found) {
                return Err(FaultError::Refused(format!(
                    "\"{wanted}\" resolves to container {} ({}), which is not the declared one",
                    found.name,
                    found.short_id()
                )));
            }
            Ok(vec![found])
        }
        ContainerSelector::Label(label) => {
            let (key, value) = label.split_once('=').unwrap_or((label, ""));
            let filters = HashMap::from([("label", vec![label.as_str()])]);
            let options = ListContainersOptionsBuilder::default()
                .all(true)
                .filters(&filters)
                .build();
            let listed = bounded(
                format!("list containers labelled {label}"),
                CALL_DEADLINE,
                docker.list_containers(Some(options)),
            )
            .await
            .map_err(api)?;
            let inspections = listed.iter().filter_map(|c| c.id.as_deref()).map(|id| {
                bounded(
                    format!("inspect container {id}"),
                    CALL_DEADLINE,
                    docker.inspect_container(id, None),
                )
            });
            let mut found = Vec::new();
            for inspected in join_all(inspections).await {
                let c = match inspected {
                    Ok(c) => c,
                    // Removed between the list and the inspect: nothing to act on.
                    Err(e) if e.status() == Some(404) => continue,
                    Err(e) => return Err(api(e)),
                };
                // The engine filtered already; check again so only the declared label counts.
                let labelled = c
                    .config
                    .as_ref()
                    .and_then(|cfg| cfg.labels.as_ref())
                    .and_then(|labels| labels.get(key))
                    .is_some_and(|v| v == value);
                if labelled && let Some(f) = Found::from_inspect(c) {
                    found.push(f);
                }
            }
            if found.is_empty() {
                return Err(FaultError::Refused(format!(
                    "no container carries the label {label}"
                )));
            }
            found.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(found)
        }
    }
}

/// Docker's name/id alphabet; anything else (a `/`, `?`, `..`) would change the request path.
fn plausible_reference(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The declared reference is this container's name, full id, or an id prefix of at least the 12
/// characters `docker ps` shows. Docker would also accept any unique id prefix ("ab"); that
/// could be anything, so it does not count.
fn names_exactly(wanted: &str, found: &Found) -> bool {
    found.name == wanted
        || found.id == wanted
        || (wanted.len() >= 12
            && wanted.chars().all(|c| c.is_ascii_hexdigit())
            && found.id.starts_with(wanted))
}

fn api_fault(e: &ApiError) -> FaultError {
    match e {
        ApiError::Unreachable { .. } => FaultError::Unavailable(e.to_string()),
        _ => FaultError::Failed(e.to_string()),
    }
}

/// One container fault.
pub struct ContainerFault {
    target: ContainerTarget,
    action: ContainerAction,
    /// Containers this instance faulted, id → name (for the blast radius and a second inject).
    acted: BTreeMap<String, String>,
    /// Containers already in the faulted state when this instance looked; its revert leaves them.
    found_faulted: BTreeSet<String>,
    /// Endpoint settings of the containers this instance disconnected, to reconnect them alike.
    endpoints: HashMap<String, EndpointSettings>,
    /// The ids the inject acted on, from the ledger (a revert in another process).
    recorded: Option<BTreeSet<String>>,
}

/// What inject does to one container.
enum Step {
    /// Already done by this instance.
    Done,
    /// In the faulted state before this instance acted.
    AlreadyFaulted,
    /// The action cannot apply in this state ("not running").
    Cannot(String),
    Act,
}

impl ContainerFault {
    pub fn new(target: ContainerTarget, action: ContainerAction) -> Self {
        ContainerFault {
            target,
            action,
            acted: BTreeMap::new(),
            found_faulted: BTreeSet::new(),
            endpoints: HashMap::new(),
            recorded: None,
        }
    }

    /// Whether a revert may touch container `id`: only what the inject acted on, when known.
    fn was_acted_on(&self, id: &str) -> bool {
        if !self.acted.is_empty() {
            return self.acted.contains_key(id);
        }
        self.recorded.as_ref().is_none_or(|ids| ids.contains(id))
    }

    fn step(&self, c: &Found) -> Step {
        if self.acted.contains_key(&c.id) {
            return Step::Done;
        }
        if self.is_faulted(c) {
            return Step::AlreadyFaulted;
        }
        let up = matches!(
            c.status,
            Status::RUNNING | Status::PAUSED | Status::RESTARTING
        );
        match &self.action {
            ContainerAction::Stop | ContainerAction::Kill { .. } | ContainerAction::Restart
                if !up =>
            {
                Step::Cannot(format!("{} is {}", c.name, status_word(&c.status)))
            }
            ContainerAction::Pause if c.status != Status::RUNNING => {
                Step::Cannot(format!("{} is {}", c.name, status_word(&c.status)))
            }
            _ => Step::Act,
        }
    }

    /// The state this fault leaves a container in, which revert undoes.
    fn is_faulted(&self, c: &Found) -> bool {
        match &self.action {
            ContainerAction::Stop | ContainerAction::Kill { .. } => c.status == Status::EXITED,
            ContainerAction::Pause => c.status == Status::PAUSED,
            ContainerAction::Restart => false,
            ContainerAction::Disconnect { network } => !c.networks.contains_key(network),
        }
    }

    async fn act(&self, docker: &Docker, c: &Found) -> Result<(), ApiError> {
        let id = c.id.as_str();
        match &self.action {
            ContainerAction::Stop => {
                let options = StopContainerOptionsBuilder::default()
                    .t(STOP_GRACE.as_secs() as i32)
                    .build();
                bounded(
                    format!("stop {}", c.name),
                    STOP_GRACE + CALL_DEADLINE,
                    docker.stop_container(id, Some(options)),
                )
                .await
            }
            ContainerAction::Pause => {
                bounded(
                    format!("pause {}", c.name),
                    CALL_DEADLINE,
                    docker.pause_container(id),
                )
                .await
            }
            ContainerAction::Kill { signal } => {
                let options = KillContainerOptionsBuilder::default()
                    .signal(signal)
                    .build();
                bounded(
                    format!("kill {} with {signal}", c.name),
                    CALL_DEADLINE,
                    docker.kill_container(id, Some(options)),
                )
                .await
            }
            ContainerAction::Restart => {
                let options = RestartContainerOptionsBuilder::default()
                    .t(STOP_GRACE.as_secs() as i32)
                    .build();
                bounded(
                    format!("restart {}", c.name),
                    STOP_GRACE + CALL_DEADLINE,
                    docker.restart_container(id, Some(options)),
                )
                .await
            }
            ContainerAction::Disconnect { network } => {
                let request = NetworkDisconnectRequest {
                    container: id.to_string(),
                    force: Some(true),
                };
                bounded(
                    format!("disconnect {} from network {network}", c.name),
                    CALL_DEADLINE,
                    docker.disconnect_network(network, request),
                )
                .await
            }
        }
    }

    async fn undo(&self, docker: &Docker, c: &Found) -> Result<(), ApiError> {
        let id = c.id.as_str();
        match &self.action {
            ContainerAction::Stop | ContainerAction::Kill { .. } => {
                bounded(
                    format!("start {}", c.name),
                    CALL_DEADLINE,
                    docker.start_container(id, None),
                )
                .await
            }
            ContainerAction::Pause => {
                bounded(
                    format!("unpause {}", c.name),
                    CALL_DEADLINE,
                    docker.unpause_container(id),
                )
                .await
            }
            ContainerAction::Restart => Ok(()),
            ContainerAction::Disconnect { network } => {
                // Same aliases and fixed address as before, when this instance saw them.
                let endpoint_config = self.endpoints.get(id).map(|e| EndpointSettings {
                    aliases: e.aliases.clone(),
                    ipam_config: e.ipam_config.clone(),
                    links: e.links.clone(),
                    ..Default::default()
                });
                let request = NetworkConnectRequest {
                    container: id.to_string(),
                    endpoint_config,
                };
                bounded(
                    format!("reconnect {} to network {network}", c.name),
                    CALL_DEADLINE,
                    docker.connect_network(network, request),
                )
                .await
            }
        }
    }

    fn blast_radius(&self) -> String {
        let talks = match &self.action {
            ContainerAction::Disconnect { network } => format!(" on network {network}"),
            _ => String::new(),
        };
        match &self.target.selector {
            ContainerSelector::Name(name) => match self.acted.keys().next() {
                Some(id) => format!(
                    "container {name} ({}…) and everything that talks to it{talks}",
                    &id[..id.len().min(12)]
                ),
                None => format!("container {name} and everything that talks to it{talks}"),
            },
            ContainerSelector::Label(label) if self.acted.is_empty() => {
                format!("every container labelled {label} and everything that talks to them{talks}")
            }
            ContainerSelector::Label(label) => {
                let mut names: Vec<&str> = self.acted.values().map(String::as_str).collect();
                names.sort_unstable();
                format!(
                    "{} container{} labelled {label} ({}) and everything that talks to them{talks}",
                    names.len(),
                    if names.len() == 1 { "" } else { "s" },
                    names.join(", ")
                )
            }
        }
    }
}

fn status_word(s: &Status) -> String {
    match s {
        Status::EMPTY => "in an unknown state".into(),
        other => other.to_string(),
    }
}

impl Fault for ContainerFault {
    fn describe(&self, _config: &Config) -> Description {
        let grace = fmt_duration(STOP_GRACE);
        let (kind, params) = match &self.action {
            ContainerAction::Stop => (
                "container stop",
                format!("stop signal, SIGKILL after {grace}; revert starts it"),
            ),
            ContainerAction::Pause => (
                "container pause",
                "freeze every process (cgroup freezer); revert unpauses".to_string(),
            ),
            ContainerAction::Kill { signal } => {
                ("container kill", format!("send {signal}; revert starts it"))
            }
            ContainerAction::Restart => (
                "container restart",
                format!("stop (SIGKILL after {grace}) and start once; nothing to revert"),
            ),
            ContainerAction::Disconnect { network } => (
                "container disconnect",
                format!("detach from network {network}; revert reconnects"),
            ),
        };
        Description {
            kind: kind.to_string(),
            params,
            blast_radius: self.blast_radius(),
        }
    }

    fn inject<'a>(&'a mut self, ctx: &'a FaultContext) -> BoxFuture<'a, Result<(), FaultError>> {
        Box::pin(async move {
            let docker = ctx.docker().await?;
            let found = resolve(docker, &self.target).await?;
            let mut cannot = Vec::new();
            let mut to_act = Vec::new();
            for c in found {
                match self.step(&c) {
                    Step::Done => {}
                    Step::AlreadyFaulted => {
                        self.found_faulted.insert(c.id.clone());
                    }
                    Step::Cannot(why) => cannot.push(why),
                    Step::Act => to_act.push(c),
                }
            }
            let this = &*self;
            let results = join_all(to_act.iter().map(|c| this.act(docker, c))).await;
            let mut failures = cannot;
            for (c, result) in to_act.into_iter().zip(results) {
                match result {
                    Ok(()) => {
                        if let ContainerAction::Disconnect { network } = &self.action
                            && let Some(endpoint) = c.networks.get(network)
                        {
                            self.endpoints.insert(c.id.clone(), endpoint.clone());
                        }
                        self.acted.insert(c.id, c.name);
                    }
                    Err(e) => failures.push(e.to_string()),
                }
            }
            if !failures.is_empty() {
                return Err(FaultError::Failed(failures.join("; ")));
            }
            if self.acted.is_empty() {
                let state = match &self.action {
                    ContainerAction::Disconnect { network } => {
                        format!("not connected to network {network}")
                    }
                    ContainerAction::Pause => "already paused".into(),
                    _ => "already stopped".into(),
                };
                return Err(FaultError::Failed(format!(
                    "{} is {state}; nothing to do",
                    self.target.name
                )));
            }
            Ok(())
        })
    }

    fn dry_run<'a>(
        &'a self,
        ctx: &'a FaultContext,
    ) -> BoxFuture<'a, Result<super::Radius, FaultError>> {
        Box::pin(async move {
            let docker = ctx.docker().await?;
            let found = resolve(docker, &self.target).await?;
            let engine = crate::redact::url(ctx.docker.host());
            let lines = found
                .iter()
                .map(|c| {
                    format!(
                        "container {} ({}) on {engine}: {}",
                        c.name,
                        c.short_id(),
                        status_word(&c.status)
                    )
                })
                .collect();
            let ambiguous = (found.len() > 1).then(|| {
                let names: Vec<&str> = found.iter().map(|c| c.name.as_str()).collect();
                format!(
                    "{} matches {} containers: {}",
                    self.target.name,
                    found.len(),
                    names.join(", ")
                )
            });
            Ok(super::Radius { lines, ambiguous })
        })
    }

    fn touched(&self) -> Option<Touched> {
        (!self.acted.is_empty()).then(|| Touched::Containers {
            ids: self.acted.keys().cloned().collect(),
            aliases: self
                .endpoints
                .iter()
                .filter_map(|(id, e)| Some((id.clone(), e.aliases.clone()?)))
                .collect(),
        })
    }

    fn restore(&mut self, touched: &Touched) {
        if let Touched::Containers { ids, aliases } = touched {
            self.recorded = Some(ids.iter().cloned().collect());
            for (id, aliases) in aliases {
                self.endpoints.insert(
                    id.clone(),
                    EndpointSettings {
                        aliases: Some(aliases.clone()),
                        ..Default::default()
                    },
                );
            }
        }
    }

    fn revert<'a>(&'a mut self, ctx: &'a FaultContext) -> BoxFuture<'a, Result<(), FaultError>> {
        Box::pin(async move {
            let docker = ctx.docker().await?;
            let found = match resolve(docker, &self.target).await {
                Ok(found) => found,
                // Gone, or no longer the declared container: nothing of this fault is left.
                Err(FaultError::Refused(why)) => {
                    tracing::warn!("revert {}: {why}; nothing to revert", self.target.name);
                    return Ok(());
                }
                Err(e) => return Err(e),
            };
            let to_undo: Vec<&Found> = found
                .iter()
                .filter(|c| {
                    self.is_faulted(c)
                        && !self.found_faulted.contains(&c.id)
                        && self.was_acted_on(&c.id)
                })
                .collect();
            let results = join_all(to_undo.iter().map(|c| self.undo(docker, c))).await;
            let failures: Vec<String> = results
                .into_iter()
                .filter_map(|r| r.err().map(|e| e.to_string()))
                .collect();
            if failures.is_empty() {
                Ok(())
            } else {
                Err(FaultError::Failed(failures.join("; ")))
            }
        })
    }
}

/// `gameday check`: whether the engine answers, and where it is.
pub async fn check_engine(handle: &docker::DockerHandle) -> Result<String, String> {
    let docker = handle.get().await?;
    Ok(format!(
        "{}, API {}",
        crate::redact::url(handle.host()),
        docker.client_version()
    ))
}

/// `gameday check`: one declared container target — running, or why not.
pub async fn check_target(docker: &Docker, target: &ContainerTarget) -> Result<String, String> {
    let found = resolve(docker, target).await.map_err(|e| match e {
        FaultError::Refused(why) | FaultError::Unavailable(why) | FaultError::Failed(why) => why,
        other => other.to_string(),
    })?;
    let not_running: Vec<String> = found
        .iter()
        .filter(|c| c.status != Status::RUNNING)
        .map(|c| format!("{} is {}", c.name, status_word(&c.status)))
        .collect();
    if !not_running.is_empty() {
        return Err(not_running.join(", "));
    }
    Ok(match found.as_slice() {
        [one] => format!("{} running, id {}", one.name, one.short_id()),
        many => format!(
            "{} containers running: {}",
            many.len(),
            many.iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(id: &str, name: &str) -> Found {
        Found {
            id: id.into(),
            name: name.into(),
            status: Status::RUNNING,
            networks: HashMap::new(),
        }
    }

    const ID: &str = "3f2a9c0d41b7e5a6c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5";

    #[test]
    fn only_the_declared_name_or_id_counts() {
        let c = found(ID, "gameday-nats");
        assert!(names_exactly("gameday-nats", &c));
        assert!(names_exactly(ID, &c));
        assert!(names_exactly(&ID[..12], &c), "the id docker ps shows");
        assert!(
            !names_exactly("3f2a", &c),
            "a short prefix could be anything"
        );
        assert!(!names_exactly("gameday", &c));
        assert!(!names_exactly("other", &c));
    }

    #[test]
    fn references_that_would_change_the_request_path_are_not_names() {
        assert!(plausible_reference("gameday-nats_1.2"));
        assert!(!plausible_reference("../images/x"));
        assert!(!plausible_reference("a?b"));
        assert!(!plausible_reference("-x"));
        assert!(!plausible_reference(""));
    }

    fn target(selector: ContainerSelector) -> ContainerTarget {
        ContainerTarget {
            name: "broker".into(),
            selector,
        }
    }

    #[test]
    fn describe_names_kind_params_and_blast_radius() {
        let config = Config::from_text(std::path::Path::new("gameday.toml"), "").unwrap();
        let mut fault = ContainerFault::new(
            target(ContainerSelector::Name("gameday-nats".into())),
            ContainerAction::Stop,
        );
        let d = fault.describe(&config);
        assert_eq!(d.kind, "container stop");
        assert_eq!(d.params, "stop signal, SIGKILL after 5s; revert starts it");
        assert_eq!(
            d.blast_radius,
            "container gameday-nats and everything that talks to it"
        );
        fault.acted.insert(ID.into(), "gameday-nats".into());
        assert_eq!(
            fault.describe(&config).blast_radius,
            "container gameday-nats (3f2a9c0d41b7…) and everything that talks to it"
        );

        let mut fault = ContainerFault::new(
            target(ContainerSelector::Label("tier=broker".into())),
            ContainerAction::Disconnect {
                network: "backend".into(),
            },
        );
        assert_eq!(
            fault.describe(&config).blast_radius,
            "every container labelled tier=broker and everything that talks to them on network backend"
        );
        fault.acted.insert("a".into(), "nats-1".into());
        fault.acted.insert("b".into(), "nats-2".into());
        let d = fault.describe(&config);
        assert_eq!(d.kind, "container disconnect");
        assert_eq!(d.params, "detach from network backend; revert reconnects");
        assert_eq!(
            d.blast_radius,
            "2 containers labelled tier=broker (nats-1, nats-2) and everything that talks to them on network backend"
        );
    }
}
