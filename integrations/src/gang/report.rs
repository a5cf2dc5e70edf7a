//! Rank 0's progress channel to the client: a TCP connection on which it
//! sends each round's (or step's) line and, every few rounds, a checkpoint
//! (any serde type `C`). The scheduler never relays it.
//!
//! Frames: one kind byte (`R` a round, `C` a checkpoint), a u64 length
//! (little endian), the payload. A connection first sends the listener's
//! 16-byte nonce, which the client passed to rank 0 in its task: other
//! connections are dropped unread. Lengths are bounded before anything is
//! allocated.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

const MAX_LINE: u64 = 1 << 20;
const MAX_CHECKPOINT: u64 = 8 << 30;

struct Received<C> {
    lines: Vec<(usize, String)>,
    checkpoint: Option<C>,
}

/// The client's end: a listener thread that accepts rank 0's connections.
pub struct Listener<C> {
    addr: String,
    nonce: [u8; 16],
    received: Arc<Mutex<Received<C>>>,
    stop: Arc<AtomicBool>,
}

impl<C: DeserializeOwned + Send + 'static> Listener<C> {
    /// Listens on `host` (a port the OS picks).
    pub fn start(host: &str) -> Result<Listener<C>, String> {
        let io = |e: std::io::Error| format!("cannot listen for training progress on {host}: {e}");
        let listener = TcpListener::bind((host, 0)).map_err(io)?;
        listener.set_nonblocking(true).map_err(io)?;
        let addr = listener.local_addr().map_err(io)?.to_string();
        let nonce = rask_core::key::unique_token().0.to_le_bytes();
        let received = Arc::new(Mutex::new(Received { lines: Vec::new(), checkpoint: None }));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (received.clone(), stop.clone());
        std::thread::Builder::new()
            .name("gang-progress".into())
            .spawn(move || accept_loop(listener, nonce, r, s))
            .map_err(io)?;
        Ok(Listener { addr, nonce, received, stop })
    }

    /// Where rank 0 connects, and the nonce it must present.
    pub fn address(&self) -> (String, [u8; 16]) {
        (self.addr.clone(), self.nonce)
    }

    /// Round lines received since the last call.
    pub fn take_lines(&self) -> Vec<(usize, String)> {
        std::mem::take(&mut self.received.lock().unwrap_or_else(|p| p.into_inner()).lines)
    }

    /// The newest checkpoint received.
    pub fn take_checkpoint(&self) -> Option<C> {
        self.received.lock().unwrap_or_else(|p| p.into_inner()).checkpoint.take()
    }
}

impl<C> Drop for Listener<C> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn accept_loop<C: DeserializeOwned + Send + 'static>(
    listener: TcpListener,
    nonce: [u8; 16],
    received: Arc<Mutex<Received<C>>>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let r = received.clone();
                std::thread::spawn(move || {
                    if let Err(e) = read_frames(stream, nonce, &r) {
                        tracing::debug!("progress connection closed: {e}");
                    }
                });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn read_frames<C: DeserializeOwned>(
    mut stream: TcpStream,
    nonce: [u8; 16],
    received: &Mutex<Received<C>>,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut got = [0u8; 16];
    stream.read_exact(&mut got)?;
    if got != nonce {
        return Err(std::io::Error::other("wrong nonce"));
    }
    // Rounds can take long: block until rank 0 sends or its connection
    // ends (the gang's own failure handling bounds the client's wait).
    stream.set_read_timeout(None)?;
    loop {
        let mut head = [0u8; 9];
        match stream.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let len = u64::from_le_bytes(head[1..].try_into().expect("8 bytes"));
        let limit = if head[0] == b'C' { MAX_CHECKPOINT } else { MAX_LINE };
        if len > limit {
            return Err(std::io::Error::other(format!("frame of {len} bytes over {limit}")));
        }
        // Grown as bytes arrive: an announced length reserves nothing.
        let mut payload = Vec::new();
        (&mut stream).take(len).read_to_end(&mut payload)?;
        if payload.len() as u64 != len {
            return Err(std::io::Error::other(format!(
                "frame of {len} bytes ended after {}",
                payload.len()
            )));
        }
        let mut r = received.lock().unwrap_or_else(|p| p.into_inner());
        match head[0] {
            b'R' if payload.len() >= 8 => {
                let round = u64::from_le_bytes(payload[..8].try_into().expect("8 bytes")) as usize;
                r.lines.push((round, String::from_utf8_lossy(&payload[8..]).into_owned()));
            }
            b'C' => match postcard::from_bytes::<C>(&payload) {
                Ok(c) => r.checkpoint = Some(c),
                Err(e) => return Err(std::io::Error::other(format!("bad checkpoint: {e}"))),
            },
            k => return Err(std::io::Error::other(format!("unknown frame kind {k}"))),
        }
    }
}

/// Rank 0's end. Sending never fails training: a client that went away
/// only loses the progress it would have shown.
pub struct Reporter {
    stream: Option<TcpStream>,
}

impl Reporter {
    /// Connects to the client's listener.
    pub fn connect(addr: &str, nonce: &[u8; 16]) -> Reporter {
        let stream = addr
            .parse::<std::net::SocketAddr>()
            .ok()
            .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_secs(10)).ok())
            .and_then(|mut s| {
                s.set_write_timeout(Some(Duration::from_secs(60))).ok()?;
                s.write_all(nonce).ok()?;
                Some(s)
            });
        if stream.is_none() {
            tracing::warn!("gang rank 0: cannot reach the client at {addr} for progress");
        }
        Reporter { stream }
    }

    fn send(&mut self, kind: u8, payload: &[&[u8]]) {
        let Some(s) = self.stream.as_mut() else { return };
        let len: usize = payload.iter().map(|p| p.len()).sum();
        let mut head = vec![kind];
        head.extend_from_slice(&(len as u64).to_le_bytes());
        let ok = s.write_all(&head).is_ok() && payload.iter().all(|p| s.write_all(p).is_ok());
        if !ok {
            self.stream = None;
        }
    }

    /// One round's evaluation line.
    pub fn round(&mut self, round: usize, line: &str) {
        self.send(b'R', &[&(round as u64).to_le_bytes(), line.as_bytes()]);
    }

    /// A checkpoint.
    pub fn checkpoint<C: Serialize>(&mut self, c: &C) {
        if let Ok(bytes) = postcard::to_stdvec(c) {
            self.send(b'C', &[&bytes]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_arrive_and_a_frame_cut_short_of_its_announced_length_is_dropped() {
        let l = Listener::<Vec<u8>>::start("127.0.0.1").unwrap();
        let (addr, nonce) = l.address();
        let mut r = Reporter::connect(&addr, &nonce);
        r.round(3, "loss 0.5");
        r.checkpoint(&vec![1u8, 2, 3]);
        // A peer announcing a 4 GiB checkpoint and closing: an error on its
        // connection, no allocation of that size.
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(&nonce).unwrap();
        let mut head = vec![b'C'];
        head.extend_from_slice(&(4u64 << 30).to_le_bytes());
        s.write_all(&head).unwrap();
        s.write_all(&[0u8; 100]).unwrap();
        drop(s);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut lines = Vec::new();
        while lines.is_empty() && std::time::Instant::now() < deadline {
            lines = l.take_lines();
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(lines, vec![(3, "loss 0.5".to_string())]);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(l.take_checkpoint(), Some(vec![1, 2, 3]));
    }
}
