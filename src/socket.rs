//! Ending a socket's I/O from outside the tasks that own it.

use std::os::fd::RawFd;

/// Shuts `fd` down for reading and writing: pending reads return end-of-file and pending
/// writes fail, on io_uring and epoll alike, so the tasks using the socket finish. The
/// descriptor stays open (and valid) until those tasks drop their halves.
pub fn shutdown(fd: RawFd) {
    // SAFETY: shutdown(2) takes no memory from us and does not close the descriptor; callers
    // pass the fd of a socket whose halves are still alive.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}
