//! The `msrp` command end to end: `recv` and `send` as separate processes on 127.0.0.1.
//!
//! No test waits for time to pass: `send` starts once `recv` printed its path (its first
//! line), and every wait has a generous limit only as a safety net against a hang.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};

const MSRP: &str = env!("CARGO_BIN_EXE_msrp");
/// Only a safety net: no test needs anywhere near this long.
const LIMIT: Duration = Duration::from_secs(60);

/// A fresh folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("msrp-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A running `msrp recv`: its lines as they come.
struct Recv {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

impl Recv {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(MSRP)
            .arg("recv")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (sender, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        let stderr = read_all_in_background(child.stderr.take().unwrap());
        Self { child, lines, stderr }
    }

    /// The next line it printed.
    fn line(&self) -> String {
        self.lines.recv_timeout(LIMIT).expect("recv printed a line in time")
    }

    /// Its first line: the path to send to (`--json` or not).
    fn path(&self) -> String {
        let line = self.line();
        match serde_json::from_str::<Value>(&line) {
            Ok(event) => {
                assert_eq!(event["event"], "listening", "{line}");
                event["path"].as_str().unwrap().to_owned()
            }
            Err(_) => line,
        }
    }

    /// Waits for it to exit: its status, the lines not read yet, and standard error.
    fn finish(mut self) -> (ExitStatus, Vec<String>, String) {
        let status = wait(&mut self.child);
        let rest = self.lines.iter().collect();
        let stderr = self.stderr.recv_timeout(LIMIT).unwrap();
        (status, rest, stderr)
    }
}

impl Drop for Recv {
    fn drop(&mut self) {
        // A test that failed half-way leaves no process behind.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_all_in_background(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (sender, text) = mpsc::channel();
    std::thread::spawn(move || {
        let mut all = String::new();
        let _ = pipe.read_to_string(&mut all);
        let _ = sender.send(all);
    });
    text
}

/// Waits for `child` to exit (in a thread, so that the wait can have a limit), killing
/// it past the safety limit.
fn wait(child: &mut Child) -> ExitStatus {
    let pid = child.id();
    let (sender, exited) = mpsc::channel();
    std::thread::scope(|scope| {
        let waiter = scope.spawn(move || {
            let status = child.wait();
            let _ = sender.send(());
            status
        });
        if exited.recv_timeout(LIMIT).is_err() {
            // The waiting thread holds the child: end it by its id.
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            let _ = waiter.join();
            panic!("msrp did not exit within {LIMIT:?}");
        }
        waiter.join().unwrap().unwrap()
    })
}

/// Runs a command to its end: status, standard output, standard error.
fn run(args: &[&str]) -> (ExitStatus, String, String) {
    run_with_input(args, b"")
}

fn run_with_input(args: &[&str], input: &[u8]) -> (ExitStatus, String, String) {
    let mut child = Command::new(MSRP)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).unwrap();
    drop(stdin);
    let stdout = read_all_in_background(child.stdout.take().unwrap());
    let stderr = read_all_in_background(child.stderr.take().unwrap());
    let status = wait(&mut child);
    (status, stdout.recv_timeout(LIMIT).unwrap(), stderr.recv_timeout(LIMIT).unwrap())
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"))).collect()
}

fn events<'a>(lines: &'a [Value], name: &str) -> Vec<&'a Value> {
    lines.iter().filter(|line| line["event"] == name).collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data), "")
}

/// Hexadecimal pairs joined by `separator`.
fn hex(bytes: &[u8], separator: &str) -> String {
    bytes.iter().map(|byte| format!("{byte:02X}")).collect::<Vec<_>>().join(separator).to_lowercase()
}

/// A port nothing listens on: one the OS just handed out, freed again. Another process
/// could take it in between, but the OS hands out ephemeral ports in turn rather than
/// reusing the one just freed, and if it happened the test would fail with a visible
/// message (a different error line), never hang or pass wrongly. std has no way to hold
/// a TCP port without listening on it.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

const ALICE: &str = "msrp://127.0.0.1:2855/alice;tcp";

#[test]
fn text_messages_arrive_in_order_with_their_hashes() {
    let recv = Recv::start(&["--local-uri", "msrp://127.0.0.1:0/bob;tcp", "--remote-path", ALICE, "--count", "2"]);
    let path = recv.path();
    assert!(path.starts_with("msrp://127.0.0.1:") && path.ends_with("/bob;tcp"), "{path}");
    let (status, stdout, stderr) =
        run(&["send", "--remote-path", &path, "--local-uri", ALICE, "--text", "Hello world!", "--text", "Bye"]);
    assert!(status.success(), "{stdout}{stderr}");
    let sent: Vec<&str> = stdout.lines().filter(|line| line.starts_with("sent ")).collect();
    assert_eq!(sent.len(), 2, "{stdout}");
    assert!(sent[0].contains("size=12") && sent[0].contains("→ 200 OK"), "{stdout}");
    let (status, lines, stderr) = recv.finish();
    assert!(status.success(), "{stderr}");
    assert_eq!(lines[0], format!("bound to {ALICE}"));
    assert!(lines[1].contains("type=text/plain size=12"), "{lines:?}");
    assert!(lines[1].contains(&format!("sha256={}", sha256_hex(b"Hello world!"))), "{lines:?}");
    assert!(lines[1].ends_with("text=\"Hello world!\""), "{lines:?}");
    assert!(lines[2].ends_with("text=\"Bye\""), "{lines:?}");
}

#[test]
fn a_file_is_streamed_to_disk_and_reported_in_json() {
    let dir = scratch("file");
    let data: Vec<u8> = (0..3_000_001_u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let source = dir.join("payload.bin");
    std::fs::write(&source, &data).unwrap();
    let out = dir.join("received");
    let out_arg = out.to_str().unwrap();
    let recv = Recv::start(&[
        "--local-uri",
        "msrp://127.0.0.1:0/bob;tcp",
        "--remote-path",
        ALICE,
        "--out",
        out_arg,
        "--count",
        "2",
        "--json",
    ]);
    let path = recv.path();
    let (status, stdout, stderr) = run(&[
        "send",
        "--remote-path",
        &path,
        "--local-uri",
        ALICE,
        "--text",
        "here it comes",
        "--file",
        source.to_str().unwrap(),
        "--success-report",
        "--chunk-size",
        "100000",
        "--json",
    ]);
    assert!(status.success(), "{stdout}{stderr}");
    let lines = json_lines(&stdout);
    let sent = events(&lines, "sent");
    assert_eq!(sent.len(), 2, "{stdout}");
    assert_eq!(sent[1]["item"], 2);
    assert_eq!(sent[1]["code"], 200);
    assert_eq!(sent[1]["delivered"], true);
    assert_eq!(sent[1]["size"], data.len());
    assert_eq!(sent[1]["bytes_reported"], data.len(), "the success REPORTs cover the whole file");
    assert_eq!(sent[0]["bytes_reported"], "here it comes".len());

    let (status, rest, stderr) = recv.finish();
    assert!(status.success(), "{stderr}");
    let lines = json_lines(&rest.join("\n"));
    let messages = events(&lines, "message");
    assert_eq!(messages.len(), 2, "{rest:?}");
    assert_eq!(messages[0]["text"], "here it comes");
    let file = &messages[1];
    assert_eq!(file["message_id"], sent[1]["message_id"]);
    assert_eq!(file["content_type"], "application/octet-stream");
    assert_eq!(file["size"], data.len());
    assert_eq!(file["sha256"], sha256_hex(&data));
    let saved = PathBuf::from(file["file"].as_str().unwrap());
    assert_eq!(saved, out.join("payload.bin"), "saved under the name the sender gave");
    assert!(std::fs::read(&saved).unwrap() == data, "the saved file is the one sent");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn accept_any_binds_whoever_comes_and_ends_with_the_peer() {
    let recv = Recv::start(&["--local-uri", "msrp://127.0.0.1:0;tcp", "--accept-any"]);
    let path = recv.path();
    let (status, stdout, stderr) = run(&["send", "--remote-path", &path, "--text", "anyone there?"]);
    assert!(status.success(), "{stdout}{stderr}");
    let local_path = stdout.lines().next().unwrap().strip_prefix("local path ").unwrap().to_owned();
    let (status, lines, stderr) = recv.finish();
    assert!(status.success(), "ends with the session, successfully: {stderr}");
    assert_eq!(lines[0], format!("bound to {local_path}"), "bound the sender's made-up path");
    assert!(lines[1].ends_with("text=\"anyone there?\""), "{lines:?}");
    assert_eq!(lines[2], "session ended by the peer after 1 message");
}

#[test]
fn a_refused_connection_is_one_line() {
    let port = closed_port();
    let remote = format!("msrp://127.0.0.1:{port}/nobody;tcp");
    let (status, _, stderr) = run(&["send", "--remote-path", &remote, "--text", "hello?"]);
    assert_eq!(status.code(), Some(1));
    assert_eq!(stderr, format!("msrp: cannot connect to 127.0.0.1:{port}: connection refused\n"));
    let (status, stdout, _) = run(&["send", "--remote-path", &remote, "--text", "hello?", "--json"]);
    assert_eq!(status.code(), Some(1));
    let lines = json_lines(&stdout);
    let error = lines.last().unwrap();
    assert_eq!(error["event"], "error");
    assert_eq!(error["message"], format!("cannot connect to 127.0.0.1:{port}: connection refused"));
    assert_eq!(error["exit_code"], 1);
}

#[test]
fn a_stranger_gets_481_from_recv() {
    let recv = Recv::start(&["--local-uri", "msrp://127.0.0.1:0/bob;tcp", "--remote-path", ALICE]);
    let path = recv.path();
    let mallory = "msrp://127.0.0.1:2855/mallory;tcp";
    let (status, _, stderr) = run(&["send", "--remote-path", &path, "--local-uri", mallory, "--text", "hi"]);
    assert_eq!(status.code(), Some(1));
    assert_eq!(stderr, "msrp: the peer refused the session (481 Invalid From-Path)\n");
    // recv goes on waiting for the peer it was told of.
    let (status, _, stderr) = run(&["send", "--remote-path", &path, "--local-uri", ALICE, "--text", "it is me"]);
    assert!(status.success(), "{stderr}");
    let (status, lines, stderr) = recv.finish();
    assert!(status.success(), "{stderr}");
    assert!(lines.iter().any(|line| line.ends_with("text=\"it is me\"")), "{lines:?}");
    // Issue 12 §3 refusals: recv said whom it refused, and why.
    let refused = lines.iter().find(|line| line.starts_with("refused 127.0.0.1:")).expect("a refusal line");
    assert!(
        refused.ends_with(&format!(
            " (From-Path {mallory}, To-Path {path}): 481 Invalid From-Path; still waiting for the peer"
        )),
        "{refused}"
    );
}

#[test]
fn a_wrong_session_id_gets_481() {
    let recv = Recv::start(&["--local-uri", "msrp://127.0.0.1:0/bob;tcp", "--accept-any"]);
    let path = recv.path().replace("/bob;", "/bobby;");
    let (status, _, stderr) = run(&["send", "--remote-path", &path, "--text", "hi"]);
    assert_eq!(status.code(), Some(1));
    assert_eq!(stderr, "msrp: the peer refused the session (481 Invalid To-Path)\n");
}

#[test]
fn items_keep_their_command_line_order() {
    let dir = scratch("order");
    let source = dir.join("middle.txt");
    std::fs::write(&source, "the middle").unwrap();
    let recv = Recv::start(&["--local-uri", "msrp://127.0.0.1:0/bob;tcp", "--accept-any", "--json"]);
    let path = recv.path();
    let file = source.to_str().unwrap();
    let (status, stdout, stderr) = run(&[
        "send",
        "--remote-path",
        &path,
        "--text",
        "first",
        "--file",
        file,
        "--text",
        "last",
        "--content-type",
        "text/x-test",
    ]);
    assert!(status.success(), "{stdout}{stderr}");
    let (status, rest, stderr) = recv.finish();
    assert!(status.success(), "{stderr}");
    let lines = json_lines(&rest.join("\n"));
    let texts: Vec<&str> = events(&lines, "message").iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["first", "the middle", "last"]);
    assert!(events(&lines, "message").iter().all(|m| m["content_type"] == "text/x-test"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn recv_fails_when_the_session_ends_before_its_count() {
    let recv = Recv::start(&["--local-uri", "msrp://127.0.0.1:0/bob;tcp", "--accept-any", "--count", "3"]);
    let path = recv.path();
    let (status, _, _) = run(&["send", "--remote-path", &path, "--text", "only one"]);
    assert!(status.success());
    let (status, _, stderr) = recv.finish();
    assert_eq!(status.code(), Some(1));
    assert_eq!(stderr, "msrp: the session ended after 1 of 3 messages\n");
}

#[test]
fn bad_input_is_one_line_and_exit_code_2() {
    let (status, _, stderr) = run(&["send", "--remote-path", "msrp://127.0.0.1:99999/x;tcp", "--text", "hi"]);
    assert_eq!(status.code(), Some(2));
    assert_eq!(
        stderr,
        "msrp: invalid URI \"msrp://127.0.0.1:99999/x;tcp\": the port is not a number from 0 to 65535\n"
    );
    let (status, _, stderr) = run(&["recv", "--local-uri", "http://example.com/", "--accept-any"]);
    assert_eq!(status.code(), Some(2));
    assert_eq!(stderr, "msrp: invalid URI \"http://example.com/\": it does not start with msrp:// or msrps://\n");
    let (status, _, stderr) = run(&["send", "--remote-path", ALICE, "--file", "/no/such/file"]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.starts_with("msrp: cannot read /no/such/file: "), "{stderr}");
    let (status, _, stderr) = run(&["send", "--remote-path", "msrps://127.0.0.1:9/x;tcp", "--text", "hi"]);
    assert_eq!(status.code(), Some(2));
    assert_eq!(stderr, "msrp: an msrps:// peer needs --ca FILE or --fingerprint SHA256\n");
    let (status, _, _) = run(&["send", "--remote-path", ALICE]);
    assert_eq!(status.code(), Some(2), "clap: nothing to send");
}

/// A self-signed certificate for 127.0.0.1, written as PEM files; its SDP fingerprint.
fn certificate(dir: &Path) -> (PathBuf, PathBuf, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let certificate = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, certificate.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let fingerprint = hex(&Sha256::digest(certificate.der()), ":").to_uppercase();
    (cert_path, key_path, fingerprint)
}

#[test]
fn tls_with_a_pinned_fingerprint_and_a_tls_failure() {
    let dir = scratch("tls");
    let (cert, key) = {
        let (cert, key, fingerprint) = certificate(&dir);
        // Whoever passes the handshake and sends first is bound, under TLS too.
        let args = ["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()];
        let recv =
            Recv::start(&[["--local-uri", "msrps://127.0.0.1:0/bob;tcp", "--accept-any"].as_slice(), &args].concat());
        let path = recv.path();
        assert!(path.starts_with("msrps://"), "{path}");
        let (status, stdout, stderr) = run(&[
            "send",
            "--remote-path",
            &path,
            "--local-uri",
            "msrps://127.0.0.1:2855/alice;tcp",
            "--fingerprint",
            &fingerprint,
            "--text",
            "over TLS",
        ]);
        assert!(status.success(), "{stdout}{stderr}");
        let (status, lines, stderr) = recv.finish();
        assert!(status.success(), "{stderr}");
        assert!(lines[1].ends_with("text=\"over TLS\""), "{lines:?}");
        (cert, key)
    };
    // Another certificate than the one pinned: the handshake fails, one line.
    let (_, _, other_fingerprint) = certificate(&scratch("tls-other"));
    let recv = Recv::start(&[
        "--local-uri",
        "msrps://127.0.0.1:0/bob;tcp",
        "--remote-path",
        "msrps://127.0.0.1:2855/alice;tcp",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let path = recv.path();
    let port = path.split(['/', ':']).nth(4).unwrap().to_owned();
    let (status, _, stderr) = run(&[
        "send",
        "--remote-path",
        &path,
        "--local-uri",
        "msrps://127.0.0.1:2855/alice;tcp",
        "--fingerprint",
        &other_fingerprint,
        "--text",
        "never sent",
    ]);
    assert_eq!(status.code(), Some(1));
    assert_eq!(
        stderr,
        format!(
            "msrp: TLS with 127.0.0.1:{port} failed: the peer's certificate does not have the expected \
             fingerprint; compare --fingerprint with the a=fingerprint line of the peer's SDP\n"
        )
    );
    drop(recv);
    std::fs::remove_dir_all(dir).unwrap();
    let _ = std::fs::remove_dir_all(scratch("tls-other"));
}

/// Issue 12 §3: a self-signed certificate as common tools make it (a CA certificate)
/// checked with --ca: one plain sentence that says to pin it with --fingerprint, and no
/// Rust debug formatting (it was `invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))`).
#[test]
fn tls_with_a_self_signed_certificate_and_no_fingerprint_says_what_to_do() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let dir = scratch("tls-self-signed");
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let certificate = params.self_signed(&key).unwrap();
    let (cert, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, certificate.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let recv = Recv::start(&[
        "--local-uri",
        "msrps://127.0.0.1:0/bob;tcp",
        "--accept-any",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key_path.to_str().unwrap(),
    ]);
    let path = recv.path();
    let port = path.split(['/', ':']).nth(4).unwrap().to_owned();
    let (status, _, stderr) =
        run(&["send", "--remote-path", &path, "--ca", cert.to_str().unwrap(), "--text", "never sent"]);
    assert_eq!(status.code(), Some(1));
    assert_eq!(
        stderr,
        format!(
            "msrp: TLS with 127.0.0.1:{port} failed: the peer's certificate is a CA certificate (self-signed ones \
             often are), not one issued to a server; pass its fingerprint with --fingerprint instead of --ca\n"
        )
    );
    assert!(!stderr.contains("Other"), "{stderr}");
    drop(recv);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Issue 12 §3 (bind timeout wording): a peer that takes the connection and never
/// answers the binding SEND was not refusing anything; `send --timeout` bounds the wait.
#[test]
fn send_to_a_peer_that_never_answers_says_so_within_its_timeout() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    // Accepts and holds the connection, reading nothing and saying nothing.
    let holder = std::thread::spawn(move || silent.accept().map(|(stream, _)| stream));
    let started = std::time::Instant::now();
    let (status, _, stderr) = run(&[
        "send",
        "--remote-path",
        &format!("msrp://127.0.0.1:{port}/bob;tcp"),
        "--text",
        "hello?",
        "--timeout",
        "1",
    ]);
    assert_eq!(status.code(), Some(1));
    assert_eq!(stderr, format!("msrp: 127.0.0.1:{port} accepted the connection but did not answer within 1 s\n"));
    assert!(started.elapsed() < Duration::from_secs(20), "--timeout bounds the wait");
    drop(holder.join().unwrap());
}

/// A CA and a certificate it signed for 127.0.0.1, as PEM files: (CA, chain, key).
fn ca_signed(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
    let paths = (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server-key.pem"));
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, server.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

#[test]
fn tls_verified_against_a_ca() {
    let dir = scratch("tls-ca");
    let (ca, chain, key) = ca_signed(&dir);
    let recv = Recv::start(&[
        "--local-uri",
        "msrps://127.0.0.1:0/bob;tcp",
        "--remote-path",
        "msrps://127.0.0.1:2855/alice;tcp",
        "--tls-cert",
        chain.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--count",
        "1",
    ]);
    let path = recv.path();
    let (status, stdout, stderr) = run(&[
        "send",
        "--remote-path",
        &path,
        "--local-uri",
        "msrps://127.0.0.1:2855/alice;tcp",
        "--ca",
        ca.to_str().unwrap(),
        "--text",
        "verified",
    ]);
    assert!(status.success(), "{stdout}{stderr}");
    let (status, lines, stderr) = recv.finish();
    assert!(status.success(), "{stderr}");
    assert!(lines[1].ends_with("text=\"verified\""), "{lines:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn decode_prints_the_chunks_of_a_capture() {
    let capture = b"MSRP a786hjs2 SEND\r\nTo-Path: msrp://b.example.com:8888/9di4ea;tcp\r\n\
From-Path: msrp://a.example.com:7777/iau39;tcp\r\nMessage-ID: 87652\r\nByte-Range: 1-5/5\r\n\
Content-Type: text/plain\r\n\r\nHello\r\n-------a786hjs2$\r\n\
MSRP a786hjs2 200 OK\r\nTo-Path: msrp://a.example.com:7777/iau39;tcp\r\n\
From-Path: msrp://b.example.com:8888/9di4ea;tcp\r\n-------a786hjs2$\r\n";
    let (status, stdout, stderr) = run_with_input(&["decode"], capture);
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout, "a786hjs2 SEND body=5 flag=$\na786hjs2 200 OK body=0 flag=$\n");
    let (status, _, stderr) = run_with_input(&["decode"], b"MSRP x SEND\r\nTo-Path: nonsense");
    assert_eq!(status.code(), Some(1));
    assert!(stderr.starts_with("msrp: "), "{stderr}");
}

/// A peer that binds with a proper SEND, sends the first 100 bytes of a 1000-byte file
/// in a chunk, then part of the next chunk, and goes away: recv reports the message
/// incomplete, leaves no file behind and exits 1.
#[test]
fn a_peer_dying_mid_file_leaves_no_file_and_exit_code_1() {
    use std::net::TcpStream;
    let dir = scratch("dying");
    let out = dir.join("received");
    let recv =
        Recv::start(&["--local-uri", "msrp://127.0.0.1:0/bob;tcp", "--accept-any", "--out", out.to_str().unwrap()]);
    let path = recv.path();
    let address = path.strip_prefix("msrp://").unwrap().split('/').next().unwrap().to_owned();
    let mut peer = TcpStream::connect(&address).unwrap();
    peer.set_read_timeout(Some(LIMIT)).unwrap();
    let from = "msrp://127.0.0.1:2855/dying;tcp";
    let head = |transaction: &str, range: &str| {
        format!(
            "MSRP {transaction} SEND\r\nTo-Path: {path}\r\nFrom-Path: {from}\r\nMessage-ID: file1234\r\n\
Byte-Range: {range}\r\nContent-Type: application/octet-stream\r\n\
Content-Disposition: attachment; filename=\"dying.bin\"\r\n\r\n"
        )
    };
    let mut first = head("tra1", "1-100/1000").into_bytes();
    first.extend_from_slice(&[b'a'; 100]);
    first.extend_from_slice(b"\r\n-------tra1+\r\n");
    peer.write_all(&first).unwrap();
    // The 200 for that chunk: recv has bound the session and taken the chunk.
    let mut answer = Vec::new();
    let mut buffer = [0_u8; 1024];
    while !String::from_utf8_lossy(&answer).contains("-------tra1$\r\n") {
        let n = peer.read(&mut buffer).unwrap();
        assert!(n > 0, "recv closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buffer[..n]);
    }
    assert!(String::from_utf8_lossy(&answer).starts_with("MSRP tra1 200 OK\r\n"), "{answer:?}");
    // recv has the session in hand (the acceptor's bind is over) before the peer dies.
    assert_eq!(recv.line(), format!("bound to {from}"));
    let mut second = head("tra2", "101-1000/1000").into_bytes();
    second.extend_from_slice(&[b'b'; 300]);
    peer.write_all(&second).unwrap();
    // Gone: no more to write, and whatever recv says is read to its end.
    peer.shutdown(std::net::Shutdown::Write).unwrap();
    while peer.read(&mut buffer).is_ok_and(|n| n > 0) {}
    let (status, lines, stderr) = recv.finish();
    assert_eq!(status.code(), Some(1), "{lines:?} {stderr}");
    assert!(lines.iter().any(|line| line.starts_with("incomplete id=file1234: ")), "{lines:?} {stderr}");
    assert!(!lines.iter().any(|line| line.starts_with("message ")), "{lines:?}");
    // The connection ended inside a chunk: the session failed, and says so.
    assert!(stderr.starts_with("msrp: the session failed: "), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "the partial file is removed");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Sends SIGINT (Ctrl-C) to a process by its id.
fn interrupt(pid: u32) {
    let status = Command::new("kill").arg("-INT").arg(pid.to_string()).status().unwrap();
    assert!(status.success());
}

/// A peer written by hand on a socket: reads until `needle` has arrived (or the
/// connection ends), keeping everything read.
fn read_until(stream: &mut std::net::TcpStream, seen: &mut Vec<u8>, needle: &str) -> bool {
    let mut buffer = vec![0_u8; 64 * 1024];
    while !String::from_utf8_lossy(seen).contains(needle) {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => return false,
            Ok(n) => seen.extend_from_slice(&buffer[..n]),
        }
    }
    true
}

/// A hand-written MSRP peer listening for `send`: its URI, and the listener.
fn listening_peer() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let uri = format!("msrp://127.0.0.1:{}/hand;tcp", listener.local_addr().unwrap().port());
    (listener, uri)
}

/// The transaction id, To-Path and From-Path of each SEND start line and its headers in `text`.
fn sends(text: &str) -> Vec<(String, String, String)> {
    let lines: Vec<&str> = text.split("\r\n").collect();
    lines
        .windows(3)
        .filter_map(|window| {
            let tid = window[0].strip_prefix("MSRP ")?.strip_suffix(" SEND")?;
            let to = window[1].strip_prefix("To-Path: ")?;
            let from = window[2].strip_prefix("From-Path: ")?;
            Some((tid.to_owned(), to.to_owned(), from.to_owned()))
        })
        .collect()
}

fn ok_response((tid, to, from): &(String, String, String)) -> String {
    format!("MSRP {tid} 200 OK\r\nTo-Path: {from}\r\nFrom-Path: {to}\r\n-------{tid}$\r\n")
}

/// Issue 12 §3 refusals: recv prints every peer it turns away, with its address and the
/// reason (481 for a stranger, 400 for bytes that are not MSRP), and goes on waiting.
#[test]
fn issue12_recv_prints_each_refusal_with_the_peer_and_the_reason() {
    let recv = Recv::start(&["--local-uri", "msrp://127.0.0.1:0/bob;tcp", "--remote-path", ALICE, "--json"]);
    let path = recv.path();
    let mallory = "msrp://127.0.0.1:2855/mallory;tcp";
    let (status, _, _) = run(&["send", "--remote-path", &path, "--local-uri", mallory, "--text", "hi"]);
    assert_eq!(status.code(), Some(1));
    let refused: Value = serde_json::from_str(&recv.line()).unwrap();
    assert_eq!(refused["event"], "refused");
    assert!(refused["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{refused}");
    assert_eq!(refused["code"], 481);
    assert_eq!(refused["reason"], "Invalid From-Path");
    assert_eq!(refused["from_path"], mallory);
    assert_eq!(refused["to_path"], path);
    let address = path.strip_prefix("msrp://").unwrap().split('/').next().unwrap().to_owned();
    let mut garbage = std::net::TcpStream::connect(&address).unwrap();
    garbage.write_all(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n").unwrap();
    let refused: Value = serde_json::from_str(&recv.line()).unwrap();
    assert_eq!(refused["event"], "refused");
    assert_eq!(refused["code"], 400);
    assert!(refused["reason"].as_str().unwrap().starts_with("not MSRP: "), "{refused}");
    assert_eq!(refused["from_path"], Value::Null);
    let (status, _, stderr) = run(&["send", "--remote-path", &path, "--local-uri", ALICE, "--text", "it is me"]);
    assert!(status.success(), "{stderr}");
    let (status, rest, stderr) = recv.finish();
    assert!(status.success(), "{stderr}");
    assert_eq!(events(&json_lines(&rest.join("\n")), "message")[0]["text"], "it is me");
}

/// Issue 12 §3 trace: `--trace` prints every chunk either side sends and receives on
/// standard error; a long body is cut to its first 256 bytes with a count of the rest.
#[test]
fn issue12_trace_prints_every_chunk_sent_and_received() {
    let recv = Recv::start(&["--local-uri", "msrp://127.0.0.1:0/bob;tcp", "--accept-any", "--trace", "--count", "2"]);
    let path = recv.path();
    let long = "x".repeat(1000);
    let (status, stdout, stderr) =
        run(&["send", "--remote-path", &path, "--text", "short one", "--text", &long, "--trace", "--success-report"]);
    assert!(status.success(), "{stdout}{stderr}");
    assert!(stderr.contains(&format!("--- sent to {path} ---\nMSRP ")), "{stderr}");
    assert!(stderr.contains("Content-Type: text/plain\n\nshort one\n-------"), "{stderr}");
    assert!(
        stderr.contains(&format!("\n\n{}\n[… 744 more body bytes not shown]\n-------", "x".repeat(256))),
        "{stderr}"
    );
    assert!(stderr.contains(" 200 OK\n"), "the responses received: {stderr}");
    assert!(stderr.contains(" REPORT\n") && stderr.contains("Status: 000 200 OK\n"), "{stderr}");
    assert!(!stdout.contains("--- "), "the trace stays off standard output: {stdout}");
    let (status, _, stderr) = recv.finish();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains(&format!("--- received on {path} ---\nMSRP ")), "{stderr}");
    assert!(stderr.contains("short one\n-------"), "{stderr}");
    assert!(stderr.contains("--- sent to ") && stderr.contains(" REPORT\n"), "{stderr}");
}

/// Issue 12 §3 report timeout: `--report-timeout` replaces the fixed 30 s wait, and a
/// peer that never reports is named plainly. (This test waits its one second.)
#[test]
fn issue12_report_timeout_says_the_peer_sent_no_success_report() {
    let (listener, uri) = listening_peer();
    let peer = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut seen = Vec::new();
        let mut answered = 0;
        // Answers every SEND with 200 and never sends a REPORT.
        loop {
            let text = String::from_utf8_lossy(&seen).into_owned();
            for send in sends(&text).iter().skip(answered) {
                stream.write_all(ok_response(send).as_bytes()).unwrap();
                answered += 1;
            }
            let mut buffer = [0_u8; 4096];
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => return answered,
                Ok(n) => seen.extend_from_slice(&buffer[..n]),
            }
        }
    });
    let started = std::time::Instant::now();
    let (status, stdout, stderr) =
        run(&["send", "--remote-path", &uri, "--text", "hello", "--success-report", "--report-timeout", "1"]);
    assert_eq!(status.code(), Some(1), "{stdout}{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20), "the wait is --report-timeout, not 30 s");
    let line = stdout.lines().find(|line| line.starts_with("FAILED 1 ")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        line.ends_with("→ 200 OK, but the peer sent no success REPORT for it within 1 s (see --report-timeout)"),
        "{line}"
    );
    assert_eq!(peer.join().unwrap(), 2, "the binding SEND and the message");
    let (status, _, stderr) = run(&["send", "--remote-path", &uri, "--text", "x", "--report-timeout", "5"]);
    assert_eq!(status.code(), Some(2), "--report-timeout needs --success-report");
    assert!(stderr.contains("--success-report"), "{stderr}");
}

/// Issue 12 §3 success REPORT after the bytes are safe (RFC 4975 §7.1.2, §7.3): recv
/// sends the success REPORT once the message is on disk, and refuses one it skips with
/// a failure REPORT (413) where it used to confirm it.
#[test]
fn issue12_recv_reports_success_only_for_what_it_saved() {
    let dir = scratch("confirm");
    let out = dir.join("received");
    let recv = Recv::start(&[
        "--local-uri",
        "msrp://127.0.0.1:0/bob;tcp",
        "--accept-any",
        "--out",
        out.to_str().unwrap(),
        "--max-size",
        "50",
    ]);
    let path = recv.path();
    let address = path.strip_prefix("msrp://").unwrap().split('/').next().unwrap().to_owned();
    let mut peer = std::net::TcpStream::connect(&address).unwrap();
    peer.set_read_timeout(Some(LIMIT)).unwrap();
    let from = "msrp://127.0.0.1:2855/careful;tcp";
    let message = |tid: &str, message_id: &str, name: &str, body: &str| {
        format!(
            "MSRP {tid} SEND\r\nTo-Path: {path}\r\nFrom-Path: {from}\r\nMessage-ID: {message_id}\r\n\
Byte-Range: 1-{len}/{len}\r\nSuccess-Report: yes\r\nContent-Type: text/plain\r\n\
Content-Disposition: attachment; filename=\"{name}\"\r\n\r\n{body}\r\n-------{tid}$\r\n",
            len = body.len()
        )
    };
    peer.write_all(message("tra1", "small1", "small.txt", "saved").as_bytes()).unwrap();
    let mut seen = Vec::new();
    assert!(read_until(&mut peer, &mut seen, "Status: 000 200 OK\r\n"), "{}", String::from_utf8_lossy(&seen));
    // The REPORT came: the file is complete on disk already.
    assert_eq!(std::fs::read_to_string(out.join("small.txt")).unwrap(), "saved");
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(text.starts_with("MSRP tra1 200 OK\r\n") && text.contains("Byte-Range: 1-5/5\r\n"), "{text}");
    peer.write_all(message("tra2", "large1", "large.txt", &"y".repeat(100)).as_bytes()).unwrap();
    let mut seen = Vec::new();
    assert!(read_until(&mut peer, &mut seen, "-------"), "{}", String::from_utf8_lossy(&seen));
    assert!(read_until(&mut peer, &mut seen, " REPORT\r\n"), "{}", String::from_utf8_lossy(&seen));
    assert!(read_until(&mut peer, &mut seen, "$\r\n"), "{}", String::from_utf8_lossy(&seen));
    let text = String::from_utf8_lossy(&seen).into_owned();
    let report = &text[text.find(" REPORT\r\n").unwrap()..];
    assert!(report.contains("Message-ID: large1\r\nByte-Range: 1-100/100\r\n"), "{report}");
    assert!(report.contains("Status: 000 413 larger than the limit of 50 bytes\r\n"), "{report}");
    assert!(!report.contains("000 200"), "{report}");
    drop(peer);
    let (status, lines, stderr) = recv.finish();
    assert!(status.success(), "{lines:?} {stderr}");
    assert!(
        lines.iter().any(|line| line.starts_with("skipped id=large1: larger than the limit of 50 bytes")),
        "{lines:?}"
    );
    assert!(!out.join("large.txt").exists());
    std::fs::remove_dir_all(dir).unwrap();
}

/// Issue 12 §3 Ctrl-C on recv: the message in progress is dropped, its partial file
/// removed, and recv exits 130.
#[test]
fn issue12_ctrl_c_makes_recv_remove_partial_files_and_exit_130() {
    let dir = scratch("interrupt-recv");
    let out = dir.join("received");
    let recv =
        Recv::start(&["--local-uri", "msrp://127.0.0.1:0/bob;tcp", "--accept-any", "--out", out.to_str().unwrap()]);
    let path = recv.path();
    let address = path.strip_prefix("msrp://").unwrap().split('/').next().unwrap().to_owned();
    let mut peer = std::net::TcpStream::connect(&address).unwrap();
    peer.set_read_timeout(Some(LIMIT)).unwrap();
    let from = "msrp://127.0.0.1:2855/halfway;tcp";
    let head = format!(
        "MSRP tra1 SEND\r\nTo-Path: {path}\r\nFrom-Path: {from}\r\nMessage-ID: half1\r\nByte-Range: 1-100/1000\r\n\
Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"half.bin\"\r\n\r\n"
    );
    let mut first = head.into_bytes();
    first.extend_from_slice(&[b'a'; 100]);
    first.extend_from_slice(b"\r\n-------tra1+\r\n");
    peer.write_all(&first).unwrap();
    let mut seen = Vec::new();
    assert!(read_until(&mut peer, &mut seen, "-------tra1$\r\n"));
    assert_eq!(recv.line(), format!("bound to {from}"));
    // The 200 may come before recv's writer has the chunk: wait until its file is there.
    let started = std::time::Instant::now();
    while std::fs::read_dir(&out).unwrap().count() == 0 {
        assert!(started.elapsed() < LIMIT, "the partial file never appeared");
        std::thread::sleep(Duration::from_millis(5));
    }
    interrupt(recv.child.id());
    let (status, lines, stderr) = recv.finish();
    assert_eq!(status.code(), Some(130), "{lines:?} {stderr}");
    assert!(lines.iter().any(|line| line.starts_with("incomplete id=half1: ")), "{lines:?}");
    assert_eq!(stderr, "msrp: interrupted: the session is closed and 1 partial file is removed\n");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "the partial file is removed");
    std::fs::remove_dir_all(dir).unwrap();
}

/// Issue 12 §3 Ctrl-C on send (RFC 4975 §7.1: an interrupted message ends with `#`):
/// send aborts the file in progress, closes the session and exits 130.
#[test]
fn issue12_ctrl_c_makes_send_abort_the_message_with_a_hash_and_exit_130() {
    let dir = scratch("interrupt-send");
    let source = dir.join("big.bin");
    std::fs::write(&source, vec![7_u8; 20 << 20]).unwrap();
    let (listener, uri) = listening_peer();
    let mut send = Command::new(MSRP)
        .args(["send", "--remote-path", &uri, "--file", source.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = read_all_in_background(send.stdout.take().unwrap());
    let stderr = read_all_in_background(send.stderr.take().unwrap());
    let (mut stream, _) = listener.accept().unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    let mut seen = Vec::new();
    assert!(read_until(&mut stream, &mut seen, "$\r\n"), "the binding SEND");
    let binding = sends(&String::from_utf8_lossy(&seen)).remove(0);
    stream.write_all(ok_response(&binding).as_bytes()).unwrap();
    // The file's first chunk is on its way; this peer reads no further for now, so the
    // message cannot be over when Ctrl-C comes.
    assert!(read_until(&mut stream, &mut seen, "Content-Type: application/octet-stream\r\n\r\n"));
    interrupt(send.id());
    let saw_abort = {
        let mut rest = Vec::new();
        let mut buffer = vec![0_u8; 1 << 20];
        loop {
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => break false,
                Ok(n) => rest.extend_from_slice(&buffer[..n]),
            }
            let tail = &rest[rest.len().saturating_sub(64)..];
            if tail.ends_with(b"#\r\n") && String::from_utf8_lossy(tail).contains("-------") {
                break true;
            }
        }
    };
    assert!(saw_abort, "the message ended with a # end-line");
    drop(stream);
    let status = wait(&mut send);
    let (stdout, stderr) = (stdout.recv_timeout(LIMIT).unwrap(), stderr.recv_timeout(LIMIT).unwrap());
    assert_eq!(status.code(), Some(130), "{stdout}{stderr}");
    assert!(stdout.contains("FAILED 1 ") && stdout.contains("aborted: interrupted"), "{stdout}");
    assert_eq!(stderr, "msrp: interrupted: the message in progress was aborted and the session closed\n");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn demo_runs_end_to_end_with_a_small_file() {
    let (status, stdout, stderr) = run(&["demo", "--size", "1000003"]);
    assert!(status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("Alice → Bob   1000003-byte file: 200 OK, success REPORT for 1000003 bytes"), "{stdout}");
    assert!(stdout.contains("messages:     5 of 5 delivered (4 chat, 1 file), each confirmed by a success REPORT"));
    assert!(stdout.contains("verification: SHA-256 equal at both ends"), "{stdout}");
    assert!(stdout.ends_with("demo OK: everything delivered intact\n"), "{stdout}");
    let sent = stdout.lines().find_map(|line| line.strip_prefix("  SHA-256 sent     ")).unwrap();
    let received = stdout.lines().find_map(|line| line.strip_prefix("  SHA-256 received ")).unwrap();
    assert_eq!(received, format!("{sent} (1000003 bytes)"));
}

#[test]
fn chunk_size_over_16_mib_is_refused() {
    let (status, _, stderr) = run(&["send", "--remote-path", ALICE, "--text", "hi", "--chunk-size", "16777217"]);
    assert_eq!(status.code(), Some(2));
    assert!(stderr.contains("16777217 is not from 1 to 16777216 (16 MiB)"), "{stderr}");
}

/// After `--count`, recv ends the session but still prints every message that arrives
/// while it closes: whatever the sender saw answered with 200 is printed by recv.
#[test]
fn recv_prints_what_arrives_after_its_count() {
    let recv = Recv::start(&["--local-uri", "msrp://127.0.0.1:0/bob;tcp", "--accept-any", "--count", "1"]);
    let path = recv.path();
    let (_, stdout, _) = run(&["send", "--remote-path", &path, "--text", "one", "--text", "two", "--text", "three"]);
    let (status, lines, stderr) = recv.finish();
    assert!(status.success(), "{stderr}");
    let delivered: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with("sent ") && line.contains("→ 200"))
        .filter_map(|line| line.split(' ').find_map(|word| word.strip_prefix("id=")))
        .collect();
    assert!(!delivered.is_empty(), "{stdout}");
    for message_id in delivered {
        assert!(
            lines.iter().any(|line| line.starts_with(&format!("message id={message_id} "))),
            "{message_id}: {lines:?}"
        );
    }
}

/// The README's walk-through through a relay: `recv --relay` prints its full path (the
/// relay's Use-Path, then its own URI) first; `send --relay` to that path delivers a text
/// and a 3 MB file whose SHA-256 matches.
#[test]
fn recv_and_send_through_a_relay_with_credentials() {
    use msrp_tests::relay::net::TestRelay;
    use msrp_tests::relay::{DigestAuth, RelayScript};

    let relay = TestRelay::start(RelayScript::with_auth(DigestAuth::any_user("msrp-test", "secret")));
    let relay_uri = format!("msrp://127.0.0.1:{}", relay.address().port());
    let dir = scratch("relay");
    let password = dir.join("password");
    std::fs::write(&password, "secret\n").unwrap();
    let password = password.to_str().unwrap();
    let data: Vec<u8> = (0..3_000_000_u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let source = dir.join("payload.bin");
    std::fs::write(&source, &data).unwrap();
    let out = dir.join("received");

    let recv = Recv::start(&[
        "--relay",
        &relay_uri,
        "--relay-user",
        "bob",
        "--relay-password-file",
        password,
        "--accept-any",
        "--out",
        out.to_str().unwrap(),
        "--count",
        "2",
    ]);
    let path = recv.path();
    let uris: Vec<&str> = path.split(' ').collect();
    assert_eq!(uris.len(), 2, "the relay's URI, then recv's own: {path}");
    assert!(uris[0].starts_with(&format!("{relay_uri}/")), "{path}");
    let (status, stdout, stderr) = run(&[
        "send",
        "--remote-path",
        &path,
        "--relay",
        &relay_uri,
        "--relay-user",
        "alice",
        "--relay-password-file",
        password,
        "--text",
        "Hello through the relay",
        "--file",
        source.to_str().unwrap(),
    ]);
    assert!(status.success(), "{stdout}{stderr}");
    let (status, lines, stderr) = recv.finish();
    assert!(status.success(), "{stderr}");
    assert!(lines.iter().any(|line| line.ends_with("text=\"Hello through the relay\"")), "{lines:?}");
    let file_line = lines.iter().find(|line| line.contains("size=3000000")).expect("the file arrived");
    assert!(file_line.contains(&format!("sha256={}", sha256_hex(&data))), "{file_line}");
    assert_eq!(relay.stats().authorized, 2);
}

/// A wrong relay password is one line that says what to check; a missing one for a relay
/// that asks for it too.
#[test]
fn a_wrong_relay_password_says_what_to_check() {
    use msrp_tests::relay::net::TestRelay;
    use msrp_tests::relay::{DigestAuth, RelayScript};

    let relay = TestRelay::start(RelayScript::with_auth(DigestAuth::any_user("msrp-test", "secret")));
    let relay_uri = format!("msrp://127.0.0.1:{}", relay.address().port());
    let dir = scratch("relay-password");
    let password = dir.join("password");
    std::fs::write(&password, "wrong\n").unwrap();
    let (status, stdout, stderr) = run(&[
        "send",
        "--remote-path",
        ALICE,
        "--relay",
        &relay_uri,
        "--relay-user",
        "alice",
        "--relay-password-file",
        password.to_str().unwrap(),
        "--text",
        "hello",
    ]);
    assert_eq!(status.code(), Some(1), "{stdout}{stderr}");
    assert_eq!(
        stderr,
        format!(
            "msrp: the relay {relay_uri};tcp did not accept the user name and password; check --relay-user and the \
             password (--relay-password-file or MSRP_RELAY_PASSWORD)\n"
        )
    );
    let (status, _, stderr) = run(&["recv", "--relay", "msrps://127.0.0.1:9", "--accept-any"]);
    assert_eq!(status.code(), Some(2));
    assert_eq!(stderr, "msrp: an msrps:// relay needs --relay-ca FILE or --relay-fingerprint SHA256\n");
}
