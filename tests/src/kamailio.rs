//! Kamailio as a real third-party MSRP relay (RFC 4976), started on loopback for interop tests.
//!
//! [`Kamailio::start`] writes `tests/kamailio/kamailio-msrp.cfg.in` (embedded at compile time) into a
//! fresh directory under the system temp dir, with free loopback ports, a TLS key and certificate
//! made with rcgen, and runs the installed `kamailio` binary as a child process. Dropping the
//! value stops it and removes the directory. See `tests/kamailio/README.md` for the relay's quirks
//! and how to install it (`apt-get install -y kamailio kamailio-tls-modules`).

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The config template, filled in by [`Kamailio::start`].
const CONFIG_TEMPLATE: &str = include_str!("../kamailio/kamailio-msrp.cfg.in");

/// The digest realm Kamailio challenges with when started with [`KamailioOptions::auth`].
pub const REALM: &str = "msrp-test";
/// The password Kamailio accepts for any user name when started with [`KamailioOptions::auth`].
pub const PASSWORD: &str = "secret";
/// What every 200 to AUTH says in `Expires` unless [`KamailioOptions::expires`] asks otherwise.
pub const DEFAULT_EXPIRES: u32 = 3600;

/// How long Kamailio may take to accept connections, and to stop.
const START_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Tries with fresh ports when Kamailio exits at once (another process took a port we picked).
const START_ATTEMPTS: usize = 3;

/// Where Debian, other multiarch layouts and a source install put the modules.
const MODULE_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/kamailio/modules",
    "/usr/lib/aarch64-linux-gnu/kamailio/modules",
    "/usr/lib/kamailio/modules",
    "/usr/lib64/kamailio/modules",
    "/usr/local/lib64/kamailio/modules",
    "/usr/local/lib/kamailio/modules",
];
/// Where the binary lives when the user's PATH lacks the sbin directories.
const BINARY_DIRS: &[&str] = &["/usr/sbin", "/usr/local/sbin", "/sbin"];

/// What the relay offers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KamailioOptions {
    /// Also listen for MSRP over TLS (`msrps://`), with a fresh self-signed certificate.
    pub tls: bool,
    /// Challenge every AUTH with Digest (realm [`REALM`], any user, password [`PASSWORD`]).
    pub auth: bool,
    /// The grant in seconds every 200 to AUTH carries, and after which Kamailio forgets the
    /// Use-Path (1 to 2 s later); `None` is [`DEFAULT_EXPIRES`].
    pub expires: Option<u32>,
}

/// A running Kamailio MSRP relay on 127.0.0.1; stopped, and its directory removed, on drop.
pub struct Kamailio {
    child: Child,
    run_dir: PathBuf,
    tcp_port: u16,
    tls_port: Option<u16>,
    cert_pem: String,
    cert_der: Vec<u8>,
}

impl Kamailio {
    /// Starts Kamailio and returns once its TCP (and TLS) port accepts connections.
    ///
    /// Fails with a sentence naming what is missing when Kamailio (or its TLS module) is not
    /// installed, and with the relay's log when it does not come up within 10 s.
    pub fn start(options: KamailioOptions) -> Result<Self, String> {
        let binary = find_binary()?;
        let modules = find_modules(options.tls)?;
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(&binary, &modules, options) {
                Ok(kamailio) => return Ok(kamailio),
                Err(StartError::Fatal(error)) => return Err(error),
                Err(StartError::Exited(error)) => last_error = error,
            }
        }
        Err(last_error)
    }

    fn start_once(binary: &Path, modules: &Path, options: KamailioOptions) -> Result<Self, StartError> {
        let tcp_port = free_port().map_err(StartError::Fatal)?;
        let tls_port = if options.tls {
            // the kernel may hand the port it just freed out again
            let mut port = free_port().map_err(StartError::Fatal)?;
            while port == tcp_port {
                port = free_port().map_err(StartError::Fatal)?;
            }
            Some(port)
        } else {
            None
        };
        // Made last: every failure after it removes it.
        let run_dir = fresh_run_dir().map_err(StartError::Fatal)?;
        let config = CONFIG_TEMPLATE
            .replace("@RUN_DIR@", &run_dir.display().to_string())
            .replace("@TCP_PORT@", &tcp_port.to_string())
            .replace("@TLS_PORT@", &tls_port.unwrap_or(0).to_string())
            .replace("@MODULES_DIR@", &modules.display().to_string());
        let setup = || -> Result<(String, Vec<u8>), String> {
            write(&run_dir.join("kamailio-msrp.cfg"), &config)?;
            let key = rcgen::KeyPair::generate().map_err(|error| format!("cannot make a TLS key: {error}"))?;
            let certificate = rcgen::CertificateParams::new(vec![Ipv4Addr::LOCALHOST.to_string()])
                .and_then(|params| params.self_signed(&key))
                .map_err(|error| format!("cannot make a TLS certificate: {error}"))?;
            write(&run_dir.join("key.pem"), &key.serialize_pem())?;
            write(&run_dir.join("cert.pem"), &certificate.pem())?;
            write(&run_dir.join("tls.cfg"), &tls_config(&run_dir))?;
            Ok((certificate.pem(), certificate.der().to_vec()))
        };
        let (cert_pem, cert_der) = match setup() {
            Ok(made) => made,
            Err(error) => {
                let _ = fs::remove_dir_all(&run_dir);
                return Err(StartError::Fatal(error));
            }
        };
        let child = match spawn(binary, &run_dir, options) {
            Ok(child) => child,
            Err(error) => {
                let _ = fs::remove_dir_all(&run_dir);
                return Err(StartError::Fatal(error));
            }
        };
        let mut kamailio = Self { child, run_dir, tcp_port, tls_port, cert_pem, cert_der };
        kamailio.wait_until_listening()?;
        Ok(kamailio)
    }

    fn wait_until_listening(&mut self) -> Result<(), StartError> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut ports = vec![self.tcp_port];
        ports.extend(self.tls_port);
        while !ports.is_empty() {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(StartError::Exited(format!(
                    "kamailio exited at start ({status}); its log:\n{}",
                    self.log()
                )));
            }
            if Instant::now() >= deadline {
                return Err(StartError::Fatal(format!(
                    "kamailio did not accept connections within {} s; its log:\n{}",
                    START_TIMEOUT.as_secs(),
                    self.log()
                )));
            }
            let address = SocketAddr::from((Ipv4Addr::LOCALHOST, ports[0]));
            if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
                ports.remove(0);
            } else {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// The relay over TCP, as a client puts it in the To-Path of its AUTH: `msrp://127.0.0.1:PORT;tcp`.
    pub fn tcp_uri(&self) -> String {
        format!("msrp://127.0.0.1:{};tcp", self.tcp_port)
    }

    /// The relay over TLS (`msrps://127.0.0.1:PORT;tcp`); `None` unless started with [`KamailioOptions::tls`].
    pub fn tls_uri(&self) -> Option<String> {
        self.tls_port.map(|port| format!("msrps://127.0.0.1:{port};tcp"))
    }

    /// The address to connect to for MSRP over TCP.
    pub fn tcp_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.tcp_port))
    }

    /// The address to connect to for MSRP over TLS; `None` unless started with [`KamailioOptions::tls`].
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_port.map(|port| SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
    }

    /// The relay's self-signed certificate (SAN IP 127.0.0.1), PEM, for a TLS client to trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The same certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The directory holding the config, certificate, pid file, control socket and log.
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Everything Kamailio has logged so far (one line per MSRP frame it handled), for failure messages.
    pub fn log(&self) -> String {
        fs::read_to_string(self.run_dir.join("kamailio.log")).unwrap_or_else(|error| format!("(no log: {error})"))
    }

    /// Makes the relay close the connection of the client that AUTH'ed with `client_uri` as its
    /// From-Path (the last URI of it), as a relay dropping a client would.
    ///
    /// Sends the config's `DROP` control request over a connection of its own and returns once
    /// Kamailio has ordered the close (the client then reads the end of the stream). The client
    /// must have been granted an AUTH on this relay; dropping it again fails.
    pub fn drop_client(&self, client_uri: &str) -> Result<(), String> {
        let mut control = TcpStream::connect(self.tcp_addr())
            .map_err(|error| format!("cannot connect to kamailio to drop a client: {error}"))?;
        control.set_read_timeout(Some(START_TIMEOUT)).map_err(|error| error.to_string())?;
        let request =
            format!("MSRP drop1 DROP\r\nTo-Path: {}\r\nFrom-Path: {client_uri}\r\n-------drop1$\r\n", self.tcp_uri());
        control
            .write_all(request.as_bytes())
            .map_err(|error| format!("cannot ask kamailio to drop a client: {error}"))?;
        let mut answer = Vec::new();
        let mut buffer = [0; 1024];
        while !answer.ends_with(b"-------drop1$\r\n") {
            match control.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => answer.extend_from_slice(&buffer[..read]),
                Err(error) => return Err(format!("kamailio did not answer the drop request: {error}")),
            }
        }
        let answer = String::from_utf8_lossy(&answer);
        if answer.starts_with("MSRP drop1 200 ") {
            Ok(())
        } else {
            Err(format!("kamailio did not drop {client_uri}: {}", answer.lines().next().unwrap_or("no answer")))
        }
    }

    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // TERM makes the main process stop its workers and wait for them; a main process that
        // does not end in time is killed with its whole group (it made one at spawn).
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        let _ = self.child.wait();
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.stop();
        let _ = fs::remove_dir_all(&self.run_dir);
    }
}

impl std::fmt::Debug for Kamailio {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Kamailio")
            .field("pid", &self.child.id())
            .field("run_dir", &self.run_dir)
            .field("tcp_port", &self.tcp_port)
            .field("tls_port", &self.tls_port)
            .finish_non_exhaustive()
    }
}

enum StartError {
    /// Trying again cannot help.
    Fatal(String),
    /// Kamailio exited during start-up, most likely because a port was taken meanwhile.
    Exited(String),
}

fn find_binary() -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(BINARY_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join("kamailio"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            "kamailio is not installed (apt-get install -y kamailio kamailio-tls-modules); see tests/kamailio/README.md"
                .to_owned()
        })
}

fn find_modules(tls: bool) -> Result<PathBuf, String> {
    let dir = MODULE_DIRS
        .iter()
        .map(PathBuf::from)
        .find(|dir| dir.join("msrp.so").is_file())
        .ok_or_else(|| format!("kamailio's msrp module (msrp.so) is in none of {}", MODULE_DIRS.join(", ")))?;
    if tls && !dir.join("tls.so").is_file() {
        return Err("kamailio's TLS module is not installed (apt-get install -y kamailio-tls-modules)".to_owned());
    }
    Ok(dir)
}

fn fresh_run_dir() -> Result<PathBuf, String> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.subsec_nanos());
    let name = format!("msrp-kamailio-{}-{}-{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
    let dir = std::env::temp_dir().join(name);
    fs::create_dir(&dir).map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    Ok(dir)
}

/// A port nobody listens on right now (the kernel's pick); start-up retries if it is taken later.
fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|error| format!("cannot find a free loopback port: {error}"))
}

fn write(path: &Path, contents: &str) -> Result<(), String> {
    fs::write(path, contents).map_err(|error| format!("cannot write {}: {error}", path.display()))
}

fn tls_config(run_dir: &Path) -> String {
    let mut config = String::new();
    let dir = run_dir.display();
    let _ = write!(
        config,
        "[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n\
         private_key = {dir}/key.pem\ncertificate = {dir}/cert.pem\n\n\
         [client:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n"
    );
    config
}

fn spawn(binary: &Path, run_dir: &Path, options: KamailioOptions) -> Result<Child, String> {
    let log_path = run_dir.join("kamailio.log");
    let log = fs::File::create(&log_path).map_err(|error| format!("cannot create {}: {error}", log_path.display()))?;
    let log_too = log.try_clone().map_err(|error| format!("cannot share {}: {error}", log_path.display()))?;
    let mut command = Command::new(binary);
    command
        .arg("-f")
        .arg(run_dir.join("kamailio-msrp.cfg"))
        // foreground, log to stderr, our own pid file and run dir
        .args(["-DD", "-E"])
        .arg("-P")
        .arg(run_dir.join("kamailio.pid"))
        .arg("-Y")
        .arg(run_dir)
        .arg("-w")
        .arg(run_dir)
        .current_dir(run_dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_too)
        // its own process group, so that stopping it reaches every worker it forked
        .process_group(0);
    if options.tls {
        command.args(["-A", "WITH_TLS"]);
    }
    if options.auth {
        command.args(["-A", "WITH_AUTH"]);
    }
    command.args(["-A", &format!("MSRP_EXPIRES={}", options.expires.unwrap_or(DEFAULT_EXPIRES))]);
    command.spawn().map_err(|error| format!("cannot run {}: {error}", binary.display()))
}
