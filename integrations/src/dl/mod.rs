//! Deep-learning clusters on Rask workers, as dask-tensorflow and
//! dask-pytorch-ddp do: [`start_cluster`] places one member per role slot
//! on distinct workers (honouring resources such as `GPU=1`), has each
//! member's worker pick a port that it checked free by binding it, and
//! returns every member's environment: `TF_CONFIG` for TensorFlow,
//! `MASTER_ADDR`/`MASTER_PORT`/`RANK`/`WORLD_SIZE`/`LOCAL_RANK`/
//! `LOCAL_WORLD_SIZE`/`NODE_RANK` for PyTorch, and a tracker address
//! (XGBoost/rabit style) when asked.
//!
//! A port is free when its member's worker binds it; it is released for the
//! training process to bind, so another process could take it in between
//! (the window is the time until the job starts). The originals hard-code
//! 2222 and up, or 23456, and never check.

pub mod launch;
pub mod ring;
#[cfg(feature = "burn")]
pub mod train;

use std::collections::BTreeMap;
use std::time::Duration;

pub use launch::{launch, LaunchOptions, LaunchReport, MemberExit, Stream};

use rask_distributed::{Client, DistError, GangMember, WorkerInfo};
use serde::{Deserialize, Serialize};

/// What [`start_cluster`] can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DlError {
    /// The roles or options are not valid.
    #[error("{message}")]
    Invalid {
        /// What and how to fix it.
        message: String,
    },
    /// The cluster cannot hold the job.
    #[error("{message}")]
    Cluster {
        /// What is missing.
        message: String,
    },
    /// The scheduler or a member failed.
    #[error(transparent)]
    Dist(#[from] DistError),
}

/// The members to start.
#[derive(Clone, Debug, PartialEq)]
pub enum Roles {
    /// TensorFlow-style named roles with their counts, in this order, e.g.
    /// `[("chief", 1), ("worker", 2), ("ps", 1)]`.
    Named(Vec<(String, usize)>),
    /// A PyTorch-style world of this many ranks (role `"worker"`).
    World(usize),
}

impl Roles {
    /// Named roles from `(name, count)` pairs.
    pub fn named<S: Into<String>>(roles: impl IntoIterator<Item = (S, usize)>) -> Roles {
        Roles::Named(roles.into_iter().map(|(r, n)| (r.into(), n)).collect())
    }

    /// Each slot's (role, index within the role), in rank order.
    fn slots(&self) -> Result<Vec<(String, usize)>, DlError> {
        let invalid = |message: String| DlError::Invalid { message };
        let slots: Vec<(String, usize)> = match self {
            Roles::World(n) => (0..*n).map(|i| ("worker".to_string(), i)).collect(),
            Roles::Named(roles) => {
                let mut seen = std::collections::BTreeSet::new();
                for (r, _) in roles {
                    if r.is_empty() || !r.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                        return Err(invalid(format!("role name {r:?}: use letters, digits and _")));
                    }
                    if !seen.insert(r) {
                        return Err(invalid(format!("role {r:?} is named twice")));
                    }
                }
                roles.iter().flat_map(|(r, n)| (0..*n).map(move |i| (r.clone(), i))).collect()
            }
        };
        if slots.is_empty() {
            return Err(invalid("no members: give at least one role slot".into()));
        }
        Ok(slots)
    }
}

/// How to place the members.
#[derive(Clone, Debug, Default)]
pub struct DlOptions {
    /// What each member's worker must have (`--resources GPU=1` on the worker).
    pub resources: Vec<(String, f64)>,
    /// Also pick a tracker port on rank 0's host (`tracker` in the spec).
    pub tracker: bool,
    /// Bounds the wait for the port-probing gang (default 60 s).
    pub timeout: Option<Duration>,
}

/// One member of a started cluster.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    /// Its role (`"worker"` for a world).
    pub role: String,
    /// Its index within the role.
    pub index: usize,
    /// Its rank in the whole job (role order, then index).
    pub rank: usize,
    /// The worker it runs on (data address).
    pub worker: String,
    /// The host the other members reach it at.
    pub host: String,
    /// Its port, checked free on `host`.
    pub port: u16,
    /// The environment of its training process.
    pub env: BTreeMap<String, String>,
}

/// A started cluster: where each member is, and its environment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterSpec {
    /// The members, in rank order.
    pub members: Vec<Member>,
    /// TensorFlow's cluster: each role's `host:port` list.
    pub cluster: BTreeMap<String, Vec<String>>,
    /// A tracker `host:port` on rank 0's host, when asked.
    pub tracker: Option<String>,
}

impl ClusterSpec {
    /// The number of members.
    pub fn world_size(&self) -> usize {
        self.members.len()
    }
}

rask_core::op! {
    /// Binds `count` ports on `host` (the OS picks free ones), then releases
    /// them for the training processes: the ports a DL member will use.
    /// `job` and `rank` make each probe its own task (keys are content
    /// addresses: equal arguments would be one task, or an old result).
    pub fn dl_free_ports(host: String, count: u64, job: String, rank: u64) -> Result<Vec<u16>, String> {
        let _ = (job, rank);
        free_ports(&host, count as usize)
    }
}

/// `count` distinct ports that bind on `host`, held together while chosen
/// so that they differ, then released.
fn free_ports(host: &str, count: usize) -> Result<Vec<u16>, String> {
    let held: Vec<std::net::TcpListener> = (0..count)
        .map(|_| std::net::TcpListener::bind((host, 0)))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot bind a port on {host}: {e}"))?;
    held.iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot read a bound port on {host}: {e}"))
}

/// The host part of a worker's data address (`host:port`, `[v6]:port`).
fn host_of(addr: &str) -> String {
    let a = addr.trim_start_matches("http://").trim_start_matches("https://");
    let host = a.rsplit_once(':').map_or(a, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']').to_string()
}

/// The running workers that have `resources`, in name order.
fn eligible(workers: Vec<WorkerInfo>, resources: &[(String, f64)]) -> Vec<WorkerInfo> {
    let mut ok: Vec<WorkerInfo> = workers
        .into_iter()
        .filter(|w| w.status == "running")
        .filter(|w| resources.iter().all(|(r, n)| w.resources.get(r).is_some_and(|have| have >= n)))
        .collect();
    ok.sort_by(|a, b| a.name.cmp(&b.name).then(a.addr.cmp(&b.addr)));
    ok
}

/// Starts a cluster of `roles` on `client`'s workers: one member per slot,
/// each on its own worker with `options.resources`, each with a port its
/// worker checked free. Nothing runs yet: the spec says where each member
/// goes and with which environment.
pub fn start_cluster(
    client: &Client,
    roles: &Roles,
    options: &DlOptions,
) -> Result<ClusterSpec, DlError> {
    let slots = roles.slots()?;
    let workers = eligible(client.workers()?, &options.resources);
    if workers.len() < slots.len() {
        let need = if options.resources.is_empty() {
            String::new()
        } else {
            format!(" with {:?}", options.resources)
        };
        return Err(DlError::Cluster {
            message: format!(
                "the job needs {} members on distinct workers{need}, but {} such worker(s) are running: start more workers (rask worker … --resources) or ask for fewer members",
                slots.len(),
                workers.len()
            ),
        });
    }
    let chosen = &workers[..slots.len()];
    // One probe per member, together, on its worker: rank 0 also picks the
    // tracker's port. Members on one host probe apart, so the OS may hand
    // out a released port twice: such a draw is made again.
    let timeout = options.timeout.unwrap_or(Duration::from_secs(60));
    let mut ports: Vec<Vec<u16>> = Vec::new();
    for attempt in 0..5 {
        ports = probe_ports(client, chosen, options.tracker, timeout)?;
        let mut seen = std::collections::HashSet::new();
        let clash = chosen
            .iter()
            .zip(&ports)
            .flat_map(|(w, p)| p.iter().map(move |p| (host_of(&w.addr), *p)))
            .any(|hp| !seen.insert(hp));
        if !clash {
            break;
        }
        if attempt == 4 {
            return Err(DlError::Cluster {
                message: "five port draws gave two members of one host the same port: is that host short of free ports?".into(),
            });
        }
    }
    let placed: Vec<(String, String, Vec<u16>)> =
        chosen.iter().zip(ports).map(|(w, p)| (w.addr.clone(), host_of(&w.addr), p)).collect();
    Ok(spec_of(&slots, &placed))
}

/// Binds ports on each chosen worker's host (a gang, so all at once).
fn probe_ports(
    client: &Client,
    chosen: &[WorkerInfo],
    tracker: bool,
    timeout: Duration,
) -> Result<Vec<Vec<u16>>, DlError> {
    let id = format!("dl-ports-{}", rask_core::key::unique_token().0);
    let gang: Vec<GangMember<Vec<u16>>> = chosen
        .iter()
        .enumerate()
        .map(|(rank, w)| GangMember {
            task: dl_free_ports(
                host_of(&w.addr),
                1 + u64::from(rank == 0 && tracker),
                id.clone(),
                rank as u64,
            ),
            worker: Some(w.addr.clone()),
        })
        .collect();
    let futures = client.submit_gang(&id, &gang)?;
    let deadline = std::time::Instant::now() + timeout;
    while !futures.iter().all(|f| f.done()) {
        if std::time::Instant::now() >= deadline {
            return Err(DlError::Cluster {
                message: format!(
                    "the port probes did not finish within {} s: are the chosen workers busy? {:?}",
                    timeout.as_secs(),
                    chosen.iter().map(|w| &w.name).collect::<Vec<_>>()
                ),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(client.gather(&futures)?)
}

/// The spec of members `slots` placed at `(worker, host, ports)` (rank order).
fn spec_of(slots: &[(String, usize)], placed: &[(String, String, Vec<u16>)]) -> ClusterSpec {
    let endpoint = |host: &str, port: u16| {
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    };
    let mut cluster: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for ((role, _), (_, host, ports)) in slots.iter().zip(placed) {
        cluster.entry(role.clone()).or_default().push(endpoint(host, ports[0]));
    }
    // Hosts in order of first appearance: NODE_RANK; members per host: LOCAL_*.
    let mut hosts: Vec<&str> = Vec::new();
    for (_, h, _) in placed {
        if !hosts.contains(&h.as_str()) {
            hosts.push(h);
        }
    }
    let world = slots.len();
    let (master_host, master_port) = (&placed[0].1, placed[0].2[0]);
    let tracker = placed[0].2.get(1).map(|&p| endpoint(master_host, p));
    let cluster_json = serde_json::to_value(&cluster).unwrap_or_default();
    let members = slots
        .iter()
        .zip(placed)
        .enumerate()
        .map(|(rank, ((role, index), (worker, host, ports)))| {
            let same_host: Vec<usize> = (0..world).filter(|&r| placed[r].1 == *host).collect();
            let local_rank = same_host.iter().position(|&r| r == rank).unwrap_or(0);
            let tf_config = serde_json::json!({
                "cluster": cluster_json,
                "task": {"type": role, "index": index},
            });
            let mut env = BTreeMap::from([
                ("TF_CONFIG".to_string(), tf_config.to_string()),
                ("MASTER_ADDR".to_string(), master_host.clone()),
                ("MASTER_PORT".to_string(), master_port.to_string()),
                ("RANK".to_string(), rank.to_string()),
                ("WORLD_SIZE".to_string(), world.to_string()),
                ("LOCAL_RANK".to_string(), local_rank.to_string()),
                ("LOCAL_WORLD_SIZE".to_string(), same_host.len().to_string()),
                (
                    "NODE_RANK".to_string(),
                    hosts.iter().position(|h| h == host).unwrap_or(0).to_string(),
                ),
                ("RASK_DL_ROLE".to_string(), role.clone()),
                ("RASK_DL_INDEX".to_string(), index.to_string()),
            ]);
            if let Some(t) = &tracker {
                env.insert("RASK_DL_TRACKER".to_string(), t.clone());
            }
            Member {
                role: role.clone(),
                index: *index,
                rank,
                worker: worker.clone(),
                host: host.clone(),
                port: ports[0],
                env,
            }
        })
        .collect();
    ClusterSpec { members, cluster, tracker }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_become_ranked_slots_and_bad_roles_are_refused() {
        let r = Roles::named([("chief", 1), ("worker", 2), ("ps", 1)]);
        let slots = r.slots().unwrap();
        let names: Vec<String> = slots.iter().map(|(r, i)| format!("{r}{i}")).collect();
        assert_eq!(names, ["chief0", "worker0", "worker1", "ps0"]);
        assert_eq!(Roles::World(3).slots().unwrap().len(), 3);
        for bad in [
            Roles::World(0),
            Roles::named([("worker", 0)]),
            Roles::named([("worker", 1), ("worker", 2)]),
            Roles::named([("bad role", 1)]),
        ] {
            assert!(matches!(bad.slots(), Err(DlError::Invalid { .. })), "{bad:?}");
        }
    }

    #[test]
    fn the_spec_gives_tensorflow_and_pytorch_environments() {
        let slots = Roles::named([("chief", 1), ("worker", 2)]).slots().unwrap();
        let placed = vec![
            ("10.0.0.1:4000".to_string(), "10.0.0.1".to_string(), vec![5001, 5002]),
            ("10.0.0.2:4000".to_string(), "10.0.0.2".to_string(), vec![5003]),
            ("10.0.0.2:4001".to_string(), "10.0.0.2".to_string(), vec![5004]),
        ];
        let spec = spec_of(&slots, &placed);
        assert_eq!(spec.cluster["chief"], ["10.0.0.1:5001"]);
        assert_eq!(spec.cluster["worker"], ["10.0.0.2:5003", "10.0.0.2:5004"]);
        assert_eq!(spec.tracker.as_deref(), Some("10.0.0.1:5002"));
        let m = &spec.members[2];
        let tf: serde_json::Value = serde_json::from_str(&m.env["TF_CONFIG"]).unwrap();
        assert_eq!(tf["task"]["type"], "worker");
        assert_eq!(tf["task"]["index"], 1);
        assert_eq!(tf["cluster"]["chief"][0], "10.0.0.1:5001");
        let env = |k: &str| m.env[k].as_str();
        assert_eq!(
            [env("MASTER_ADDR"), env("MASTER_PORT"), env("RANK"), env("WORLD_SIZE")],
            ["10.0.0.1", "5001", "2", "3"]
        );
        assert_eq!([env("LOCAL_RANK"), env("LOCAL_WORLD_SIZE"), env("NODE_RANK")], ["1", "2", "1"]);
        assert_eq!(spec.members[0].env["NODE_RANK"], "0");
        assert_eq!(spec.members[0].env["LOCAL_WORLD_SIZE"], "1");
    }

    #[test]
    fn hosts_come_from_data_addresses() {
        assert_eq!(host_of("10.1.2.3:8788"), "10.1.2.3");
        assert_eq!(host_of("http://node7:8788"), "node7");
        assert_eq!(host_of("[::1]:8788"), "::1");
    }

    #[test]
    fn free_ports_bind_and_differ() {
        let p = free_ports("127.0.0.1", 3).unwrap();
        assert_eq!(p.len(), 3);
        assert!(p[0] != p[1] && p[1] != p[2] && p[0] != p[2]);
        assert!(free_ports("203.0.113.77", 1).unwrap_err().contains("cannot bind"));
    }
}
