//! A ring all-reduce between the members of a job, over direct TCP
//! connections: each member connects to the next rank and accepts the
//! previous one, so the data never passes through the scheduler or the
//! client.
//!
//! [`Ring::all_reduce_sum`] is the bandwidth-optimal ring (as NCCL's and
//! Horovod's): the buffer is cut into `world` chunks; `world - 1`
//! reduce-scatter steps leave each rank with one fully summed chunk, and
//! `world - 1` all-gather steps pass the summed chunks around. Each rank
//! sends and receives `2 (world - 1) / world` of the buffer, whatever the
//! world size. Every rank ends with the same bits (each chunk is summed in
//! one place, in one order), so replicas never drift apart.
//!
//! A connection opens with the job's secret (compared in constant time) and
//! the sender's rank; every message carries its step and length, which must
//! be the ones expected, so a stray or hostile peer gets an error, never an
//! allocation of its choosing. Reads and writes time out: a dead neighbour
//! is an error naming its rank, not a hang.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// What a ring can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RingError {
    /// A neighbour could not be reached, or its connection broke.
    #[error("ring all-reduce, rank {rank}: {what} rank {peer} ({addr}): {source}")]
    Peer {
        /// This member's rank.
        rank: usize,
        /// The neighbour's rank.
        peer: usize,
        /// The neighbour's address.
        addr: String,
        /// What was being done.
        what: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A neighbour sent something other than what the protocol expects.
    #[error("ring all-reduce, rank {rank}: {message}")]
    Protocol {
        /// This member's rank.
        rank: usize,
        /// What was wrong.
        message: String,
    },
}

/// How a member joins its ring.
#[derive(Clone, Debug)]
pub struct RingOptions {
    /// The shared secret every connection must open with.
    pub secret: [u8; 16],
    /// How long to keep trying to reach the next rank, and to wait for the
    /// previous one to connect.
    pub connect_timeout: Duration,
    /// The longest wait for a neighbour's message (a dead peer's bound).
    pub io_timeout: Duration,
}

impl Default for RingOptions {
    fn default() -> Self {
        RingOptions {
            secret: [0; 16],
            connect_timeout: Duration::from_secs(60),
            io_timeout: Duration::from_secs(120),
        }
    }
}

/// This member's place in the ring: a connection to the next rank and one
/// from the previous rank.
pub struct Ring {
    rank: usize,
    world: usize,
    next: TcpStream,
    prev: TcpStream,
    addrs: Vec<String>,
    step: u32,
}

const HELLO: &[u8; 8] = b"raskring";

impl Ring {
    /// Joins the ring of `addrs` (every member's `host:port`, by rank) as
    /// `rank`, accepting on `listener` (bound to this member's address).
    /// A world of one connects to itself; its all-reduce sends nothing.
    pub fn join(
        rank: usize,
        addrs: &[String],
        listener: &TcpListener,
        options: &RingOptions,
    ) -> Result<Ring, RingError> {
        let world = addrs.len();
        if rank >= world {
            return Err(RingError::Protocol {
                rank,
                message: format!("rank {rank} is not in a world of {world}"),
            });
        }
        let next_rank = (rank + 1) % world;
        let prev_rank = (rank + world - 1) % world;
        let peer_err = |peer: usize, what: &'static str| {
            let addr = addrs[peer].clone();
            move |source| RingError::Peer { rank, peer, addr, what, source }
        };
        // Connect out on a thread while accepting here: with every member
        // doing both, no order of start-up can deadlock.
        let (next, prev) = std::thread::scope(|s| {
            let out = s.spawn(|| -> Result<TcpStream, RingError> {
                let stream = connect_until(&addrs[next_rank], options.connect_timeout)
                    .map_err(peer_err(next_rank, "connecting to"))?;
                let mut hello = Vec::with_capacity(32);
                hello.extend_from_slice(HELLO);
                hello.extend_from_slice(&options.secret);
                hello.extend_from_slice(&(rank as u64).to_le_bytes());
                (&stream).write_all(&hello).map_err(peer_err(next_rank, "greeting"))?;
                Ok(stream)
            });
            let prev =
                accept_prev(rank, prev_rank, world, listener, options).map_err(|e| match e {
                    Accept::Io(source) => peer_err(prev_rank, "waiting for")(source),
                    Accept::Refused(message) => RingError::Protocol { rank, message },
                });
            let next = out.join().unwrap_or_else(|_| {
                Err(RingError::Protocol { rank, message: "the connecting thread panicked".into() })
            });
            (next, prev)
        });
        let (next, prev) = (next?, prev?);
        for s in [&next, &prev] {
            let set = |r: std::io::Result<()>| r.map_err(peer_err(next_rank, "configuring"));
            set(s.set_nodelay(true))?;
            set(s.set_read_timeout(Some(options.io_timeout)))?;
            set(s.set_write_timeout(Some(options.io_timeout)))?;
        }
        Ok(Ring { rank, world, next, prev, addrs: addrs.to_vec(), step: 0 })
    }

    /// This member's rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of members.
    pub fn world(&self) -> usize {
        self.world
    }

    /// Sums `values` element-wise over all members, in place. Every member
    /// must call it with a buffer of the same length.
    pub fn all_reduce_sum(&mut self, values: &mut [f32]) -> Result<(), RingError> {
        let n = self.world;
        if n == 1 {
            return Ok(());
        }
        let bounds: Vec<usize> = (0..=n).map(|i| i * values.len() / n).collect();
        let chunk = |c: usize| bounds[c % n]..bounds[c % n + 1];
        let mut incoming = Vec::new();
        // Reduce-scatter: at step s, send chunk (rank - s), receive chunk
        // (rank - s - 1) and add it in. After n - 1 steps, chunk rank + 1
        // holds the full sum.
        for s in 0..n - 1 {
            let send = chunk(self.rank + n - s);
            let recv = chunk(self.rank + n - s - 1);
            self.exchange(&values[send], &mut incoming, recv.len())?;
            for (v, x) in values[recv].iter_mut().zip(&incoming) {
                *v += x;
            }
        }
        // All-gather: pass the summed chunks around.
        for s in 0..n - 1 {
            let send = chunk(self.rank + 1 + n - s);
            let recv = chunk(self.rank + n - s);
            self.exchange(&values[send], &mut incoming, recv.len())?;
            values[recv].copy_from_slice(&incoming);
        }
        Ok(())
    }

    /// Averages `values` over all members, in place.
    pub fn all_reduce_mean(&mut self, values: &mut [f32]) -> Result<(), RingError> {
        self.all_reduce_sum(values)?;
        let scale = 1.0 / self.world as f32;
        values.iter_mut().for_each(|v| *v *= scale);
        Ok(())
    }

    /// Sends `out` to the next rank while receiving `len` values from the
    /// previous one (both at once: a chunk can exceed the sockets' buffers).
    fn exchange(&mut self, out: &[f32], into: &mut Vec<f32>, len: usize) -> Result<(), RingError> {
        let step = self.step;
        self.step = self.step.wrapping_add(1);
        let (rank, world) = (self.rank, self.world);
        let next_rank = (rank + 1) % world;
        let prev_rank = (rank + world - 1) % world;
        let mut frame = Vec::with_capacity(8 + out.len() * 4);
        frame.extend_from_slice(&step.to_le_bytes());
        frame.extend_from_slice(&(out.len() as u32).to_le_bytes());
        for v in out {
            frame.extend_from_slice(&v.to_le_bytes());
        }
        let next = &self.next;
        let prev = &self.prev;
        let addrs = &self.addrs;
        let (sent, received) = std::thread::scope(|s| {
            let sender = s.spawn(move || {
                let mut w = next;
                w.write_all(&frame)
            });
            let received = read_frame(prev, step, len);
            let sent = sender
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the sending thread panicked")));
            (sent, received)
        });
        sent.map_err(|source| RingError::Peer {
            rank,
            peer: next_rank,
            addr: addrs[next_rank].clone(),
            what: "sending to",
            source,
        })?;
        match received {
            Ok(values) => {
                *into = values;
                Ok(())
            }
            Err(Frame::Io(source)) => Err(RingError::Peer {
                rank,
                peer: prev_rank,
                addr: addrs[prev_rank].clone(),
                what: "receiving from",
                source,
            }),
            Err(Frame::Unexpected(message)) => Err(RingError::Protocol {
                rank,
                message: format!("from rank {prev_rank}: {message}"),
            }),
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        let _ = self.next.shutdown(Shutdown::Both);
        let _ = self.prev.shutdown(Shutdown::Both);
    }
}

enum Frame {
    Io(std::io::Error),
    Unexpected(String),
}

fn read_frame(stream: &TcpStream, step: u32, len: usize) -> Result<Vec<f32>, Frame> {
    let mut r = stream;
    let mut head = [0u8; 8];
    r.read_exact(&mut head).map_err(Frame::Io)?;
    let got_step = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
    let got_len = u32::from_le_bytes(head[4..].try_into().expect("4 bytes")) as usize;
    if got_step != step || got_len != len {
        return Err(Frame::Unexpected(format!(
            "step {got_step} with {got_len} values, where step {step} with {len} was due \
             (do all members reduce buffers of the same length?)"
        )));
    }
    let mut bytes = vec![0u8; len * 4];
    r.read_exact(&mut bytes).map_err(Frame::Io)?;
    Ok(bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))).collect())
}

fn connect_until(addr: &str, limit: Duration) -> std::io::Result<TcpStream> {
    let deadline = Instant::now() + limit;
    loop {
        match TcpStream::connect(addr) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

enum Accept {
    Io(std::io::Error),
    Refused(String),
}

/// Accepts the previous rank; connections that do not open with the
/// secret and that rank are closed, and waiting goes on until the timeout.
fn accept_prev(
    rank: usize,
    prev_rank: usize,
    world: usize,
    listener: &TcpListener,
    options: &RingOptions,
) -> Result<TcpStream, Accept> {
    let deadline = Instant::now() + options.connect_timeout;
    listener.set_nonblocking(true).map_err(Accept::Io)?;
    let mut refused = Vec::new();
    loop {
        match listener.accept() {
            Ok((stream, from)) => {
                stream.set_nonblocking(false).map_err(Accept::Io)?;
                match check_hello(&stream, &options.secret, prev_rank, world) {
                    Ok(()) => return Ok(stream),
                    Err(why) => {
                        refused.push(format!("{from}: {why}"));
                        let _ = stream.shutdown(Shutdown::Both);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(Accept::Io(e)),
        }
        if Instant::now() >= deadline {
            let what = if refused.is_empty() {
                "nobody connected".to_string()
            } else {
                format!("refused {}", refused.join("; "))
            };
            return Err(Accept::Refused(format!(
                "rank {prev_rank} did not join within {:?} ({what}); rank {rank} waited on {}",
                options.connect_timeout,
                listener.local_addr().map_or("?".into(), |a| a.to_string())
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn check_hello(
    stream: &TcpStream,
    secret: &[u8; 16],
    prev_rank: usize,
    world: usize,
) -> Result<(), String> {
    stream.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    let mut hello = [0u8; 32];
    (&*stream).read_exact(&mut hello).map_err(|e| format!("no greeting ({e})"))?;
    if &hello[..8] != HELLO {
        return Err("not a ring member".into());
    }
    // Constant time: a wrong guess learns nothing from the timing.
    let diff = hello[8..24].iter().zip(secret).fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if diff != 0 {
        return Err("wrong job secret".into());
    }
    let from = u64::from_le_bytes(hello[24..].try_into().expect("8 bytes"));
    if from != prev_rank as u64 {
        return Err(format!("rank {from} connected, where rank {prev_rank} of {world} was due"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `world` members on threads, each reducing its own buffer.
    fn run_ring(world: usize, len: usize) -> Vec<Result<Vec<f32>, RingError>> {
        let listeners: Vec<TcpListener> =
            (0..world).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        let addrs: Vec<String> =
            listeners.iter().map(|l| l.local_addr().unwrap().to_string()).collect();
        let options = RingOptions { secret: [7; 16], ..RingOptions::default() };
        std::thread::scope(|s| {
            let handles: Vec<_> = listeners
                .iter()
                .enumerate()
                .map(|(rank, l)| {
                    let (addrs, options) = (&addrs, &options);
                    s.spawn(move || {
                        let mut ring = Ring::join(rank, addrs, l, options)?;
                        let mut v: Vec<f32> =
                            (0..len).map(|i| (rank * 1000 + i) as f32 * 0.5).collect();
                        ring.all_reduce_sum(&mut v)?;
                        // A second call stays in step.
                        ring.all_reduce_mean(&mut v)?;
                        Ok(v)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    #[test]
    fn every_member_gets_the_same_sum() {
        for (world, len) in [(1, 5), (2, 7), (3, 10), (4, 3), (3, 300_000)] {
            let out = run_ring(world, len);
            let want: Vec<f32> = (0..len)
                .map(|i| (0..world).map(|r| (r * 1000 + i) as f32 * 0.5).sum::<f32>())
                .collect();
            let first = out[0].as_ref().unwrap();
            for (i, (g, w)) in first.iter().zip(&want).enumerate() {
                // The mean of world identical sums is the sum (up to rounding).
                assert!(
                    (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                    "{world}/{len} [{i}]: {g} vs {w}"
                );
            }
            for o in &out {
                // Bit for bit alike on every member.
                assert_eq!(o.as_ref().unwrap(), first, "world {world}");
            }
        }
    }

    #[test]
    fn a_stranger_or_a_wrong_secret_is_refused_and_a_dead_peer_is_an_error() {
        let listeners: Vec<TcpListener> =
            (0..2).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        let addrs: Vec<String> =
            listeners.iter().map(|l| l.local_addr().unwrap().to_string()).collect();
        let options = RingOptions {
            secret: [1; 16],
            connect_timeout: Duration::from_secs(2),
            io_timeout: Duration::from_secs(2),
        };
        // Rank 0 alone, with a stranger and a wrong secret knocking: it
        // refuses both and times out saying so.
        let stranger = addrs[0].clone();
        let knock = std::thread::spawn(move || {
            let mut a = TcpStream::connect(&stranger).unwrap();
            let _ = a.write_all(b"GET / HTTP/1.1\r\n\r\n0123456789abcdef");
            let mut b = TcpStream::connect(&stranger).unwrap();
            let mut hello = HELLO.to_vec();
            hello.extend_from_slice(&[2; 16]);
            hello.extend_from_slice(&1u64.to_le_bytes());
            let _ = b.write_all(&hello);
            std::thread::sleep(Duration::from_millis(500));
        });
        let e = Ring::join(0, &addrs, &listeners[0], &options).err().expect("refused");
        knock.join().unwrap();
        let text = e.to_string();
        assert!(text.contains("rank 1") && text.contains("wrong job secret"), "{text}");
        assert!(text.contains("not a ring member"), "{text}");

        // A ring whose neighbour dies after joining: the survivor's reduce
        // fails within the I/O timeout, naming the dead rank.
        let listeners: Vec<TcpListener> =
            (0..2).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
        let addrs: Vec<String> =
            listeners.iter().map(|l| l.local_addr().unwrap().to_string()).collect();
        let e = std::thread::scope(|s| {
            let dies = s.spawn(|| drop(Ring::join(1, &addrs, &listeners[1], &options).unwrap()));
            let mut ring = Ring::join(0, &addrs, &listeners[0], &options).unwrap();
            dies.join().unwrap();
            ring.all_reduce_sum(&mut [1.0; 64]).unwrap_err()
        });
        assert!(e.to_string().contains("rank 1"), "{e}");
    }
}
