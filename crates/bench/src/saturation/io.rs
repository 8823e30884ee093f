//! The shell's system calls, shared by every forwarder and the generator: batches of datagrams
//! with `recvmmsg`/`sendmmsg`, socket buffers, pinning a thread to a core, and a thread's CPU
//! time.

use std::io::{IoSlice, IoSliceMut};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use nix::sched::{CpuSet, sched_setaffinity};
use nix::sys::socket::{
    ControlMessage, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrIn, recvmmsg, sendmmsg,
    setsockopt, sockopt,
};
use nix::sys::time::TimeSpec;
use nix::unistd::Pid;

/// Datagrams taken per `recvmmsg`.
pub(crate) const BATCH: usize = 32;
/// Room for one datagram in a receive buffer.
pub(crate) const SLOT: usize = 2048;
/// Most datagrams given to one `sendmmsg` (the kernel takes at most 1,024).
const SEND_MAX: usize = 256;

/// From a `schedstat` file (a thread's): the time it ran on a CPU, and the time it waited,
/// runnable, for one (another thread had its core).
pub(crate) fn sched(path: impl AsRef<std::path::Path>) -> (Duration, Duration) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut f = text
        .split_whitespace()
        .map(|x| Duration::from_nanos(x.parse().unwrap_or(0)));
    (f.next().unwrap_or_default(), f.next().unwrap_or_default())
}

/// Pins the calling thread to `core` (no-op, with a warning, if the kernel refuses).
pub(crate) fn pin_to(core: usize) {
    let mut set = CpuSet::new();
    let pinned = set
        .set(core)
        .and_then(|()| sched_setaffinity(Pid::from_raw(0), &set));
    if let Err(e) = pinned {
        eprintln!("could not pin a thread to core {core}: {e}");
    }
}

/// A socket on 127.0.0.1 with 4 MiB receive and send buffers (the most `net.core.rmem_max`
/// allows here), so a burst is queued rather than dropped.
pub(crate) fn socket() -> std::io::Result<(UdpSocket, SocketAddrV4)> {
    socket_on(Ipv4Addr::LOCALHOST)
}

/// The same on `ip` (an address of this network namespace).
pub(crate) fn socket_on(ip: Ipv4Addr) -> std::io::Result<(UdpSocket, SocketAddrV4)> {
    let s = UdpSocket::bind((ip, 0))?;
    setsockopt(&s, sockopt::RcvBuf, &(4 << 20))?;
    setsockopt(&s, sockopt::SndBuf, &(4 << 20))?;
    let SocketAddr::V4(a) = s.local_addr()? else {
        unreachable!("bound to an IPv4 address");
    };
    Ok((s, a))
}

/// Receive buffers and headers for `recvmmsg`.
pub(crate) struct Receiver {
    bufs: Vec<u8>,
    headers: MultiHeaders<SockaddrIn>,
    /// Length and source of each datagram of the last batch.
    pub(crate) got: Vec<(usize, SocketAddrV4)>,
    /// `recvmmsg` calls made, whatever they returned.
    pub(crate) calls: u64,
    /// With [`Receiver::timestamped`]: when each datagram of the last batch reached the
    /// socket (the kernel's `SO_TIMESTAMPNS`, wall clock since the epoch), if it said.
    pub(crate) stamps: Vec<Option<Duration>>,
    timestamps: bool,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("got", &self.got.len())
            .finish()
    }
}

impl Receiver {
    pub(crate) fn new() -> Self {
        Self {
            bufs: vec![0; BATCH * SLOT],
            headers: MultiHeaders::preallocate(BATCH, None),
            got: Vec::with_capacity(BATCH),
            calls: 0,
            stamps: Vec::new(),
            timestamps: false,
        }
    }

    /// A receiver that also reads each datagram's arrival time; its socket must have
    /// `SO_TIMESTAMPNS` set.
    pub(crate) fn timestamped() -> Self {
        Self {
            headers: MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(TimeSpec))),
            stamps: Vec::with_capacity(BATCH),
            timestamps: true,
            ..Self::new()
        }
    }

    /// Up to [`BATCH`] datagrams: waits for the first (up to the socket's read timeout) unless
    /// `wait` is false. Returns how many arrived.
    pub(crate) fn recv(&mut self, socket: &UdpSocket, wait: bool) -> usize {
        self.got.clear();
        self.stamps.clear();
        let flags = if wait {
            MsgFlags::MSG_WAITFORONE
        } else {
            MsgFlags::MSG_DONTWAIT
        };
        let mut chunks = self.bufs.chunks_mut(SLOT);
        let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] = std::array::from_fn(|_| {
            // BATCH chunks of SLOT bytes: `bufs` was made that size.
            [IoSliceMut::new(chunks.next().expect("one chunk per slot"))]
        });
        self.calls += 1;
        let Ok(msgs) = recvmmsg(
            socket.as_raw_fd(),
            &mut self.headers,
            iovs.iter_mut(),
            flags,
            None,
        ) else {
            return 0;
        };
        for m in msgs {
            if let Some(a) = m.address {
                self.got.push((m.bytes, SocketAddrV4::from(a)));
                if self.timestamps {
                    let stamp = m.cmsgs().ok().and_then(|mut c| {
                        c.find_map(|c| match c {
                            ControlMessageOwned::ScmTimestampns(t) => Some(Duration::new(
                                t.tv_sec().max(0) as u64,
                                t.tv_nsec().max(0) as u32,
                            )),
                            _ => None,
                        })
                    });
                    self.stamps.push(stamp);
                }
            }
        }
        self.got.len()
    }

    /// The `i`th datagram of the last batch.
    pub(crate) fn datagram(&self, i: usize) -> &[u8] {
        let (len, _) = self.got[i];
        &self.bufs[i * SLOT..i * SLOT + len]
    }

    /// Its source.
    pub(crate) fn source(&self, i: usize) -> SocketAddrV4 {
        self.got[i].1
    }
}

/// Headers for `sendmmsg`.
pub(crate) struct Sender {
    headers: MultiHeaders<SockaddrIn>,
    /// `sendmmsg` calls made.
    pub(crate) calls: u64,
    /// Datagrams the kernel took.
    pub(crate) datagrams: u64,
    /// RTP datagrams the kernel took, counted only when `count_rtp` is set.
    pub(crate) rtp: u64,
    pub(crate) count_rtp: bool,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sender")
    }
}

impl Sender {
    pub(crate) fn new() -> Self {
        Self {
            headers: MultiHeaders::preallocate(SEND_MAX, None),
            calls: 0,
            datagrams: 0,
            rtp: 0,
            count_rtp: false,
        }
    }

    /// Sends every `(datagram, destination)`, [`SEND_MAX`] per call; returns how many the
    /// kernel took and their bytes. A datagram the kernel refuses is skipped.
    pub(crate) fn send(&mut self, socket: &UdpSocket, out: &[(&[u8], SocketAddrV4)]) -> (u64, u64) {
        let (mut sent, mut bytes) = (0u64, 0u64);
        let mut rest = out;
        while !rest.is_empty() {
            let chunk = &rest[..rest.len().min(SEND_MAX)];
            let slices: Vec<[IoSlice<'_>; 1]> =
                chunk.iter().map(|(d, _)| [IoSlice::new(d)]).collect();
            let addrs: Vec<Option<SockaddrIn>> = chunk
                .iter()
                .map(|(_, a)| Some(SockaddrIn::from(*a)))
                .collect();
            let cmsgs: [ControlMessage<'_>; 0] = [];
            self.calls += 1;
            let took = sendmmsg(
                socket.as_raw_fd(),
                &mut self.headers,
                slices.iter(),
                &addrs,
                cmsgs,
                MsgFlags::empty(),
            )
            .map_or(0, |r| r.count());
            if took == 0 {
                // The first datagram was refused: skip it.
                rest = &rest[1..];
                continue;
            }
            sent += took as u64;
            self.datagrams += took as u64;
            if self.count_rtp {
                self.rtp += chunk[..took.min(chunk.len())]
                    .iter()
                    .filter(|(d, _)| super::trace::is_rtp(d))
                    .count() as u64;
            }
            bytes += chunk[..took.min(chunk.len())]
                .iter()
                .map(|(d, _)| d.len() as u64)
                .sum::<u64>();
            rest = &rest[took.min(rest.len())..];
        }
        (sent, bytes)
    }
}
