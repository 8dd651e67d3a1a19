//! Starting the binary as a newcomer or an operator does: an unusable data
//! directory ends it with one readable line, the log is plain when stderr is
//! not a terminal or JSON when asked, "listening" comes only once the server
//! serves, a bare port means loopback, and `--help` says each default once.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(30);

fn switchboard() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    // As a terminal-less service runs it: no NO_COLOR to hide colours that a
    // pipe should never get anyway.
    command.env_remove("NO_COLOR").env("RUST_LOG", "info").stdin(Stdio::null());
    command
}

/// Runs `command` to its end (at most [`PATIENCE`]: a server that starts
/// instead of failing is killed and the test fails).
fn run_to_end(mut command: Command) -> Output {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start switchboard");
    let started = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > PATIENCE {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!("still running after {PATIENCE:?}; its log:\n{}", String::from_utf8_lossy(&output.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// `serve` on ephemeral ports with a data directory below a plain file,
/// which no one (not even root) can create.
fn serve_on_unusable_data(extra: &[&str]) -> (Output, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, b"x").expect("write");
    let data = file.join("data");
    let mut command = switchboard();
    command.args(["serve", "--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--udp", "127.0.0.1:0", "--data"]);
    command.arg(&data).args(extra);
    let output = run_to_end(command);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stderr)
}

/// The OS's words for ENOTDIR, as the error would quote them.
fn not_a_directory() -> String {
    std::io::Error::from_raw_os_error(20).to_string()
}

#[test]
fn an_unusable_data_directory_ends_the_log_with_one_line_naming_each_cause_once() {
    let (output, stderr) = serve_on_unusable_data(&[]);
    assert!(!output.status.success(), "it must fail:\n{stderr}");
    assert!(output.stdout.is_empty(), "logs go to stderr: {:?}", String::from_utf8_lossy(&output.stdout));
    assert!(!stderr.contains('\x1b'), "no colours into a pipe:\n{stderr:?}");
    let last = stderr.lines().rev().find(|line| !line.trim().is_empty()).expect("a last line");
    assert!(last.contains("ERROR") && last.contains("switchboard stopped"), "{last}");
    assert!(last.contains("cannot use data directory") && last.contains("not-a-directory"), "{last}");
    let cause = not_a_directory();
    assert_eq!(stderr.matches(&cause).count(), 1, "the OS error exactly once in the log:\n{stderr}");
    assert_eq!(stderr.matches("cannot use data directory").count(), 1, "{stderr}");
    assert!(!stderr.contains("Caused by") && !stderr.contains("listening"), "{stderr}");
}

#[test]
fn json_logs_are_one_object_a_line_ending_with_the_error() {
    let (output, stderr) = serve_on_unusable_data(&["--log-format", "json"]);
    assert!(!output.status.success(), "{stderr}");
    let lines: Vec<Value> = stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: not JSON: {line}")))
        .collect();
    let last = lines.last().expect("at least the error");
    assert_eq!(last["level"], "ERROR", "{last}");
    let message = last["message"].as_str().expect("a message");
    assert!(message.contains("cannot use data directory") && message.contains(&not_a_directory()), "{message}");
}

#[test]
fn json_logs_put_each_field_at_the_top_level() {
    let server = Serving::start(&["--http", "127.0.0.1:0", "--tcp", "0", "--udp", "0", "--log-format", "json"]);
    let log = server.until_listening();
    for line in &log {
        let _: Value = serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: not JSON: {line}"));
    }
    let listening: Value = serde_json::from_str(log.last().expect("listening")).expect("JSON");
    assert_eq!(listening["level"], "INFO", "{listening}");
    let address: SocketAddr = listening["address"].as_str().expect("address field").parse().expect("an address");
    assert!(address.ip().is_loopback(), "{listening}");
}

/// A server started with `args`, its log read on a thread; killed on drop.
struct Serving {
    child: Child,
    lines: std::sync::mpsc::Receiver<String>,
    /// Its working directory.
    _dir: tempfile::TempDir,
}

impl Serving {
    fn start(args: &[&str]) -> Serving {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = switchboard()
            .arg("serve")
            .args(args)
            .args(["--storage", "memory"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start switchboard");
        let stderr = child.stderr.take().expect("stderr");
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                let _ = send.send(line);
            }
        });
        Serving { child, lines, _dir: dir }
    }

    /// Every log line up to and including the one that says it listens.
    fn until_listening(&self) -> Vec<String> {
        let mut seen = Vec::new();
        while !seen.last().is_some_and(|line: &String| line.contains("switchboard listening")) {
            seen.push(self.lines.recv_timeout(PATIENCE).expect("the server logs that it listens"));
        }
        seen
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_bare_port_listens_on_loopback_and_listening_comes_after_storage() {
    // Port 0 written bare: the system picks the port, on loopback.
    let server = Serving::start(&["--http", "0", "--tcp", "0", "--udp", "0"]);
    let log = server.until_listening();
    assert!(log.iter().any(|line| line.contains("storage ready")), "storage opens before listening: {log:#?}");
    let listening = log.last().expect("listening");
    assert!(listening.contains("tcp=127.0.0.1:") && listening.contains("udp=127.0.0.1:"), "{listening}");
    let field = listening.split_whitespace().find_map(|word| word.strip_prefix("address=")).expect("address");
    let address: SocketAddr = field.parse().expect("an address");
    assert!(address.ip().is_loopback() && address.is_ipv4() && address.port() != 0, "{listening}");
    let mut stream = TcpStream::connect(address).expect("the bare port is on loopback");
    std::io::Write::write_all(&mut stream, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("ask");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn a_listener_flag_that_is_no_address_is_refused_with_what_would_be() {
    let mut command = switchboard();
    command.args(["serve", "--tcp", "localhost"]);
    let output = run_to_end(command);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("--tcp") && stderr.contains("8080 means 127.0.0.1:8080"), "{stderr}");
}

#[test]
fn history_reset_help_says_its_default_once() {
    let mut command = switchboard();
    command.args(["history", "reset", "--help"]);
    let output = run_to_end(command);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    assert_eq!(help.matches("./switchboard-data").count(), 1, "{help}");
    assert!(help.contains("[default: ./switchboard-data]"), "{help}");
}
