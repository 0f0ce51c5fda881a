//! Ending a socket's I/O from outside the tasks that own it, without ever touching a
//! descriptor number that may already belong to another connection.
//!
//! A socket's two halves are owned by a reader and a writer task; the descriptor is closed when
//! both are dropped, and from then on its number may be reused by any thread's accept or
//! connect. So a shutdown from outside goes through a [`Handle`], which can reach the socket
//! only while at least one [`Owned`] half is alive.

use monoio::io::Splitable;
use monoio::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::{Rc, Weak};

struct Fd(RawFd);

/// A half of a split stream, together with a share in the descriptor's liveness.
pub struct Owned<H> {
    /// Declared first: dropped (and the socket perhaps closed) before the liveness share.
    pub half: H,
    _alive: Rc<Fd>,
}

/// A weak reference to a socket: acts on it only while one of its halves is alive.
#[derive(Clone, Default)]
pub struct Handle(Weak<Fd>);

pub type ReadHalf = Owned<monoio::io::OwnedReadHalf<TcpStream>>;
pub type WriteHalf = Owned<monoio::io::OwnedWriteHalf<TcpStream>>;

/// Splits `stream` into its two owned halves and a handle for shutting it down from outside.
pub fn split(stream: TcpStream) -> (ReadHalf, WriteHalf, Handle) {
    let alive = Rc::new(Fd(stream.as_raw_fd()));
    let handle = Handle(Rc::downgrade(&alive));
    let (r, w) = stream.into_split();
    (
        Owned {
            half: r,
            _alive: alive.clone(),
        },
        Owned {
            half: w,
            _alive: alive,
        },
        handle,
    )
}

impl Handle {
    /// Shuts the socket down for reading and writing: pending reads return end-of-file and
    /// pending writes fail, on io_uring and epoll alike, so the tasks using it finish.
    pub fn shutdown(&self) {
        self.shut(libc::SHUT_RDWR);
    }

    /// Shuts the socket down for reading only: a pending read returns end-of-file (replies can
    /// still be written).
    pub fn shutdown_read(&self) {
        self.shut(libc::SHUT_RD);
    }

    /// Bytes of ours the peer's TCP has acknowledged (Linux TCP_INFO): moves whenever a slow
    /// reader takes data, even while a large write is still in progress. `None` if the socket
    /// is gone or the kernel won't tell.
    pub fn bytes_acked(&self) -> Option<u64> {
        let fd = self.0.upgrade()?;
        let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        // SAFETY: as in `shut`, the descriptor is this socket's; the kernel writes at most
        // `len` bytes into `info`, which is that large.
        let rc = unsafe {
            libc::getsockopt(
                fd.0,
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            )
        };
        (rc == 0 && len as usize >= std::mem::size_of::<libc::tcp_info>())
            .then_some(info.tcpi_bytes_acked)
    }

    fn shut(&self, how: libc::c_int) {
        if let Some(fd) = self.0.upgrade() {
            // SAFETY: a half owning the descriptor is alive (we hold a share of its liveness),
            // so the number is still this socket's; shutdown(2) takes no memory from us and
            // does not close it.
            unsafe {
                libc::shutdown(fd.0, how);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// Found in review: a shutdown by descriptor number after the socket's owners closed it
    /// could hit whichever connection got that number next.
    #[test]
    fn a_handle_outliving_its_socket_touches_nothing() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .build()
            .unwrap();
        rt.block_on(async {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            let s = TcpStream::connect_addr(addr).await.unwrap();
            let fd = s.as_raw_fd();
            let (r, w, handle) = split(s);
            handle.shutdown_read(); // fine while the halves live
            drop((r, w));
            // The lowest free number is reused: other tests' threads may take it first, so
            // open sockets until one gets it.
            let mut others = Vec::new();
            let other = loop {
                let o = std::net::TcpStream::connect(addr).unwrap();
                if o.as_raw_fd() == fd || others.len() > 64 {
                    break o;
                }
                others.push(o);
            };
            let (mut peer, _) = l.accept().unwrap();
            for _ in 0..others.len() + 1 {
                peer = l.accept().unwrap().0;
            }
            handle.shutdown();
            let mut other = other;
            other.write_all(b"x").expect("the new socket still writes");
            let mut b = [0u8; 1];
            peer.write_all(b"y").unwrap();
            other
                .read_exact(&mut b)
                .expect("the new socket still reads");
            assert_eq!(&b, b"y");
        });
    }
}
