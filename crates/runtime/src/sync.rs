//! The channel between the runtime and the container's init while the container is set up:
//! a SOCK_SEQPACKET socketpair, so each message arrives whole, and file descriptors can
//! ride along (the seccomp notify fd goes from init back to the runtime).

use crate::error::{Context, Error, Result};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

#[derive(Debug, PartialEq, Eq)]
pub enum Msg {
    /// Runtime → init: mappings written, cgroup joined; go on. Carries the state document
    /// (status "creating", host pid) that the init's own hooks get on stdin.
    Go(String),
    /// Init → runtime: mounts are done; run prestart and createRuntime hooks now.
    RunHooks,
    /// Runtime → init: the hooks succeeded.
    HooksDone,
    /// Init → runtime: here is the seccomp notify fd (sent with the message).
    SeccompFd,
    /// Init → runtime: fully set up, waiting for `start`.
    Ready,
    /// Either way: setup failed, with the reason.
    Error(String),
}

impl Msg {
    fn encode(&self) -> Vec<u8> {
        match self {
            Msg::Go(s) => {
                let mut v = vec![b'G'];
                v.extend_from_slice(s.as_bytes());
                v
            }
            Msg::RunHooks => vec![b'H'],
            Msg::HooksDone => vec![b'D'],
            Msg::SeccompFd => vec![b'S'],
            Msg::Ready => vec![b'R'],
            Msg::Error(s) => {
                let mut v = vec![b'E'];
                v.extend_from_slice(s.as_bytes());
                v
            }
        }
    }

    fn decode(b: &[u8]) -> Option<Msg> {
        Some(match *b.first()? {
            b'G' => Msg::Go(String::from_utf8_lossy(&b[1..]).into_owned()),
            b'H' => Msg::RunHooks,
            b'D' => Msg::HooksDone,
            b'S' => Msg::SeccompFd,
            b'R' => Msg::Ready,
            b'E' => Msg::Error(String::from_utf8_lossy(&b[1..]).into_owned()),
            _ => return None,
        })
    }
}

pub struct Channel(OwnedFd);

pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .ctx(|| "socketpair for init sync")?;
    Ok((Channel(a), Channel(b)))
}

impl Channel {
    pub fn send(&self, msg: &Msg) -> Result<()> {
        self.send_with_fd(msg, None)
    }

    pub fn send_with_fd(&self, msg: &Msg, fd: Option<RawFd>) -> Result<()> {
        let data = msg.encode();
        let iov = [IoSlice::new(&data)];
        let fds;
        let cmsg: Vec<ControlMessage> = match fd {
            Some(f) => {
                fds = [f];
                vec![ControlMessage::ScmRights(&fds)]
            }
            None => vec![],
        };
        sendmsg::<()>(
            self.0.as_raw_fd(),
            &iov,
            &cmsg,
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .ctx(|| "send to container init")?;
        Ok(())
    }

    /// Receives one message; `Ok(None)` when the other end closed.
    pub fn recv(&self) -> Result<Option<(Msg, Option<OwnedFd>)>> {
        let mut buf = vec![0u8; 8192];
        let mut cbuf = nix::cmsg_space!(RawFd);
        let (n, fd) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let r = loop {
                match recvmsg::<()>(
                    self.0.as_raw_fd(),
                    &mut iov,
                    Some(&mut cbuf),
                    MsgFlags::MSG_CMSG_CLOEXEC,
                ) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    r => break r,
                }
            }
            .ctx(|| "receive from container init")?;
            let mut fd = None;
            for c in r.cmsgs().ctx(|| "control message")? {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    for f in fds {
                        // SAFETY: SCM_RIGHTS hands us a new descriptor that nothing else owns.
                        let owned = unsafe { OwnedFd::from_raw_fd(f) };
                        fd.get_or_insert(owned);
                    }
                }
            }
            (r.bytes, fd)
        };
        if n == 0 {
            return Ok(None);
        }
        let msg = Msg::decode(&buf[..n])
            .ok_or_else(|| Error::Other("garbled message from container init".into()))?;
        Ok(Some((msg, fd)))
    }

    /// Receives and insists on one particular message; an Error message becomes our error.
    pub fn expect(&self, want: Msg) -> Result<Option<OwnedFd>> {
        match self.recv()? {
            Some((m, fd)) if m == want => Ok(fd),
            Some((Msg::Error(e), _)) => Err(Error::Other(e)),
            Some((m, _)) => Err(Error::Other(format!(
                "container init: expected {want:?}, got {m:?}"
            ))),
            None => Err(Error::Other(
                "container init exited before it was set up".into(),
            )),
        }
    }

    pub fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}
