//! A real `peergos-daemon` process on a free loopback port, for tests that
//! exercise the product as users run it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running daemon over a data directory; killed when dropped.
pub struct TempDaemon {
    binary: PathBuf,
    data_dir: PathBuf,
    /// The network namespace it runs in (`ip netns exec`), if not ours.
    netns: Option<String>,
    /// Its HTTP address (`--listen`).
    listen: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
    url: String,
    p2p: Vec<String>,
    peer_id: String,
    /// How long the last start took until the daemon was listening.
    pub startup: Duration,
}

impl TempDaemon {
    /// Starts `binary` on `data_dir` with `--listen 127.0.0.1:0` and the
    /// extra `args`, and waits for its "listening on" line.
    pub fn start(binary: impl Into<PathBuf>, data_dir: &Path, args: &[&str]) -> Self {
        Self::start_with_env(binary, data_dir, args, &[])
    }

    /// [`start`](Self::start), with variables set in the daemon's
    /// environment (kept for restarts).
    pub fn start_with_env(
        binary: impl Into<PathBuf>,
        data_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let mut daemon = Self::unstarted(binary.into(), data_dir, args, env);
        daemon.launch();
        daemon
    }

    /// [`start`](Self::start) inside the network namespace `netns` (with
    /// `ip netns exec`, which needs root), its HTTP API on `listen` (an
    /// address of that namespace) instead of loopback.
    pub fn start_in_netns(
        netns: &str,
        binary: impl Into<PathBuf>,
        data_dir: &Path,
        listen: &str,
        args: &[&str],
    ) -> Self {
        let mut daemon = Self::unstarted(binary.into(), data_dir, args, &[]);
        daemon.netns = Some(netns.to_string());
        daemon.listen = listen.to_string();
        daemon.launch();
        daemon
    }

    fn unstarted(binary: PathBuf, data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        TempDaemon {
            binary,
            data_dir: data_dir.to_path_buf(),
            netns: None,
            listen: "127.0.0.1:0".to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
            url: String::new(),
            p2p: Vec::new(),
            peer_id: String::new(),
            startup: Duration::ZERO,
        }
    }

    fn launch(&mut self) {
        let started = Instant::now();
        let mut command = match &self.netns {
            // `ip netns exec` execs the daemon, so the child is the daemon.
            Some(netns) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", netns]).arg(&self.binary);
                command
            }
            None => Command::new(&self.binary),
        };
        let mut child = command
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--listen", &self.listen])
            .args(if self.args.iter().any(|a| a == "--p2p-listen") {
                &[][..]
            } else {
                // A free loopback port, so daemons of parallel tests never
                // share the default p2p port.
                &["--p2p-listen", "/ip4/127.0.0.1/tcp/0"][..]
            })
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            // Quiet unless a test run asks for more (RUST_LOG syntax).
            .env(
                "RUST_LOG",
                std::env::var("PEERGOS_TEST_DAEMON_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.binary.display()));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // The p2p lines come first, then the HTTP address.
        self.p2p.clear();
        let line = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("the daemon did not report its address within 30 s");
            if let Some(addr) = line.strip_prefix("p2p address: ") {
                self.p2p.push(addr.to_string());
            } else if let Some(id) = line.strip_prefix("p2p peer id ") {
                self.peer_id = id.to_string();
            } else if line.contains("listening on") {
                break line;
            }
        };
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in the daemon's first line: {line}"));
        self.url = url.to_string();
        self.startup = started.elapsed();
        self.child = Some(child);
        // Keep reading (and dropping) later lines so the pipe never fills.
        std::thread::spawn(move || while rx.recv().is_ok() {});
    }

    /// The daemon's base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The daemon's p2p addresses, each ending in `/p2p/PEER_ID` (what
    /// another daemon's `--bootstrap` takes).
    pub fn p2p_addrs(&self) -> &[String] {
        &self.p2p
    }

    /// The daemon's peer id (what another daemon's `--pki-node` takes).
    pub fn peer_id(&self) -> &str {
        &self.peer_id
    }

    /// Stops the daemon with SIGTERM (a graceful shutdown) and waits.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("the daemon did not stop within 20 s of SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Kills the daemon at once (SIGKILL: a crash).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the daemon again on the same data directory (a new port).
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// The daemon's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for TempDaemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Serves `server` over HTTP on a free loopback port, on the current
/// runtime, for the rest of the test; returns its base URL.
pub async fn serve_on_loopback(server: std::sync::Arc<peergos_server::Server>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let url = format!("http://{}", listener.local_addr().expect("an address"));
    tokio::spawn(peergos_server::http::serve(
        server,
        listener,
        std::future::pending(),
    ));
    url
}

/// A server over `dir` on a free loopback port, served on a thread of its
/// own for the rest of the test; returns its base URL. For tests of
/// clients (the shell) that need real HTTP but not the daemon binary.
pub fn serve_in_thread(dir: &Path) -> String {
    let dir = dir.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        runtime.block_on(async move {
            let server = peergos_server::Server::open(peergos_server::Config::new(dir))
                .await
                .expect("opening the server");
            tx.send(serve_on_loopback(server).await)
                .expect("the test is waiting");
            std::future::pending::<()>().await
        });
    });
    rx.recv().expect("the server started")
}
