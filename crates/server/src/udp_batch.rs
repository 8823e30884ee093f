//! Batched UDP for the media thread: up to [`BATCH`] datagrams per `recvmmsg`, and whatever
//! the SFU has to send in one `sendmmsg` (a few calls for a large burst). IPv4 and IPv6.

use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use nix::errno::Errno;
use nix::sys::socket::{
    ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage, getsockopt, recvmmsg, sendmmsg,
    sockopt,
};

/// Datagrams taken per `recvmmsg`.
pub(crate) const BATCH: usize = 32;
/// Room for one datagram (larger ones are truncated, and then refused by the SFU).
const SLOT: usize = 2048;
/// Most datagrams given to one `sendmmsg` (the kernel takes at most 1,024).
const SEND_MAX: usize = 128;

/// Receive buffers and headers, made once.
pub(crate) struct Receiver {
    bufs: Vec<u8>,
    headers: MultiHeaders<SockaddrStorage>,
    /// Length and source of each datagram of the last batch.
    got: Vec<(usize, SocketAddr)>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("got", &self.got.len())
            .finish()
    }
}

impl Default for Receiver {
    fn default() -> Self {
        Self {
            bufs: vec![0; BATCH * SLOT],
            headers: MultiHeaders::preallocate(BATCH, None),
            got: Vec::with_capacity(BATCH),
        }
    }
}

impl Receiver {
    /// Takes what is queued on a non-blocking socket, [`BATCH`] at most; how many.
    pub(crate) fn recv(&mut self, socket: &UdpSocket) -> usize {
        self.got.clear();
        let mut chunks = self.bufs.chunks_mut(SLOT);
        let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] = std::array::from_fn(|_| {
            // BATCH chunks of SLOT bytes: `bufs` was made that size.
            [IoSliceMut::new(chunks.next().unwrap_or_default())]
        });
        let Ok(msgs) = recvmmsg(
            socket.as_raw_fd(),
            &mut self.headers,
            iovs.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        ) else {
            // A pending error (an ICMP report) would keep the socket readable: take it.
            let _ = getsockopt(socket, sockopt::SocketError);
            return 0;
        };
        for m in msgs {
            if let Some(a) = m.address.as_ref().and_then(to_socket_addr) {
                self.got.push((m.bytes, a));
            }
        }
        self.got.len()
    }

    /// The datagrams of the last batch, with their sources.
    pub(crate) fn datagrams(&self) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.got.iter().enumerate().map(|(i, &(len, from))| {
            let start = i * SLOT;
            (from, &self.bufs[start..start + len.min(SLOT)])
        })
    }
}

fn to_socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
}

/// Send headers, made once.
pub(crate) struct Sender {
    headers: MultiHeaders<SockaddrStorage>,
    addrs: Vec<Option<SockaddrStorage>>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sender")
    }
}

impl Default for Sender {
    fn default() -> Self {
        Self {
            headers: MultiHeaders::preallocate(SEND_MAX, None),
            addrs: Vec::with_capacity(SEND_MAX),
        }
    }
}

/// What one [`Sender::send`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sent {
    /// Datagrams the kernel took.
    pub(crate) datagrams: u64,
    /// `sendmmsg` calls made.
    pub(crate) calls: u64,
    /// Datagrams not sent (a full send buffer, a refused destination).
    pub(crate) dropped: u64,
}

impl Sender {
    /// Sends every `(datagram, destination)`. UDP: a datagram the kernel refuses (a full
    /// buffer, an unreachable destination) is dropped, as the network would drop it.
    pub(crate) fn send(&mut self, socket: &UdpSocket, out: &[(Vec<u8>, SocketAddr)]) -> Sent {
        let mut sent = Sent::default();
        let mut rest = out;
        while !rest.is_empty() {
            let chunk = &rest[..rest.len().min(SEND_MAX)];
            let slices: [[IoSlice<'_>; 1]; SEND_MAX] =
                std::array::from_fn(|i| [IoSlice::new(chunk.get(i).map_or(&[][..], |(d, _)| d))]);
            self.addrs.clear();
            self.addrs
                .extend(chunk.iter().map(|(_, a)| Some(SockaddrStorage::from(*a))));
            let cmsgs: [ControlMessage<'_>; 0] = [];
            sent.calls += 1;
            let took = match sendmmsg(
                socket.as_raw_fd(),
                &mut self.headers,
                slices[..chunk.len()].iter(),
                &self.addrs,
                cmsgs,
                MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(r) => r.count(),
                // The socket's send buffer is full: the rest would be refused one call at a
                // time. Dropped, as a congested link drops them.
                Err(Errno::EAGAIN | Errno::ENOBUFS) => {
                    sent.dropped += rest.len() as u64;
                    break;
                }
                Err(_) => 0,
            };
            // The first datagram refused (its destination, say): skip it, send the rest.
            let skip = took.max(1).min(rest.len());
            sent.datagrams += took as u64;
            sent.dropped += (skip - took.min(skip)) as u64;
            rest = &rest[skip..];
        }
        sent
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_batch_goes_out_and_comes_back_in_order_with_its_sources() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        b.set_nonblocking(true).unwrap();
        // Room for the whole burst: nothing is dropped at the door.
        nix::sys::socket::setsockopt(&b, nix::sys::socket::sockopt::RcvBuf, &(1 << 20)).unwrap();
        let to = b.local_addr().unwrap();
        let mut out: Vec<(Vec<u8>, SocketAddr)> = (0..200u8).map(|i| (vec![i; 100], to)).collect();
        // An IPv6 destination from an IPv4 socket is refused: skipped, the rest still sent.
        out.insert(50, (vec![0; 100], "[::1]:9".parse().unwrap()));
        let sent = Sender::default().send(&a, &out);
        assert_eq!(sent.datagrams, 200);
        assert_eq!(sent.dropped, 1);
        assert_eq!(
            sent.calls, 4,
            "50 up to the refusal, the refused one, then 128 and 22"
        );
        let mut rx = Receiver::default();
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while seen.len() < 200 {
            assert!(std::time::Instant::now() < deadline, "got {}", seen.len());
            assert!(rx.recv(&b) <= BATCH);
            for (from, d) in rx.datagrams() {
                assert_eq!(from, a.local_addr().unwrap());
                seen.push(d[0]);
            }
        }
        assert_eq!(seen, (0..200u8).collect::<Vec<_>>());
        assert_eq!(rx.recv(&b), 0, "nothing left, and no wait");
    }
}
