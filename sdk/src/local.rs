//! Local nodes: `mass node start` processes owned by this program, on
//! 127.0.0.1 with ports the OS picks. Dropping a [`LocalNode`] kills it.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use mass_protocol::api::{ENDPOINTS_FILE, NodeEndpoints};

use crate::Error;

/// How to start one local node.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// The `mass` executable.
    pub binary: PathBuf,
    pub data_dir: PathBuf,
    pub bootstrap: Vec<String>,
    pub network_key: Option<PathBuf>,
    pub config: Option<PathBuf>,
    /// Extra command-line arguments after `node start`.
    pub extra_args: Vec<String>,
    /// Where the node's stderr log goes; `None` inherits this process's.
    pub log_file: Option<PathBuf>,
    /// Environment variables set for the process, on top of this one's.
    pub env: Vec<(String, String)>,
}

impl NodeOptions {
    pub fn new(binary: impl Into<PathBuf>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            data_dir: data_dir.into(),
            bootstrap: Vec::new(),
            network_key: None,
            config: None,
            extra_args: Vec::new(),
            log_file: None,
            env: Vec::new(),
        }
    }
}

/// A running `mass` process.
#[derive(Debug)]
pub struct LocalNode {
    child: Option<Child>,
    options: NodeOptions,
    endpoints: NodeEndpoints,
}

impl LocalNode {
    /// Starts a node listening on 127.0.0.1 (random ports, no mDNS) and waits
    /// until it serves, at most `timeout`.
    pub fn spawn(options: NodeOptions, timeout: Duration) -> Result<Self, Error> {
        let mut child = Self::command(&options)?
            .spawn()
            .map_err(|e| Error::Launch(format!("cannot run {}: {e}", options.binary.display())))?;
        match wait_for_endpoints(&options.data_dir, &mut child, timeout) {
            Ok(endpoints) => Ok(Self { child: Some(child), options, endpoints }),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// The command line that starts this node; exposed so callers can wrap it
    /// (for example in `ip netns exec`).
    pub fn command(options: &NodeOptions) -> Result<Command, Error> {
        std::fs::create_dir_all(&options.data_dir)
            .map_err(|e| Error::Launch(format!("cannot create {}: {e}", options.data_dir.display())))?;
        // A stale file from an earlier run must not be mistaken for this one.
        let _ = std::fs::remove_file(options.data_dir.join(ENDPOINTS_FILE));
        let mut command = Command::new(&options.binary);
        command.args(["node", "start", "--data-dir"]).arg(&options.data_dir);
        command.args(["--listen", "/ip4/127.0.0.1/tcp/0", "--http", "127.0.0.1:0", "--no-mdns"]);
        for addr in &options.bootstrap {
            command.args(["--bootstrap", addr]);
        }
        if let Some(key) = &options.network_key {
            command.arg("--network-key").arg(key);
        }
        if let Some(config) = &options.config {
            command.arg("--config").arg(config);
        }
        command.args(&options.extra_args);
        command.envs(options.env.iter().map(|(name, value)| (name, value)));
        command.stdin(Stdio::null()).stdout(Stdio::null());
        match &options.log_file {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| Error::Launch(format!("cannot open log {}: {e}", path.display())))?;
                command.stderr(file);
            }
            None => {
                command.stderr(Stdio::inherit());
            }
        }
        Ok(command)
    }

    pub fn endpoints(&self) -> &NodeEndpoints {
        &self.endpoints
    }

    pub fn http_url(&self) -> &str {
        &self.endpoints.http_url
    }

    pub fn peer_id(&self) -> &str {
        &self.endpoints.peer_id
    }

    /// An address other nodes can bootstrap from.
    pub fn listen_addr(&self) -> &str {
        self.endpoints.listen_addrs.first().map(String::as_str).unwrap_or_default()
    }

    pub fn options(&self) -> &NodeOptions {
        &self.options
    }

    /// The process id while the node runs (to stall it with a signal).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// Waits up to `timeout` for the process to exit by itself (after a
    /// drain, say); returns its exit code (`None` when a signal ended it),
    /// or `Err(())` when it still runs.
    #[allow(clippy::result_unit_err)]
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<i32>, ()> {
        let Some(child) = self.child.as_mut() else { return Ok(None) };
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Ok(status.code());
            }
            if Instant::now() >= deadline {
                return Err(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Asks the node to leave (SIGTERM: it hands its blobs, replicas and
    /// jobs to its peers first) and waits up to `timeout` before killing it.
    /// Returns whether it exited by itself.
    pub fn stop(&mut self, timeout: Duration) -> bool {
        self.signal_and_wait("-TERM", timeout)
    }

    /// Asks the node to stop at once, handing nothing off (SIGINT): for
    /// stopping a whole mesh, where there is nobody to hand anything to.
    /// Waits up to `timeout` before killing it; returns whether it exited
    /// by itself.
    pub fn stop_now(&mut self, timeout: Duration) -> bool {
        self.signal_and_wait("-INT", timeout)
    }

    fn signal_and_wait(&mut self, signal: &str, timeout: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill").arg(signal).arg(child.id().to_string()).status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }
}

impl Drop for LocalNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits for a starting node to write its endpoints file, or to die.
pub fn wait_for_endpoints(data_dir: &Path, child: &mut Child, timeout: Duration) -> Result<NodeEndpoints, Error> {
    let path = data_dir.join(ENDPOINTS_FILE);
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(bytes) = std::fs::read(&path)
            && let Ok(endpoints) = serde_json::from_slice::<NodeEndpoints>(&bytes)
        {
            return Ok(endpoints);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(Error::Launch(format!("node exited with {status} before serving")));
        }
        if Instant::now() >= deadline {
            return Err(Error::Launch(format!("node did not start within {timeout:?}")));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Finds the `mass` binary: `$MASS_BIN`, else next to (or one folder above)
/// the running executable, which is where cargo puts it beside examples.
pub fn find_mass_binary() -> Result<PathBuf, Error> {
    if let Some(path) = std::env::var_os("MASS_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(|e| Error::Launch(e.to_string()))?;
    exe.ancestors().skip(1).take(3).map(|dir| dir.join("mass")).find(|candidate| candidate.is_file()).ok_or_else(|| {
        Error::Launch("cannot find the `mass` binary; build it (cargo build -p mass-node) or set MASS_BIN".into())
    })
}
