//! Netns: throwaway Linux network namespaces joined by veth pairs, for tests that need real,
//! separate network stacks (one per client, one for the SFU) on one machine.
//!
//! * [`Netns`] is one namespace (`ip netns add`), deleted on drop, also while a test panics.
//!   Its name carries the process id, so namespaces leaked by a killed test run are found and
//!   deleted by the next one ([`Netns::create`] sweeps them once per process).
//! * [`Star`] is a hub namespace (the SFU's) with one veth pair to each spoke namespace (a
//!   client's). Spoke `i` gets `198.18.<i+1>.2/24` (RFC 2544 benchmarking space) with the hub
//!   at `.1` as its default route, so every client reaches every hub address, and nothing
//!   ever touches the host's own interfaces: the veth ends are created directly inside the
//!   namespaces.
//! * Code runs inside a namespace on a thread that entered it ([`Netns::run`]), or on a tokio
//!   runtime whose every thread entered it ([`Netns::runtime`]); a socket belongs to the
//!   namespace of the thread that created it, so sockets bound there stay there even when
//!   used from elsewhere. Child processes: [`Netns::command`] (`ip netns exec`).
//! * [`Netns::shape`] puts a kernel `tc tbf` rate limit on an interface (this kernel has no
//!   `netem` qdisc; loss, delay and jitter come from the userspace [`Relay`](crate::Relay)).
//!
//! Needs root (CAP_SYS_ADMIN) and iproute2. Tests call [`available_or_skip`], which skips
//! with a message where namespaces cannot be made, except under `CI=true`, where it fails.

use std::fs::File;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use nix::sched::{CloneFlags, setns};

/// Prefix of every namespace this module creates.
const PREFIX: &str = "shopcall";

/// Why namespaces cannot be used here, or an operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetnsError {
    /// Not running as root.
    #[error("network namespaces need root (running as uid {uid})")]
    NotRoot {
        /// The effective uid.
        uid: u32,
    },
    /// A command could not be started (iproute2 missing?).
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// The OS error.
        source: io::Error,
    },
    /// A command failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// Opening the namespace file or entering the namespace failed.
    #[error("cannot enter namespace {name}: {reason}")]
    Enter {
        /// The namespace.
        name: String,
        /// The error.
        reason: String,
    },
    /// A thread or runtime inside the namespace could not be started.
    #[error("cannot start a runtime in namespace {name}: {reason}")]
    Runtime {
        /// The namespace.
        name: String,
        /// The error.
        reason: String,
    },
}

fn run_cmd(program: &str, args: &[&str]) -> Result<Output, NetnsError> {
    let command = format!("{program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| NetnsError::Spawn {
            command: command.clone(),
            source,
        })?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(NetnsError::Command {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

fn ip(args: &[&str]) -> Result<String, NetnsError> {
    run_cmd("ip", args).map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
}

/// Checks, once per process, that namespaces can be created here: root, iproute2, and a
/// probe namespace that can be added and deleted.
pub fn check_available() -> Result<(), String> {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    RESULT
        .get_or_init(|| {
            let uid = nix::unistd::geteuid();
            if !uid.is_root() {
                return Err(NetnsError::NotRoot { uid: uid.as_raw() }.to_string());
            }
            let probe = Netns::create("probe").map_err(|e| e.to_string())?;
            drop(probe);
            Ok(())
        })
        .clone()
}

/// Whether a test that needs namespaces can run. `false` (after printing why) where they
/// cannot be made; panics instead when the environment says `CI=true`, so CI never passes by
/// skipping.
///
/// # Panics
///
/// Under `CI=true` when namespaces are unavailable.
pub fn available_or_skip(test: &str) -> bool {
    match check_available() {
        Ok(()) => true,
        Err(why) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{test}: network namespaces are required under CI=true: {why}");
            }
            eprintln!("skipping {test}: network namespaces unavailable: {why}");
            false
        }
    }
}

/// Deletes namespaces left by earlier runs whose process is gone.
fn sweep_stale() {
    let Ok(list) = ip(&["netns", "list"]) else {
        return;
    };
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix(PREFIX).and_then(|r| r.strip_prefix('-')) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            tracing::info!(name, "deleting a namespace left by a dead test run");
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// One network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
    file: Arc<File>,
}

impl Netns {
    /// Creates a namespace named `shopcall-<pid>-<n>-<label>` with its loopback up.
    ///
    /// # Errors
    ///
    /// `ip netns add` failed (not root?), or the namespace file cannot be opened.
    pub fn create(label: &str) -> Result<Netns, NetnsError> {
        static SWEPT: OnceLock<()> = OnceLock::new();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        SWEPT.get_or_init(sweep_stale);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let label: String = label
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(16)
            .collect();
        let name = format!("{PREFIX}-{}-{n}-{label}", std::process::id());
        ip(&["netns", "add", &name])?;
        let file = match File::open(Self::path_of(&name)) {
            Ok(f) => Arc::new(f),
            Err(e) => {
                let _ = ip(&["netns", "del", &name]);
                return Err(NetnsError::Enter {
                    name,
                    reason: e.to_string(),
                });
            }
        };
        let ns = Netns { name, file };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    fn path_of(name: &str) -> PathBuf {
        Path::new("/run/netns").join(name)
    }

    /// Its name (for `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `ip -n <name> <args>` and returns its stdout.
    ///
    /// # Errors
    ///
    /// The command failed.
    pub fn ip(&self, args: &[&str]) -> Result<String, NetnsError> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// A command that runs `program` inside the namespace (`ip netns exec <name> <program>`);
    /// add arguments and spawn it as usual.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `f` on a new thread that has entered the namespace, and returns its result.
    /// Sockets `f` creates belong to the namespace wherever they are used later.
    ///
    /// # Errors
    ///
    /// The thread could not enter the namespace.
    ///
    /// # Panics
    ///
    /// If `f` panics, with its payload.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> Result<R, NetnsError> {
        let file = Arc::clone(&self.file);
        let name = self.name.clone();
        std::thread::scope(|s| {
            let joined = s
                .spawn(move || {
                    enter(&file, &name)?;
                    Ok(f())
                })
                .join();
            match joined {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// A multi-thread tokio runtime (`workers` worker threads, timers and I/O on) whose
    /// threads, blocking ones included, all run inside the namespace. Spawn on its
    /// [`handle`](NsRuntime::handle): tasks there create their sockets in the namespace.
    ///
    /// # Errors
    ///
    /// The runtime thread could not enter the namespace or build the runtime.
    pub fn runtime(&self, workers: usize) -> Result<NsRuntime, NetnsError> {
        let file = Arc::clone(&self.file);
        let name = self.name.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("netns-{}", self.name))
            .spawn(move || {
                let built = enter(&file, &name).and_then(|()| {
                    let start_file = Arc::clone(&file);
                    let start_name = name.clone();
                    tokio::runtime::Builder::new_multi_thread()
                        .worker_threads(workers.max(1))
                        .enable_all()
                        .thread_name(format!("ns-{name}"))
                        .on_thread_start(move || {
                            // Threads inherit the namespace of the thread that spawns them,
                            // and blocking threads may be spawned by a caller outside it:
                            // enter it explicitly either way.
                            if let Err(e) = enter(&start_file, &start_name) {
                                tracing::error!(%e, "runtime thread outside its namespace");
                            }
                        })
                        .build()
                        .map_err(|e| NetnsError::Runtime {
                            name: name.clone(),
                            reason: e.to_string(),
                        })
                });
                match built {
                    Ok(rt) => {
                        let _ = ready_tx.send(Ok(rt.handle().clone()));
                        rt.block_on(async {
                            let _ = stop_rx.await;
                        });
                        rt.shutdown_timeout(Duration::from_secs(2));
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            })
            .map_err(|e| NetnsError::Runtime {
                name: self.name.clone(),
                reason: e.to_string(),
            })?;
        let handle = ready_rx.recv().map_err(|_| NetnsError::Runtime {
            name: self.name.clone(),
            reason: "the runtime thread exited".to_owned(),
        })??;
        Ok(NsRuntime {
            handle,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Rate-limits what `dev` sends with a kernel token bucket (`tc qdisc replace ... tbf`):
    /// `rate_bps`, a bucket of one frame (or 10 ms at the rate, if larger), and a queue that
    /// holds `queue` worth of data before tail-dropping.
    ///
    /// # Errors
    ///
    /// `tc` failed.
    pub fn shape(&self, dev: &str, rate_bps: u64, queue: Duration) -> Result<(), NetnsError> {
        let burst = (rate_bps / 8 / 100).max(1600);
        let rate = format!("{rate_bps}bit");
        let burst = format!("{burst}b");
        let latency = format!("{}ms", queue.as_millis().max(1));
        let out = self
            .command("tc")
            .args(["qdisc", "replace", "dev", dev, "root", "tbf"])
            .args(["rate", &rate, "burst", &burst, "latency", &latency])
            .output()
            .map_err(|source| NetnsError::Spawn {
                command: "tc qdisc replace".to_owned(),
                source,
            })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(NetnsError::Command {
                command: format!("tc qdisc replace dev {dev} root tbf rate {rate}"),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    }

    /// Removes a rate limit set by [`shape`](Self::shape) (no error if there was none).
    pub fn unshape(&self, dev: &str) {
        let _ = self
            .command("tc")
            .args(["qdisc", "del", "dev", dev, "root"])
            .output();
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            tracing::warn!(name = %self.name, %e, "could not delete a test namespace");
        }
    }
}

fn enter(file: &File, name: &str) -> Result<(), NetnsError> {
    setns(file, CloneFlags::CLONE_NEWNET).map_err(|e| NetnsError::Enter {
        name: name.to_owned(),
        reason: e.to_string(),
    })
}

/// A tokio runtime whose threads live in a namespace; stopped (and its thread joined) on drop.
///
/// Dropping it from inside another runtime blocks that thread for up to 2 s while its tasks
/// stop; drop it after the peers and sockets on it are closed.
#[derive(Debug)]
pub struct NsRuntime {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl NsRuntime {
    /// Its handle: `handle().spawn(fut)` runs `fut` inside the namespace.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// Runs `fut` on this runtime and waits for its output from any async context.
    ///
    /// # Panics
    ///
    /// If `fut` panics, with its payload; if the runtime shut down under it.
    pub async fn run<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self.handle.spawn(fut).await {
            Ok(v) => v,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => panic!("namespace runtime stopped: {e}"),
        }
    }
}

impl Drop for NsRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One veth pair of a [`Star`]: a hub end and a spoke end, each with an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Veth {
    /// Interface name in the hub namespace.
    pub hub_dev: String,
    /// Its address.
    pub hub_ip: Ipv4Addr,
    /// Interface name in the spoke namespace.
    pub spoke_dev: String,
    /// Its address.
    pub spoke_ip: Ipv4Addr,
}

/// A hub namespace with a veth pair to each spoke namespace. Dropped (namespaces deleted,
/// veths with them) as a whole.
#[derive(Debug)]
pub struct Star {
    // Spokes first: they are deleted before the hub.
    spokes: Vec<(String, Netns, Veth)>,
    hub: Netns,
}

impl Star {
    /// A hub and one spoke per label, wired as the module docs describe.
    ///
    /// # Errors
    ///
    /// Creating a namespace, a veth pair, an address or a route failed; whatever was
    /// created is deleted again.
    pub fn new(hub_label: &str, spoke_labels: &[&str]) -> Result<Star, NetnsError> {
        static NEXT_VETH: AtomicU32 = AtomicU32::new(0);
        let hub = Netns::create(hub_label)?;
        let mut star = Star {
            spokes: Vec::new(),
            hub,
        };
        for (i, label) in spoke_labels.iter().enumerate() {
            let spoke = Netns::create(label)?;
            let subnet = u8::try_from(i + 1).map_err(|_| NetnsError::Runtime {
                name: star.hub.name.clone(),
                reason: "at most 254 spokes".to_owned(),
            })?;
            let n = NEXT_VETH.fetch_add(1, Ordering::Relaxed) % 1000;
            // At most 15 bytes: "sc" + 6 hex digits of the pid + 3 + 1.
            let base = format!("sc{:x}{n}", std::process::id() & 0xff_ffff);
            let veth = Veth {
                hub_dev: format!("{base}h"),
                hub_ip: Ipv4Addr::new(198, 18, subnet, 1),
                spoke_dev: format!("{base}s"),
                spoke_ip: Ipv4Addr::new(198, 18, subnet, 2),
            };
            // Both ends are created inside their namespaces: nothing appears on the host.
            ip(&[
                "link",
                "add",
                &veth.hub_dev,
                "netns",
                star.hub.name(),
                "type",
                "veth",
                "peer",
                "name",
                &veth.spoke_dev,
                "netns",
                spoke.name(),
            ])?;
            let hub_cidr = format!("{}/24", veth.hub_ip);
            let spoke_cidr = format!("{}/24", veth.spoke_ip);
            let gateway = veth.hub_ip.to_string();
            star.hub
                .ip(&["addr", "add", &hub_cidr, "dev", &veth.hub_dev])?;
            star.hub.ip(&["link", "set", &veth.hub_dev, "up"])?;
            spoke.ip(&["addr", "add", &spoke_cidr, "dev", &veth.spoke_dev])?;
            spoke.ip(&["link", "set", &veth.spoke_dev, "up"])?;
            spoke.ip(&["route", "add", "default", "via", &gateway])?;
            star.spokes.push(((*label).to_owned(), spoke, veth));
        }
        Ok(star)
    }

    /// The hub namespace.
    pub fn hub(&self) -> &Netns {
        &self.hub
    }

    /// A spoke by label: its namespace and its veth pair.
    pub fn spoke(&self, label: &str) -> Option<(&Netns, &Veth)> {
        self.spokes
            .iter()
            .find(|(l, _, _)| l == label)
            .map(|(_, ns, v)| (ns, v))
    }

    /// Every spoke, in creation order.
    pub fn spokes(&self) -> impl Iterator<Item = (&str, &Netns, &Veth)> {
        self.spokes.iter().map(|(l, ns, v)| (l.as_str(), ns, v))
    }
}
