//! A blocking rtnetlink client: the handful of link, address and route requests the
//! bridge needs, built with `netlink-packet-route` and sent on a plain `netlink-sys`
//! socket. No async runtime: each request is one send and one or two receives, and a
//! socket belongs to the network namespace of the thread that opened it, which is how
//! requests reach into a container's namespace.

use crate::Error;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd};

/// A route socket in the network namespace it was opened in.
pub struct Rtnl {
    socket: Socket,
    seq: u32,
}

/// An IPv4 route as far as subnet choice cares.
#[derive(Debug, Clone)]
pub struct Route4 {
    pub destination: Ipv4Addr,
    pub prefix: u8,
    pub oif: Option<u32>,
    pub table: u32,
}

fn nl(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Netlink { what, source }
}

impl Rtnl {
    /// A socket in the calling thread's network namespace.
    pub fn open() -> Result<Rtnl, Error> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(nl("opening a netlink socket"))?;
        socket.bind_auto().map_err(nl("binding a netlink socket"))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(nl("connecting a netlink socket"))?;
        Ok(Rtnl { socket, seq: 0 })
    }

    /// Sends one request and collects the answers until the ACK (or the end of a dump).
    fn request(
        &mut self,
        what: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<Vec<RouteNetlinkMessage>, Error> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        packet.finalize();
        let mut buf = vec![0u8; packet.header.length as usize];
        packet.serialize(&mut buf);
        self.socket.send(&buf, 0).map_err(nl(what))?;

        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut out = Vec::new();
        let mut rbuf = vec![0u8; 64 * 1024];
        loop {
            let n = self.socket.recv(&mut &mut rbuf[..], 0).map_err(nl(what))?;
            let mut offset = 0;
            while offset < n {
                let bytes = &rbuf[offset..n];
                let reply =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes).map_err(|e| {
                        Error::Netlink {
                            what: what.to_string(),
                            source: std::io::Error::other(e.to_string()),
                        }
                    })?;
                let len = reply.header.length as usize;
                if len == 0 {
                    return Ok(out);
                }
                offset += len;
                if reply.header.sequence_number != self.seq {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out),
                            Some(code) => Err(Error::Netlink {
                                what: what.to_string(),
                                source: std::io::Error::from_raw_os_error(-code.get()),
                            }),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::InnerMessage(m) => {
                        out.push(m);
                        if !dump {
                            // A plain GET answers with one message and no ACK unless asked.
                            if flags & NLM_F_ACK == 0 {
                                return Ok(out);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// The index of link `name`, if it exists.
    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>, Error> {
        Ok(self.link(name)?.map(|l| l.header.index))
    }

    /// Link `name`, if it exists.
    pub fn link(&mut self, name: &str) -> Result<Option<LinkMessage>, Error> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(
            &format!("looking up link {name}"),
            RouteNetlinkMessage::GetLink(msg),
            0,
        ) {
            Ok(mut v) => Ok(v.pop().and_then(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })),
            Err(Error::Netlink { source, .. }) if source.raw_os_error() == Some(libc::ENODEV) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The names of the links enslaved to `master`.
    pub fn ports_of(&mut self, master: u32) -> Result<Vec<String>, Error> {
        let v = self.request(
            "listing links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(v.into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => {
                    let on = l
                        .attributes
                        .iter()
                        .any(|a| matches!(a, LinkAttribute::Controller(i) if *i == master));
                    let name = l.attributes.iter().find_map(|a| match a {
                        LinkAttribute::IfName(n) => Some(n.clone()),
                        _ => None,
                    });
                    name.filter(|_| on)
                }
                _ => None,
            })
            .collect())
    }

    /// The MTU of link `index`.
    pub fn link_mtu(&mut self, index: u32) -> Result<Option<u32>, Error> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        let v = self.request(
            &format!("looking up link {index}"),
            RouteNetlinkMessage::GetLink(msg),
            0,
        )?;
        Ok(v.into_iter().find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => l.attributes.iter().find_map(|a| match a {
                LinkAttribute::Mtu(m) => Some(*m),
                _ => None,
            }),
            _ => None,
        }))
    }

    /// Creates bridge `name` with `mtu`, down. EEXIST is the caller's to handle.
    pub fn add_bridge(&mut self, name: &str, mtu: u32) -> Result<(), Error> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.request(
            &format!("creating bridge {name}"),
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(|_| ())
    }

    /// Sets link `index` up.
    pub fn set_up(&mut self, index: u32) -> Result<(), Error> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request(
            &format!("setting link {index} up"),
            RouteNetlinkMessage::SetLink(msg),
            NLM_F_ACK,
        )
        .map(|_| ())
    }

    /// A veth pair (the peer with address `peer_mac`): `host` on this side, up, enslaved to `master`; its peer `peer` in
    /// the namespace `netns`, down. Both get `mtu`.
    pub fn add_veth(
        &mut self,
        host: &str,
        master: u32,
        peer: &str,
        peer_mac: [u8; 6],
        netns: BorrowedFd<'_>,
        mtu: u32,
    ) -> Result<(), Error> {
        // The peer cannot be created up: veth_open() refuses (ENOTCONN) until both
        // ends exist, and the peer is configured first. The caller sets it up inside.
        let mut peer_msg = LinkMessage::default();
        peer_msg
            .attributes
            .push(LinkAttribute::IfName(peer.to_string()));
        peer_msg.attributes.push(LinkAttribute::Mtu(mtu));
        peer_msg
            .attributes
            .push(LinkAttribute::Address(peer_mac.to_vec()));
        peer_msg
            .attributes
            .push(LinkAttribute::NetNsFd(netns.as_raw_fd()));

        let mut msg = LinkMessage::default();
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        msg.attributes.push(LinkAttribute::IfName(host.to_string()));
        msg.attributes.push(LinkAttribute::Mtu(mtu));
        msg.attributes.push(LinkAttribute::Controller(master));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        self.request(
            &format!("creating veth {host}"),
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(|_| ())
    }

    /// Deletes link `name`; false if there was none.
    pub fn del_link(&mut self, name: &str) -> Result<bool, Error> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(
            &format!("deleting link {name}"),
            RouteNetlinkMessage::DelLink(msg),
            NLM_F_ACK,
        ) {
            Ok(_) => Ok(true),
            Err(Error::Netlink { source, .. }) if source.raw_os_error() == Some(libc::ENODEV) => {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Adds `addr/prefix` to link `index`. EEXIST is the caller's to handle.
    pub fn add_address(&mut self, index: u32, addr: Ipv4Addr, prefix: u8) -> Result<(), Error> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix;
        msg.header.index = index;
        msg.attributes
            .push(AddressAttribute::Local(IpAddr::V4(addr)));
        msg.attributes
            .push(AddressAttribute::Address(IpAddr::V4(addr)));
        msg.attributes
            .push(AddressAttribute::Broadcast(broadcast(addr, prefix)));
        self.request(
            &format!("adding address {addr}/{prefix}"),
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(|_| ())
    }

    /// Every IPv4 address on this namespace's links: (link index, address, prefix).
    pub fn addresses(&mut self) -> Result<Vec<(u32, Ipv4Addr, u8)>, Error> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        let v = self.request(
            "listing addresses",
            RouteNetlinkMessage::GetAddress(msg),
            NLM_F_DUMP,
        )?;
        Ok(v.into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => {
                    let addr = a.attributes.iter().find_map(|x| match x {
                        AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                        AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                        _ => None,
                    })?;
                    Some((a.header.index, addr, a.header.prefix_len))
                }
                _ => None,
            })
            .collect())
    }

    /// Every IPv4 route of every table.
    pub fn routes(&mut self) -> Result<Vec<Route4>, Error> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = AddressFamily::Inet;
        let v = self.request(
            "listing routes",
            RouteNetlinkMessage::GetRoute(msg),
            NLM_F_DUMP,
        )?;
        Ok(v.into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => {
                    let mut route = Route4 {
                        destination: Ipv4Addr::UNSPECIFIED,
                        prefix: r.header.destination_prefix_length,
                        oif: None,
                        table: u32::from(r.header.table),
                    };
                    for a in &r.attributes {
                        match a {
                            RouteAttribute::Destination(RouteAddress::Inet(d)) => {
                                route.destination = *d
                            }
                            RouteAttribute::Oif(i) => route.oif = Some(*i),
                            RouteAttribute::Table(t) => route.table = *t,
                            _ => {}
                        }
                    }
                    Some(route)
                }
                _ => None,
            })
            .collect())
    }

    /// The default route via `gateway` on link `index`.
    pub fn add_default_route(&mut self, index: u32, gateway: Ipv4Addr) -> Result<(), Error> {
        let mut msg = RouteMessage::default();
        msg.header = RouteHeader {
            address_family: AddressFamily::Inet,
            table: RouteHeader::RT_TABLE_MAIN,
            protocol: RouteProtocol::Boot,
            scope: RouteScope::Universe,
            kind: RouteType::Unicast,
            ..RouteHeader::default()
        };
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        msg.attributes.push(RouteAttribute::Oif(index));
        self.request(
            &format!("adding the default route via {gateway}"),
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        )
        .map(|_| ())
    }
}

/// The broadcast address of `addr/prefix`.
pub fn broadcast(addr: Ipv4Addr, prefix: u8) -> Ipv4Addr {
    let mask = prefix_mask(prefix);
    Ipv4Addr::from(u32::from(addr) | !mask)
}

/// `/prefix` as a mask.
pub fn prefix_mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix.min(32)))
    }
}
