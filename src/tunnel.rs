//! The user's tunnel (`tunnel.command`): started with the receiver, restarted with backoff
//! when it exits, stopped on quit. Its output is read to learn the public URL it was given.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use regex::Regex;
use serde::Serialize;
use tokio::io::AsyncRead;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::codec::{FramedRead, LinesCodec};
use tokio_util::sync::CancellationToken;

use crate::alerts::Event;

/// How many of the tunnel's last output lines are kept to show when it fails.
pub const KEPT_LINES: usize = 12;
/// Output lines longer than this are cut.
const MAX_LINE: usize = 2048;
/// The longest wait between restarts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A tunnel that stayed up this long restarts at once the next time it exits.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// The patterns that find the public address in the output of the tunnels we know. Each
/// captures the address in its first group.
pub const DEFAULT_URL_PATTERNS: [&str; 5] = [
    // bore: "listening at bore.pub:41234"
    r"listening at ([A-Za-z0-9.\-]+:\d+)",
    // Tailscale Funnel in TCP mode: "|-- tcp://desk.tail1234.ts.net:443 (TLS over TCP)" (the
    // lines after it give the machine's IP addresses, without the parenthesis)
    r"\|-- (tcp://[A-Za-z0-9.\-]+:\d+) \(TLS over TCP\)",
    // ngrok with --log stdout: "... url=https://name.ngrok.app" or "url=tls://name.ngrok.app"
    r"\burl=((?:https|tls|tcp)://[^\s]+)",
    // cloudflared quick tunnels: "https://random-words.trycloudflare.com"
    r"(https://[a-z0-9\-]+\.trycloudflare\.com)",
    // anything else that prints a bare https URL (no path: a tunnel prints its address, not
    // a link to its terms, as cloudflared's first line does)
    r#"(https://[A-Za-z0-9.\-]+(?::\d+)?)/?(?:[\s|"'),]|$)"#,
];

/// How sure a URL found in the output is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Match {
    /// Only the catch-all pattern matched: a later, surer match replaces it.
    Generic,
    /// A tunnel's own pattern (or `tunnel.url_pattern`) matched.
    Specific,
}

/// `[tunnel]`, validated.
#[derive(Debug, Clone)]
pub struct TunnelConfig {
    /// The command as written (`{port}` not yet replaced).
    pub command: String,
    /// The program and its arguments, split like a shell would.
    pub argv: Vec<String>,
    /// The pattern that finds the public address, when not one of the defaults.
    pub url_pattern: Option<Regex>,
}

impl PartialEq for TunnelConfig {
    fn eq(&self, other: &TunnelConfig) -> bool {
        self.command == other.command
            && self.url_pattern.as_ref().map(Regex::as_str) == other.url_pattern.as_ref().map(Regex::as_str)
    }
}

/// Where the tunnel is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TunnelPhase {
    /// No `tunnel.command` is set.
    Off,
    /// Started; its public address is not known yet.
    Starting,
    /// Running, with a public address.
    Up,
    /// It exited or could not start; it is restarted after a pause.
    Failed,
}

/// The tunnel's state, as the tray, the connect guide and `alertray check` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TunnelStatus {
    /// Where it is.
    pub phase: TunnelPhase,
    /// The command, as written.
    pub command: Option<String>,
    /// The public base URL (`https://host[:port]`) once it is up.
    pub url: Option<String>,
    /// Why it failed, for the user.
    pub reason: Option<String>,
    /// Its last output lines.
    pub last_lines: Vec<String>,
    /// How many times it was restarted.
    pub restarts: u32,
    /// Seconds until the next start, when it failed.
    pub retry_in_secs: Option<u64>,
}

impl TunnelStatus {
    /// No tunnel configured.
    pub fn off() -> TunnelStatus {
        TunnelStatus {
            phase: TunnelPhase::Off,
            command: None,
            url: None,
            reason: None,
            last_lines: Vec::new(),
            restarts: 0,
            retry_in_secs: None,
        }
    }

    /// One line for the tray menu.
    pub fn summary(&self) -> String {
        match self.phase {
            TunnelPhase::Off => "Tunnel: not managed by Alertray".into(),
            TunnelPhase::Starting => "Tunnel: starting...".into(),
            TunnelPhase::Up => format!("Tunnel: up at {}", self.url.as_deref().unwrap_or("?")),
            TunnelPhase::Failed => match self.retry_in_secs {
                Some(s) => format!("Tunnel: failed, retrying in {s} s"),
                None => "Tunnel: failed".into(),
            },
        }
    }
}

/// Turns what a tunnel printed into an `https://` base URL: `host:port` and `tls://`/`tcp://`
/// addresses become `https://`, a trailing slash is dropped.
pub fn normalize_url(found: &str) -> Option<String> {
    let found = found.trim();
    let rest = if let Some(r) = found.strip_prefix("https://") {
        r
    } else if let Some(r) = found.strip_prefix("tls://").or_else(|| found.strip_prefix("tcp://")) {
        r
    } else if found.contains("://") {
        return None;
    } else {
        found
    };
    let rest = rest.trim_end_matches(['/', '"', '\'', ',', '.']);
    let host = rest.split(['/', ':']).next().unwrap_or("");
    if host.is_empty() || !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-')) {
        return None;
    }
    Some(format!("https://{rest}"))
}

/// Finds the public URL in one output line, with `pattern` or the defaults.
pub fn find_url(line: &str, pattern: Option<&Regex>) -> Option<String> {
    find_url_match(line, pattern).map(|(url, _)| url)
}

/// Like [`find_url`], saying how sure the match is.
pub fn find_url_match(line: &str, pattern: Option<&Regex>) -> Option<(String, Match)> {
    let clean = strip_ansi(line);
    let found = |re: &Regex| re.captures(&clean).and_then(|c| c.get(1).or_else(|| c.get(0))).map(|m| m.as_str());
    match pattern {
        Some(re) => found(re).and_then(normalize_url).map(|u| (u, Match::Specific)),
        None => {
            let patterns = default_patterns();
            let last = patterns.len() - 1;
            patterns.iter().enumerate().find_map(|(i, re)| {
                let kind = if i == last { Match::Generic } else { Match::Specific };
                found(re).and_then(normalize_url).map(|u| (u, kind))
            })
        }
    }
}

fn default_patterns() -> &'static [Regex] {
    static PATTERNS: std::sync::OnceLock<Vec<Regex>> = std::sync::OnceLock::new();
    PATTERNS.get_or_init(|| DEFAULT_URL_PATTERNS.iter().map(|p| Regex::new(p).expect("built-in pattern")).collect())
}

/// Removes terminal colour codes, which some tunnels print even into a pipe.
pub fn strip_ansi(line: &str) -> String {
    static ANSI: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    ANSI.get_or_init(|| Regex::new(r"\x1b\[[0-9;?]*[A-Za-z]").expect("built-in pattern")).replace_all(line, "").into()
}

/// The file where the tunnel's public URL is kept while it is up, so that `alertray check`
/// finds it.
pub fn url_file(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("tunnel-url")
}

/// The tunnel's public URL as the running Alertray recorded it, if that Alertray still runs
/// (a URL left behind by a crash is stale: its address may belong to someone else by now).
pub fn recorded_url(data_dir: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(url_file(data_dir)).ok()?;
    let mut lines = text.lines();
    let url = lines.next()?.trim().to_string();
    if url.is_empty() {
        return None;
    }
    if let Some(pid) = lines.next().and_then(|p| p.trim().parse::<u32>().ok()) {
        if cfg!(target_os = "linux") && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            return None;
        }
    }
    Some(url)
}

/// A running tunnel supervisor.
pub struct Tunnel {
    /// The config it runs.
    pub config: TunnelConfig,
    status: watch::Receiver<TunnelStatus>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Tunnel {
    /// Starts `config.command` (with `{port}` replaced by `port`) and keeps it running.
    pub fn spawn(config: TunnelConfig, port: u16, data_dir: PathBuf, events: broadcast::Sender<Event>) -> Tunnel {
        let initial =
            TunnelStatus { phase: TunnelPhase::Starting, command: Some(config.command.clone()), ..TunnelStatus::off() };
        let (tx, status) = watch::channel(initial);
        let stop = CancellationToken::new();
        let sup =
            Supervisor { config: config.clone(), port, data_dir, events, status: Arc::new(tx), stop: stop.clone() };
        let task = tokio::spawn(sup.run());
        Tunnel { config, status, stop, task }
    }

    /// Its state now.
    pub fn status(&self) -> TunnelStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every state change.
    pub fn watch(&self) -> watch::Receiver<TunnelStatus> {
        self.status.clone()
    }

    /// Stops the tunnel process and waits until it is gone.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

struct Supervisor {
    config: TunnelConfig,
    port: u16,
    data_dir: PathBuf,
    events: broadcast::Sender<Event>,
    status: Arc<watch::Sender<TunnelStatus>>,
    stop: CancellationToken,
}

enum Ended {
    Stopped,
    Exited { reason: String, lasted: Duration },
}

impl Supervisor {
    /// The program's name only: its arguments may hold a secret (bore --secret, an ngrok
    /// authtoken), and logs must not.
    fn program(&self) -> &str {
        self.config.argv.first().map(String::as_str).unwrap_or("")
    }

    fn publish(&self, f: impl FnOnce(&mut TunnelStatus)) {
        self.status.send_modify(f);
        let _ = self.events.send(Event::TunnelChanged);
    }

    async fn run(self) {
        let mut backoff = Duration::from_secs(1);
        let mut lines: VecDeque<String> = VecDeque::with_capacity(KEPT_LINES);
        for attempt in 0u32.. {
            self.publish(|s| {
                s.phase = TunnelPhase::Starting;
                s.url = None;
                s.reason = None;
                s.retry_in_secs = None;
                s.restarts = attempt;
            });
            let ended = self.run_once(&mut lines).await;
            let _ = std::fs::remove_file(url_file(&self.data_dir));
            let (reason, lasted) = match ended {
                Ended::Stopped => {
                    self.publish(|s| {
                        s.phase = TunnelPhase::Off;
                        s.url = None;
                    });
                    return;
                }
                Ended::Exited { reason, lasted } => (reason, lasted),
            };
            if lasted >= STABLE_AFTER {
                backoff = Duration::from_secs(1);
            }
            tracing::warn!(program = %self.program(), "tunnel {reason}; restarting in {} s", backoff.as_secs());
            let kept: Vec<String> = lines.iter().cloned().collect();
            self.publish(|s| {
                s.phase = TunnelPhase::Failed;
                s.url = None;
                s.reason = Some(reason);
                s.last_lines = kept;
                s.retry_in_secs = Some(backoff.as_secs());
            });
            tokio::select! {
                _ = self.stop.cancelled() => {
                    self.publish(|s| s.phase = TunnelPhase::Off);
                    return;
                }
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Runs the command once, until it exits or the supervisor is stopped.
    async fn run_once(&self, lines: &mut VecDeque<String>) -> Ended {
        let port = self.port.to_string();
        let argv: Vec<String> = self.config.argv.iter().map(|a| a.replace("{port}", &port)).collect();
        let Some((program, args)) = argv.split_first() else {
            return Ended::Exited { reason: "has an empty command".into(), lasted: Duration::ZERO };
        };
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        // Its own process group, so that stopping it reaches what it started (a `sh -c`
        // wrapper's children, a helper it forks).
        #[cfg(unix)]
        cmd.process_group(0);
        let started = tokio::time::Instant::now();
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let hint =
                    if e.kind() == std::io::ErrorKind::NotFound { " (is it installed and on PATH?)" } else { "" };
                return Ended::Exited {
                    reason: format!("could not start `{program}`: {e}{hint}"),
                    lasted: Duration::ZERO,
                };
            }
        };
        // The tunnel leads a process group of its own (the group's id is its pid).
        let group = child.id();
        tracing::info!(program = %program, pid = group, "tunnel started");
        let (line_tx, mut line_rx) = mpsc::channel::<String>(64);
        if let Some(out) = child.stdout.take() {
            tokio::spawn(forward_lines(out, line_tx.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(forward_lines(err, line_tx.clone()));
        }
        drop(line_tx);
        let mut up: Option<Match> = None;
        let status = loop {
            tokio::select! {
                _ = self.stop.cancelled() => {
                    stop_child(&mut child).await;
                    tracing::info!(program = %self.program(), "tunnel stopped");
                    return Ended::Stopped;
                }
                Some(line) = line_rx.recv() => self.on_line(line, lines, &mut up),
                status = child.wait() => break status,
            }
        };
        // What the tunnel started may outlive it (a wrapper script's helpers): ask them to go
        // too, or every restart would leave another set behind, perhaps still holding the old
        // tunnel open.
        #[cfg(unix)]
        if let Some(group) = group {
            signal_group(group, "-TERM").await;
        }
        // The last lines often say why it exited; read what is left (briefly: a grandchild
        // may still hold the pipe open).
        let drain = async {
            while let Some(line) = line_rx.recv().await {
                self.on_line(line, lines, &mut up);
            }
        };
        let _ = tokio::time::timeout(Duration::from_millis(500), drain).await;
        #[cfg(unix)]
        if let Some(group) = group {
            signal_group(group, "-KILL").await;
        }
        let reason = match status {
            Ok(s) => format!("exited ({s})"),
            Err(e) => format!("could not be waited for: {e}"),
        };
        Ended::Exited { reason, lasted: started.elapsed() }
    }

    fn on_line(&self, line: String, lines: &mut VecDeque<String>, up: &mut Option<Match>) {
        let clean = strip_ansi(&line);
        tracing::debug!(target: "alertray::tunnel::output", "{clean}");
        if lines.len() == KEPT_LINES {
            lines.pop_front();
        }
        lines.push_back(clean.clone());
        // Once a sure match is in, the rest of the output is only kept; a catch-all match is
        // replaced by a sure one that comes later.
        let found = match *up {
            Some(Match::Specific) => None,
            seen => find_url_match(&clean, self.config.url_pattern.as_ref()).filter(|(_, m)| Some(*m) > seen),
        };
        let kept: Vec<String> = lines.iter().cloned().collect();
        match found {
            Some((url, sure)) => {
                *up = Some(sure);
                let record = format!("{url}\n{}\n", std::process::id());
                if let Err(e) = crate::config::write_private_replace(&url_file(&self.data_dir), &record) {
                    tracing::warn!("cannot record the tunnel URL: {e}");
                }
                tracing::info!(program = %self.program(), %url, "tunnel is up");
                self.publish(|s| {
                    s.phase = TunnelPhase::Up;
                    s.url = Some(url);
                    s.last_lines = kept;
                });
            }
            None => self.status.send_modify(|s| s.last_lines = kept),
        }
    }
}

/// Asks the tunnel and what it started to exit (SIGTERM to its process group, so that it can
/// tell its server it is going), and kills them if they have not within 3 seconds.
async fn stop_child(child: &mut tokio::process::Child) {
    #[cfg(unix)]
    if let Some(pid) = child.id() {
        let asked = signal_group(pid, "-TERM").await;
        if asked && tokio::time::timeout(Duration::from_secs(3), child.wait()).await.is_ok() {
            signal_group(pid, "-KILL").await;
            return;
        }
        signal_group(pid, "-KILL").await;
    }
    let _ = child.kill().await;
}

/// Sends `signal` (e.g. "-TERM") to every process in the group `group`; `true` if one got
/// it. (`kill(1)` rather than libc, to keep the crate free of `unsafe`.)
#[cfg(unix)]
async fn signal_group(group: u32, signal: &str) -> bool {
    tokio::process::Command::new("kill")
        .arg(signal)
        .arg("--")
        .arg(format!("-{group}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

async fn forward_lines(stream: impl AsyncRead + Unpin, tx: mpsc::Sender<String>) {
    let mut lines = FramedRead::new(stream, LinesCodec::new_with_max_length(MAX_LINE));
    while let Some(next) = lines.next().await {
        let line = match next {
            Ok(l) => l,
            Err(tokio_util::codec::LinesCodecError::MaxLineLengthExceeded) => "(a line too long to show)".into(),
            Err(_) => break,
        };
        if tx.send(line).await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_url_of_each_known_tunnel() {
        let cases = [
            ("2026-11-29T10:00:00Z  INFO bore_cli::client: listening at bore.pub:41234", "https://bore.pub:41234"),
            ("\x1b[2m2026\x1b[0m \x1b[32m INFO\x1b[0m \x1b[2mbore_cli::client\x1b[0m\x1b[2m:\x1b[0m listening at 127.0.0.1:5555", "https://127.0.0.1:5555"),
            (
                r#"t=2026-11-29T10:00:00+0000 lvl=info msg="started tunnel" obj=tunnels name=command_line addr=https://localhost:8443 url=tls://name.ngrok.app"#,
                "https://name.ngrok.app",
            ),
            ("lvl=info msg=\"started tunnel\" url=https://abcd-1-2.ngrok-free.app", "https://abcd-1-2.ngrok-free.app"),
            ("2026-11-29T10:00:00Z INF |  https://tall-green-words-here.trycloudflare.com                  |", "https://tall-green-words-here.trycloudflare.com"),
            ("Forwarding https://me.example.org:8443/ -> localhost", "https://me.example.org:8443"),
            ("Available on the internet:  https://desk.tail1234.ts.net/", "https://desk.tail1234.ts.net"),
            ("|-- tcp://desk.tail1234.ts.net:443 (TLS over TCP)", "https://desk.tail1234.ts.net:443"),
        ];
        for (line, want) in cases {
            assert_eq!(find_url(line, None).as_deref(), Some(want), "{line}");
        }
        for line in [
            "INFO connecting to bore.pub",
            "",
            "proxying to http://localhost:8443",
            // Tailscale's lines for the machine's addresses and for the local target
            "|-- tcp://100.101.102.103:443",
            "|--> tcp://localhost:8443",
            // --tls-terminated-tcp forwards plain TCP, which this HTTPS receiver cannot serve
            "|-- tcp://desk.tail1234.ts.net:443 (TLS terminated)",
            "listening at :80",
            // cloudflared's first lines link to its terms and its docs, not to the tunnel.
            "2026-11-29T10:00:00Z INF Thank you for trying Cloudflare Tunnel. Doing so, without a Cloudflare account, is a quick way to experiment and try it out. However, be aware that these account-less Tunnels have no uptime guarantee, are subject to the Cloudflare Online Services Terms of Use (https://www.cloudflare.com/website-terms/), and Cloudflare reserves the right to investigate your use of Tunnels for violations of such terms. If you intend to use Tunnels in production you should use a pre-created named tunnel by following: https://developers.cloudflare.com/cloudflare-one/connections/connect-networks",
        ] {
            assert_eq!(find_url(line, None), None, "{line}");
        }
    }

    #[test]
    fn a_configured_pattern_replaces_the_defaults() {
        let re = Regex::new(r"public: (\S+)").unwrap();
        assert_eq!(find_url("public: tcp://frp.example:7001", Some(&re)).as_deref(), Some("https://frp.example:7001"));
        assert_eq!(find_url("listening at bore.pub:1", Some(&re)), None);
    }

    #[test]
    fn normalize_refuses_what_is_not_a_host() {
        assert_eq!(normalize_url("http://plain.example"), None);
        assert_eq!(normalize_url("https://"), None);
        assert_eq!(normalize_url("bad host:1"), None);
        assert_eq!(normalize_url("https://a.example/").as_deref(), Some("https://a.example"));
    }

    #[cfg(unix)]
    fn config(command: &str) -> TunnelConfig {
        TunnelConfig {
            command: command.into(),
            argv: shell_words::split(command).unwrap(),
            url_pattern: Some(Regex::new(r"at (\S+)").unwrap()),
        }
    }

    #[cfg(unix)]
    async fn wait_for(w: &mut watch::Receiver<TunnelStatus>, f: impl Fn(&TunnelStatus) -> bool) -> TunnelStatus {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                if f(&w.borrow_and_update()) {
                    return w.borrow().clone();
                }
                w.changed().await.unwrap();
            }
        })
        .await
        .expect("the tunnel did not reach the expected state")
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_real_process_is_read_restarted_with_backoff_and_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let (events, _) = broadcast::channel(16);
        // Prints its address (with the port substituted) then exits after a moment. stderr and
        // stdout are separate pipes read by separate tasks: lines written to both within the
        // same instant may arrive in either order, so each line comes a moment after the last.
        let t = Tunnel::spawn(
            config(
                "sh -c 'echo starting >&2; sleep 0.1; echo at tunnel.example:{port}; sleep 0.3; echo bye >&2; exit 3'",
            ),
            4321,
            dir.path().to_path_buf(),
            events,
        );
        let mut w = t.watch();
        let up = wait_for(&mut w, |s| s.phase == TunnelPhase::Up).await;
        assert_eq!(up.url.as_deref(), Some("https://tunnel.example:4321"));
        assert_eq!(recorded_url(dir.path()).as_deref(), Some("https://tunnel.example:4321"));
        // A record left by a process that no longer runs is ignored.
        let stale = dir.path().join("stale");
        std::fs::create_dir(&stale).unwrap();
        std::fs::write(url_file(&stale), "https://old.example:1\n4194303999\n").unwrap();
        assert_eq!(recorded_url(&stale), None);
        let failed = wait_for(&mut w, |s| s.phase == TunnelPhase::Failed).await;
        assert!(failed.reason.as_deref().unwrap().contains("exit status: 3"), "{failed:?}");
        assert_eq!(failed.last_lines, ["starting", "at tunnel.example:4321", "bye"]);
        assert_eq!(failed.retry_in_secs, Some(1));
        assert!(!url_file(dir.path()).exists(), "the URL is forgotten when the tunnel goes down");
        let again = wait_for(&mut w, |s| s.phase == TunnelPhase::Failed && s.restarts == 1).await;
        assert_eq!(again.retry_in_secs, Some(2), "the pause doubles");
        t.stop().await;
    }

    #[test]
    fn a_catch_all_match_is_less_sure_than_a_tunnels_own() {
        assert_eq!(
            find_url_match("Serving at https://x.example", None),
            Some(("https://x.example".into(), Match::Generic))
        );
        assert_eq!(
            find_url_match("|  https://a-b.trycloudflare.com  |", None),
            Some(("https://a-b.trycloudflare.com".into(), Match::Specific))
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_sure_match_replaces_an_earlier_catch_all_one() {
        let dir = tempfile::tempdir().unwrap();
        let (events, _) = broadcast::channel(16);
        let mut cfg = config("sh -c 'echo docs at https://docs.example; sleep 0.2; echo \"|  https://x-y.trycloudflare.com  |\"; exec sleep 60'");
        cfg.url_pattern = None;
        let t = Tunnel::spawn(cfg, 1, dir.path().to_path_buf(), events);
        let up = wait_for(&mut t.watch(), |s| s.url.as_deref() == Some("https://x-y.trycloudflare.com")).await;
        assert_eq!(up.phase, TunnelPhase::Up);
        t.stop().await;
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn stop_kills_the_process_and_a_missing_program_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let (events, _) = broadcast::channel(16);
        // The shell starts a grandchild (sleep in the background) and waits: stopping must
        // reach both.
        let cmd = format!("sh -c 'sleep 60 & echo $! > {}; echo at a.example:1; wait'", pid_file.display());
        let t = Tunnel::spawn(config(&cmd), 1, dir.path().to_path_buf(), events.clone());
        wait_for(&mut t.watch(), |s| s.phase == TunnelPhase::Up).await;
        let pid = std::fs::read_to_string(&pid_file).unwrap().trim().to_string();
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        t.stop().await;
        let left = still_running(&[pid]).await;
        assert!(left.is_empty(), "the tunnel's grandchild is gone after stop");

        let t = Tunnel::spawn(config("no-such-tunnel-program --x"), 1, dir.path().to_path_buf(), events.clone());
        let failed = wait_for(&mut t.watch(), |s| s.phase == TunnelPhase::Failed).await;
        let reason = failed.reason.unwrap();
        assert!(reason.contains("no-such-tunnel-program") && reason.contains("PATH"), "{reason}");
        t.stop().await;
    }

    /// Which of `pids` still run (neither gone nor a zombie) after up to 2 seconds.
    #[cfg(unix)]
    async fn still_running(pids: &[String]) -> Vec<String> {
        let running = |pid: &String| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            !stat.is_empty() && !stat.contains(") Z ")
        };
        for _ in 0..40 {
            if !pids.iter().any(running) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        pids.iter().filter(|p| running(p)).cloned().collect()
    }

    /// A tunnel that exits on its own leaves nothing running: what it started is ended before
    /// the restart, so restarts do not pile up old helpers.
    #[cfg(unix)]
    #[tokio::test]
    async fn what_a_tunnel_started_ends_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let (events, _) = broadcast::channel(16);
        // A wrapper that starts a helper in the background, says where it is, then exits.
        let cmd = format!("sh -c 'sleep 300 & echo $! >> {}; echo at a.example:1; sleep 0.2; exit 3'", pids.display());
        let t = Tunnel::spawn(config(&cmd), 1, dir.path().to_path_buf(), events);
        wait_for(&mut t.watch(), |s| s.phase == TunnelPhase::Failed && s.restarts >= 1).await;
        t.stop().await;
        let helpers: Vec<String> = std::fs::read_to_string(&pids).unwrap().lines().map(str::to_string).collect();
        assert!(helpers.len() >= 2, "{helpers:?}");
        let left = still_running(&helpers).await;
        assert!(left.is_empty(), "helpers of exited tunnels still run: {left:?}");
    }
}
