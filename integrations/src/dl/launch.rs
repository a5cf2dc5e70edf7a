//! [`launch`]: runs a command on each member's worker with its environment,
//! streams every line it prints to the client, and fails as a unit.
//!
//! Each member's task starts the command in its own process group, killed
//! as a group when the member stops, and connects back to a listener on the
//! client. If the worker itself dies, Linux's parent-death signal kills the
//! command, but not processes the command started (they are orphaned until
//! they exit; a watcher outside the worker would be needed). The channel:
//! frames of one kind byte (`O` stdout line, `E` stderr line, `X` exit
//! code), a u32 rank and a u32 length, then the payload (lines cut at
//! 64 KiB). The client sends one byte on a member's connection to stop it;
//! a member whose connection closes (the client went away) stops too.
//! The scheduler never relays the lines; the client forwards them to it in
//! batches, and it keeps the most recent for the dashboard's logs page.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rask_distributed::scheduler::logs::MemberLine;
use rask_distributed::{Client, GangMember};
use serde::{Deserialize, Serialize};

use super::{ClusterSpec, DlError};

const MAX_LINE: usize = 64 << 10;
/// TCP keepalive on the back channel: a peer host that vanishes without
/// closing (power loss, a cut link) is found dead after about
/// `IDLE + COUNT * INTERVAL` seconds, so members stop and the client
/// reports them, instead of waiting for the command to end.
const KEEPALIVE_IDLE_S: i32 = 10;
const KEEPALIVE_INTERVAL_S: i32 = 5;
const KEEPALIVE_COUNT: i32 = 3;
/// Lines of each member kept for the failure report.
const TAIL: usize = 20;
/// Lines go to the scheduler (for the dashboard) in batches of at most
/// this many, at least this often.
const DASHBOARD_BATCH: usize = 256;
const DASHBOARD_EVERY: Duration = Duration::from_millis(250);

/// Which stream a line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// What a member is told.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunJob {
    /// The program and its arguments.
    pub command: Vec<String>,
    /// Its environment, on top of the worker's.
    pub env: BTreeMap<String, String>,
    /// Its rank.
    pub rank: u32,
    /// The client's listener and the nonce to present.
    pub report: (String, [u8; 16]),
    /// Seconds between the stop signal and SIGKILL.
    pub grace_s: u64,
}

rask_core::op! {
    /// One member of a launched DL job (see `dl::launch`): runs the command,
    /// streams its lines to the client, returns its exit code.
    pub fn dl_run(job: RunJob, gang: String) -> Result<i32, String> {
        let _ = gang;
        run_member(&job)
    }
}

/// How a member's process ended, as the client saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct MemberExit {
    /// Its role.
    pub role: String,
    /// Its rank.
    pub rank: usize,
    /// Its exit code (`None`: no code came back: killed, or lost).
    pub code: Option<i32>,
    /// Its last lines (stdout and stderr, in arrival order).
    pub tail: Vec<String>,
}

/// The outcome of a [`launch`].
#[derive(Clone, Debug)]
pub struct LaunchReport {
    /// Every member, in rank order.
    pub members: Vec<MemberExit>,
    /// The first member that failed, if any; the others were then stopped.
    pub failed: Option<MemberExit>,
    /// Whether [`LaunchOptions::cancel`] stopped the job (members stopped
    /// by it do not count as failed).
    pub cancelled: bool,
}

/// Called with (role, rank, stream, line) for each line a member prints.
pub type OnLine<'a> = Box<dyn FnMut(&str, usize, Stream, &str) + 'a>;

/// How to launch.
pub struct LaunchOptions<'a> {
    /// Each line as it arrives (default: printed to stderr, prefixed by
    /// role and rank).
    pub on_line: Option<OnLine<'a>>,
    /// Seconds between stopping a member and killing it (default 5).
    pub grace: Duration,
    /// Whether the lines (and the command line, which names the job) go to
    /// the scheduler for its dashboard's Logs page (default: yes). Turn it
    /// off for jobs whose output or arguments the dashboard's viewers must
    /// not see.
    pub keep_for_dashboard: bool,
    /// Set it (from any thread, or from `on_line`) to stop the job: every
    /// member is stopped as on a failure, and [`launch`] returns once they
    /// are, with [`LaunchReport::cancelled`].
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Default for LaunchOptions<'_> {
    fn default() -> Self {
        LaunchOptions {
            on_line: None,
            grace: Duration::from_secs(5),
            keep_for_dashboard: true,
            cancel: None,
        }
    }
}

/// Runs `command` on every member of `spec` with its environment and waits
/// for all of them. When one exits with an error (or its task fails), the
/// others are stopped (SIGTERM to their process groups, SIGKILL after the
/// grace), and the report names the failed member's role, rank, exit code
/// and last lines.
pub fn launch(
    client: &Client,
    spec: &ClusterSpec,
    command: &[String],
    mut options: LaunchOptions<'_>,
) -> Result<LaunchReport, DlError> {
    if command.is_empty() {
        return Err(DlError::Invalid { message: "launch: the command is empty".into() });
    }
    let host = client.reachable_host().map_err(|message| DlError::Cluster { message })?;
    let listener = Listener::start(&host, spec.members.len())?;
    let gang = format!("dl-run-{}", rask_core::key::unique_token().0);
    let members: Vec<GangMember<i32>> = spec
        .members
        .iter()
        .map(|m| GangMember {
            task: dl_run(
                RunJob {
                    command: command.to_vec(),
                    env: m.env.clone(),
                    rank: m.rank as u32,
                    report: (listener.addr.clone(), listener.nonce),
                    grace_s: options.grace.as_secs().max(1),
                },
                gang.clone(),
            ),
            worker: Some(m.worker.clone()),
        })
        .collect();
    let futures = client.submit_gang(&gang, &members)?;
    let n = spec.members.len();
    let mut codes: Vec<Option<i32>> = vec![None; n];
    let mut tails: Vec<Vec<String>> = vec![Vec::new(); n];
    // Each member task's outcome, once its future is done.
    let mut results: Vec<Option<Result<i32, String>>> = vec![None; n];
    let mut failed: Option<usize> = None;
    let mut stop_sent_at: Option<Instant> = None;
    let mut cancelled = false;
    let cancel = options.cancel.clone();
    let mut all_done_at: Option<Instant> = None;
    // After a stop, members get the grace and this much more to report.
    let give_up = options.grace + Duration::from_secs(10);
    // Lines also go to the scheduler, in batches, for the dashboard's logs page.
    let job = format!("{gang}: {}", command.join(" "));
    let mut for_dashboard: Vec<MemberLine> = Vec::new();
    let mut last_sent = Instant::now();
    let keep = options.keep_for_dashboard;
    let send = |lines: &mut Vec<MemberLine>| {
        while !lines.is_empty() {
            // At most DASHBOARD_BATCH lines a message (each cut to 2 KiB).
            // The client still gets every line: the dashboard's copy is a
            // convenience, and a lost scheduler fails the members anyway.
            let batch: Vec<MemberLine> = lines.drain(..lines.len().min(DASHBOARD_BATCH)).collect();
            let _ = client.send_logs(&job, batch);
        }
    };
    let mut print = |role: &str, rank: usize, s: Stream, line: &str| match &mut options.on_line {
        Some(f) => f(role, rank, s, line),
        None => eprintln!("[{role} {rank}] {line}"),
    };
    loop {
        for ev in listener.take() {
            match ev {
                Event::Line(rank, s, text) => {
                    print(&spec.members[rank].role, rank, s, &text);
                    if keep {
                        for_dashboard.push(MemberLine {
                            role: spec.members[rank].role.clone(),
                            rank: rank as u32,
                            stderr: s == Stream::Stderr,
                            text: text.clone(),
                        });
                    }
                    tails[rank].push(text);
                    if tails[rank].len() > TAIL {
                        tails[rank].remove(0);
                    }
                }
                Event::Exit(rank, code) => {
                    codes[rank] = Some(code);
                    if code != 0 && failed.is_none() && !cancelled {
                        failed = Some(rank);
                    }
                }
            }
        }
        if for_dashboard.len() >= DASHBOARD_BATCH || last_sent.elapsed() >= DASHBOARD_EVERY {
            send(&mut for_dashboard);
            last_sent = Instant::now();
        }
        for (rank, f) in futures.iter().enumerate() {
            if results[rank].is_some() || !f.done() {
                continue;
            }
            let r = f.result().map_err(|e| e.to_string());
            match &r {
                Ok(0) => {}
                Ok(_) if cancelled => {}
                Ok(_) => failed = failed.or(Some(rank)),
                // Its worker died, its command could not start, or the gang failed.
                Err(e) => {
                    if codes[rank].is_none() {
                        tails[rank].push(e.clone());
                        if !cancelled {
                            failed = failed.or(Some(rank));
                        }
                    }
                }
            }
            results[rank] = Some(r);
        }
        if stop_sent_at.is_none() && cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
            cancelled = failed.is_none();
        }
        if (failed.is_some() || cancelled) && stop_sent_at.is_none() {
            listener.stop_all();
            stop_sent_at = Some(Instant::now());
        }
        if results.iter().all(Option::is_some) {
            // Wait briefly for the exit frames (the last lines come before them).
            let done_at = *all_done_at.get_or_insert_with(Instant::now);
            let frames_in =
                results.iter().zip(&codes).all(|(r, c)| !matches!(r, Some(Ok(_))) || c.is_some());
            if frames_in || done_at.elapsed() > Duration::from_secs(2) {
                break;
            }
        }
        if stop_sent_at.is_some_and(|t| t.elapsed() > give_up) {
            for (rank, r) in results.iter().enumerate() {
                if r.is_none() && codes[rank].is_none() {
                    tails[rank].push(format!(
                        "no exit reported within {} s of the stop: its worker {} may be hung; the command may still run there",
                        give_up.as_secs(),
                        spec.members[rank].worker
                    ));
                }
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for (rank, r) in results.iter().enumerate() {
        if let (None, Some(Ok(code))) = (codes[rank], r) {
            codes[rank] = Some(*code);
        }
        if failed.is_none() && !cancelled && codes[rank] != Some(0) {
            failed = Some(rank);
        }
    }
    send(&mut for_dashboard);
    listener.close();
    let members: Vec<MemberExit> = spec
        .members
        .iter()
        .enumerate()
        .map(|(rank, m)| MemberExit {
            role: m.role.clone(),
            rank,
            code: codes[rank],
            tail: tails[rank].iter().rev().take(TAIL).rev().cloned().collect(),
        })
        .collect();
    let failed = failed.map(|r| members[r].clone());
    Ok(LaunchReport { members, failed, cancelled })
}

enum Event {
    Line(usize, Stream, String),
    Exit(usize, i32),
}

/// The client's end: accepts members' connections and collects their frames.
struct Listener {
    addr: String,
    nonce: [u8; 16],
    events: Arc<Mutex<Vec<Event>>>,
    conns: Arc<Mutex<Conns>>,
    done: Arc<std::sync::atomic::AtomicBool>,
}

/// The members' connections, and whether they were told to stop (a member
/// that connects after that is told at once).
#[derive(Default)]
struct Conns {
    streams: Vec<TcpStream>,
    stopping: bool,
}

impl Listener {
    fn start(host: &str, members: usize) -> Result<Listener, DlError> {
        let io = |e: std::io::Error| DlError::Cluster {
            message: format!("cannot listen for the members' logs on {host}: {e}"),
        };
        let l = TcpListener::bind((host, 0)).map_err(io)?;
        l.set_nonblocking(true).map_err(io)?;
        let addr = l.local_addr().map_err(io)?.to_string();
        let nonce = rask_core::key::unique_token().0.to_le_bytes();
        let me = Listener {
            addr,
            nonce,
            events: Arc::default(),
            conns: Arc::default(),
            done: Arc::default(),
        };
        let (events, conns, done) = (me.events.clone(), me.conns.clone(), me.done.clone());
        std::thread::Builder::new()
            .name("dl-logs".into())
            .spawn(move || accept(l, nonce, members, events, conns, done))
            .map_err(io)?;
        Ok(me)
    }

    fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Tells every member to stop, those that connect later included.
    fn stop_all(&self) {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns.stopping = true;
        for c in conns.streams.iter_mut() {
            let _ = c.write_all(b"S");
        }
    }

    fn close(&self) {
        self.done.store(true, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().unwrap_or_else(|p| p.into_inner()).streams.iter() {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.close();
    }
}

fn accept(
    l: TcpListener,
    nonce: [u8; 16],
    members: usize,
    events: Arc<Mutex<Vec<Event>>>,
    conns: Arc<Mutex<Conns>>,
    done: Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering;
    while !done.load(Ordering::SeqCst) {
        match l.accept() {
            Ok((mut s, _)) => {
                let _ = s.set_nonblocking(false);
                keepalive(&s);
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let mut hello = [0u8; 20];
                if s.read_exact(&mut hello).is_err() || hello[..16] != nonce {
                    continue; // not a member of this launch: dropped unread
                }
                let rank =
                    u32::from_le_bytes([hello[16], hello[17], hello[18], hello[19]]) as usize;
                if rank >= members {
                    continue;
                }
                let _ = s.set_read_timeout(None);
                if let Ok(mut w) = s.try_clone() {
                    let mut conns = conns.lock().unwrap_or_else(|p| p.into_inner());
                    if conns.stopping {
                        let _ = w.write_all(b"S");
                    }
                    conns.streams.push(w);
                }
                let events = events.clone();
                std::thread::spawn(move || read_frames(s, rank, &events));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn read_frames(mut s: TcpStream, rank: usize, events: &Mutex<Vec<Event>>) {
    loop {
        let mut head = [0u8; 9];
        if s.read_exact(&mut head).is_err() {
            return;
        }
        let len = u32::from_le_bytes([head[5], head[6], head[7], head[8]]) as usize;
        if len > MAX_LINE + 16 {
            return; // a malformed peer: stop reading it
        }
        let mut body = vec![0u8; len];
        if s.read_exact(&mut body).is_err() {
            return;
        }
        let ev = match head[0] {
            b'O' => Event::Line(rank, Stream::Stdout, String::from_utf8_lossy(&body).into_owned()),
            b'E' => Event::Line(rank, Stream::Stderr, String::from_utf8_lossy(&body).into_owned()),
            b'X' if len == 4 => {
                Event::Exit(rank, i32::from_le_bytes([body[0], body[1], body[2], body[3]]))
            }
            _ => return,
        };
        events.lock().unwrap_or_else(|p| p.into_inner()).push(ev);
    }
}

/// A member: connects to the client, runs the command, streams its lines,
/// stops it when told or when the client goes, returns its exit code.
fn run_member(job: &RunJob) -> Result<i32, String> {
    let conn = TcpStream::connect(&job.report.0)
        .map_err(|e| format!("cannot reach the client's log listener {}: {e}", job.report.0))?;
    keepalive(&conn);
    // A client that vanished without closing must not block the command's
    // output forever: writes give up, and the pumps then only drain.
    conn.set_write_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
    let mut hello = job.report.1.to_vec();
    hello.extend_from_slice(&job.rank.to_le_bytes());
    let send = Sender::new(conn.try_clone().map_err(|e| e.to_string())?);
    send.write(&hello);
    let mut child = spawn(job)?;
    let pid = child.id() as i32;
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        pumps.push(pump(out, b'O', job.rank, send.clone()));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(pump(err, b'E', job.rank, send.clone()));
    }
    // Whether the group may still be signalled: true until the command is
    // about to be reaped. Its id cannot be reused before that, since the
    // leader stays a zombie until then.
    let signallable = Arc::new(Mutex::new(true));
    {
        let (mut conn, signallable, grace) = (conn, signallable.clone(), job.grace_s);
        // The lifeline: a stop byte, or the connection closing, stops the group.
        std::thread::spawn(move || {
            let mut b = [0u8; 1];
            let _ = conn.read(&mut b);
            stop_group(pid, Duration::from_secs(grace), &signallable);
        });
    }
    // Wait for the exit without reaping (WNOWAIT), kill what the command
    // left in its group (and with it the pipes' last writers), then reap.
    // SAFETY: waitid on our own child, into a zeroed siginfo.
    let waited = unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT)
    };
    {
        let mut may = signallable.lock().unwrap_or_else(|p| p.into_inner());
        if waited == 0 {
            // SAFETY: kill(2) on our child's group, whose leader is not reaped.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
        }
        *may = false;
    }
    let status = child.wait().map_err(|e| format!("waiting for the command: {e}"))?;
    // Output held by a process that left the group (setsid) is not waited for.
    let deadline = Instant::now() + Duration::from_secs(5);
    while pumps.iter().any(|p| !p.is_finished()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let code = status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        128 + status.signal().unwrap_or(0)
    });
    let mut frame = vec![b'X'];
    frame.extend_from_slice(&job.rank.to_le_bytes());
    frame.extend_from_slice(&4u32.to_le_bytes());
    frame.extend_from_slice(&code.to_le_bytes());
    send.write(&frame);
    Ok(code)
}

/// Turns on TCP keepalive with short timers (see [`KEEPALIVE_IDLE_S`]); a
/// failure leaves the connection as it was (it still closes normally).
fn keepalive(s: &TcpStream) {
    use std::os::fd::AsRawFd;
    let fd = s.as_raw_fd();
    let set = |level: i32, name: i32, value: i32| {
        // SAFETY: setsockopt on an open socket with a valid int option.
        unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                (&value as *const i32).cast(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            )
        }
    };
    set(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, KEEPALIVE_IDLE_S);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, KEEPALIVE_INTERVAL_S);
    set(libc::IPPROTO_TCP, libc::TCP_KEEPCNT, KEEPALIVE_COUNT);
}

/// The member's end of the back channel, shared by its pumps: after one
/// failed write (the client gone or stuck) it sends nothing more.
#[derive(Clone)]
struct Sender(Arc<Mutex<Option<TcpStream>>>);

impl Sender {
    fn new(s: TcpStream) -> Sender {
        Sender(Arc::new(Mutex::new(Some(s))))
    }

    fn write(&self, bytes: &[u8]) {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(stream) = s.as_mut() {
            if stream.write_all(bytes).is_err() {
                *s = None;
            }
        }
    }
}

fn spawn(job: &RunJob) -> Result<Child, String> {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(&job.command[0]);
    cmd.args(&job.command[1..])
        .envs(&job.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // The forked child becomes a guard (see `guard`), which forks again to
    // run the command. SAFETY: only async-signal-safe calls between fork
    // and exec (fork, prctl, sigprocmask, sigwaitinfo, waitpid, kill, _exit).
    let parent = std::process::id() as libc::pid_t;
    unsafe {
        cmd.pre_exec(move || guard(parent));
    }
    cmd.spawn().map_err(|e| format!("cannot start {:?}: {e}", job.command[0]))
}

/// Runs in the forked child, the group's leader, before exec. It forks the
/// command and stays as its guard: when the worker's thread that forked it
/// dies (the parent-death signal, SIGUSR2 here), the guard kills the whole
/// group, so the command's own children go too (a parent-death signal on
/// the command alone would orphan them). Group signals (a stop's SIGTERM)
/// reach the command; the guard ignores them and leaves with the command,
/// with its exit code or signal, which the worker then reads.
///
/// Returns (to exec) only in the command, with default signal handling:
/// dispositions the worker ignores (SIGCHLD, say) and its blocked signals
/// would otherwise pass to it (a shell's `wait` returns at once when
/// SIGCHLD is ignored).
///
/// # Safety
/// Call only between fork and exec: async-signal-safe calls only.
unsafe fn guard(parent: libc::pid_t) -> std::io::Result<()> {
    let mut waited: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut waited);
    for sig in [libc::SIGCHLD, libc::SIGUSR2, libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        libc::sigaddset(&mut waited, sig);
    }
    // Blocked before the fork and the death signal: none can be missed.
    libc::pthread_sigmask(libc::SIG_SETMASK, &waited, std::ptr::null_mut());
    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGUSR2);
    // The worker died before the signal was armed: do not run.
    if libc::getppid() != parent {
        libc::_exit(127);
    }
    let me = libc::getpid();
    let command = libc::fork();
    if command < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if command == 0 {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != me {
            libc::_exit(127);
        }
        for sig in 1..32 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        return Ok(());
    }
    // The guard never execs: it must not hold the pipe on which std learns
    // that exec succeeded (the spawn would wait for the guard to exit), nor
    // any other descriptor of the worker's.
    if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
        for fd in 3..65536 {
            libc::close(fd);
        }
    }
    loop {
        let sig = libc::sigwaitinfo(&waited, std::ptr::null_mut());
        if sig == libc::SIGUSR2 {
            // The worker is gone: the whole group goes, this guard too.
            libc::kill(0, libc::SIGKILL);
            libc::_exit(137);
        }
        if sig != libc::SIGCHLD {
            continue;
        }
        let mut status = 0;
        if libc::waitpid(command, &mut status, libc::WNOHANG) != command {
            continue;
        }
        if libc::WIFEXITED(status) {
            libc::_exit(libc::WEXITSTATUS(status));
        }
        // Killed by a signal: leave by the same one, so the worker reads it.
        let s = libc::WTERMSIG(status);
        let mut only: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut only);
        libc::sigaddset(&mut only, s);
        libc::signal(s, libc::SIG_DFL);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &only, std::ptr::null_mut());
        libc::kill(me, s);
        libc::_exit(128 + s);
    }
}

/// SIGTERM to the group, then SIGKILL after `grace` if it is still there;
/// each signal only while `signallable` (the leader is not reaped yet).
fn stop_group(pid: i32, grace: Duration, signallable: &Mutex<bool>) {
    let signal = |sig: i32| {
        let may = signallable.lock().unwrap_or_else(|p| p.into_inner());
        // SAFETY: kill(2) on the member's own group, whose leader is not reaped.
        *may && unsafe { libc::kill(-pid, sig) } == 0
    };
    if !signal(libc::SIGTERM) {
        return;
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && signal(0) {
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(libc::SIGKILL);
}

fn pump(
    r: impl Read + Send + 'static,
    kind: u8,
    rank: u32,
    send: Sender,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut line = Vec::new();
        loop {
            line.clear();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            while line.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                line.pop();
            }
            line.truncate(MAX_LINE);
            let mut frame = Vec::with_capacity(9 + line.len());
            frame.push(kind);
            frame.extend_from_slice(&rank.to_le_bytes());
            frame.extend_from_slice(&(line.len() as u32).to_le_bytes());
            frame.extend_from_slice(&line);
            // The client gone: keep draining so the command never blocks on a full pipe.
            send.write(&frame);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(script: &str, listener: &Listener) -> RunJob {
        RunJob {
            command: vec!["sh".into(), "-c".into(), script.into()],
            env: BTreeMap::from([("RANK".to_string(), "0".to_string())]),
            rank: 0,
            report: (listener.addr.clone(), listener.nonce),
            grace_s: 2,
        }
    }

    fn option(s: &TcpStream, level: i32, name: i32) -> i32 {
        use std::os::fd::AsRawFd;
        let mut v: i32 = 0;
        let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
        // SAFETY: getsockopt into a local int on an open socket.
        let rc = unsafe {
            libc::getsockopt(s.as_raw_fd(), level, name, (&mut v as *mut i32).cast(), &mut len)
        };
        assert_eq!(rc, 0);
        v
    }

    #[test]
    fn the_back_channel_keeps_alive_with_short_timers() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let s = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        assert_eq!(option(&s, libc::SOL_SOCKET, libc::SO_KEEPALIVE), 0, "off by default");
        keepalive(&s);
        assert_ne!(option(&s, libc::SOL_SOCKET, libc::SO_KEEPALIVE), 0);
        assert_eq!(option(&s, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE), KEEPALIVE_IDLE_S);
        assert_eq!(option(&s, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL), KEEPALIVE_INTERVAL_S);
        assert_eq!(option(&s, libc::IPPROTO_TCP, libc::TCP_KEEPCNT), KEEPALIVE_COUNT);
    }

    #[test]
    fn a_member_streams_its_lines_and_stops_when_told() {
        let listener = Listener::start("127.0.0.1", 1).unwrap();
        let j = job("echo hello $RANK; echo oops >&2; exit 4", &listener);
        assert_eq!(run_member(&j).unwrap(), 4);
        std::thread::sleep(Duration::from_millis(100));
        let events = listener.take();
        let lines: Vec<String> = events
            .iter()
            .filter_map(|e| match e {
                Event::Line(0, _, t) => Some(t.clone()),
                _ => None,
            })
            .collect();
        assert!(lines.contains(&"hello 0".to_string()) && lines.contains(&"oops".to_string()));
        assert!(events.iter().any(|e| matches!(e, Event::Exit(0, 4))));

        let j = job("sleep 30 & wait", &listener);
        let member = std::thread::spawn(move || run_member(&j));
        std::thread::sleep(Duration::from_millis(500));
        listener.stop_all();
        let code = member.join().unwrap().unwrap();
        assert_eq!(code, 128 + libc::SIGTERM, "stopped by SIGTERM");
        // A member that connects after the stop is stopped at once.
        let j = job("sleep 30 & wait", &listener);
        assert_eq!(run_member(&j).unwrap(), 128 + libc::SIGTERM);
    }
}
