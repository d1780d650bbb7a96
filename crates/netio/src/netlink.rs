//! rtnetlink: link state and MTU, addresses, routes, route lookups, a record of what a session
//! installed ([`InstalledConfig`]) and a change monitor ([`NetworkMonitor`]).
//!
//! All calls act on the network namespace the netlink socket was opened in, i.e. the namespace
//! of the thread that called [`Netlink::new`] / [`NetworkMonitor::new`].

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::StreamExt;
use futures::channel::mpsc::UnboundedReceiver;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteScope, RouteType,
};
use rtnetlink::{Handle, LinkUnspec, MulticastGroup, RouteMessageBuilder};

/// Errors from netlink operations.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The kernel (or rtnetlink) refused a request.
    #[error("netlink request failed: {0}")]
    Request(#[from] rtnetlink::Error),
    /// Opening the netlink socket failed.
    #[error("netlink socket: {0}")]
    Io(#[from] io::Error),
    /// No link with that name or index.
    #[error("no such link: {0}")]
    NoSuchLink(String),
    /// A prefix length does not fit the address family, or families are mixed.
    #[error("invalid prefix {0}/{1}")]
    InvalidPrefix(IpAddr, u8),
    /// A route lookup returned no usable route.
    #[error("no route to {0}")]
    NoRoute(IpAddr),
}

impl NetlinkError {
    /// The errno carried by a kernel refusal, if any (positive, e.g. `libc::EEXIST`).
    pub fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Request(rtnetlink::Error::NetlinkError(msg)) => {
                msg.code.map(|c| c.get().saturating_neg())
            }
            NetlinkError::Io(e) => e.raw_os_error(),
            _ => None,
        }
    }

    /// True when a delete failed only because the object is already gone (for example because
    /// the interface carrying it was removed).
    pub fn is_already_gone(&self) -> bool {
        matches!(
            self.errno(),
            Some(libc::ESRCH | libc::ENOENT | libc::ENODEV | libc::EADDRNOTAVAIL)
        )
    }
}

/// Netlink results.
pub type Result<T> = std::result::Result<T, NetlinkError>;

/// An interface address. With `peer` set it is a point-to-point address
/// (`ip addr add LOCAL peer PEER/LEN`): `prefix_len` then applies to the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct IfAddress {
    /// Interface index.
    pub index: u32,
    /// Local address (IFA_LOCAL).
    pub local: IpAddr,
    /// Prefix length.
    pub prefix_len: u8,
    /// Peer address (IFA_ADDRESS) for point-to-point links.
    #[serde(default)]
    pub peer: Option<IpAddr>,
}

impl IfAddress {
    /// `local/prefix_len` on interface `index`.
    pub fn new(index: u32, local: IpAddr, prefix_len: u8) -> Self {
        Self {
            index,
            local,
            prefix_len,
            peer: None,
        }
    }

    fn validate(&self) -> Result<()> {
        check_prefix(self.local, self.prefix_len)?;
        if let Some(peer) = self.peer
            && peer.is_ipv4() != self.local.is_ipv4()
        {
            return Err(NetlinkError::InvalidPrefix(peer, self.prefix_len));
        }
        Ok(())
    }

    fn to_message(self) -> AddressMessage {
        let mut msg = AddressMessage::default();
        msg.header.family = family_of(self.local);
        msg.header.prefix_len = self.prefix_len;
        msg.header.index = self.index;
        msg.attributes.push(AddressAttribute::Local(self.local));
        msg.attributes
            .push(AddressAttribute::Address(self.peer.unwrap_or(self.local)));
        if self.local.is_ipv6() {
            // Duplicate address detection on a tunnel whose address the gateway assigned only
            // delays it: the address stays tentative (unusable as a source) for a second.
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        msg
    }

    fn from_message(msg: &AddressMessage) -> Option<Self> {
        let mut address = None;
        let mut local = None;
        for attr in &msg.attributes {
            match attr {
                AddressAttribute::Address(a) => address = Some(*a),
                AddressAttribute::Local(a) => local = Some(*a),
                _ => {}
            }
        }
        // IPv6 addresses carry only IFA_ADDRESS; IPv4 carries both (equal unless peer-style).
        let (local, peer) = match (local, address) {
            (Some(l), Some(a)) if l != a => (l, Some(a)),
            (Some(l), _) => (l, None),
            (None, Some(a)) => (a, None),
            (None, None) => return None,
        };
        Some(Self {
            index: msg.header.index,
            local,
            prefix_len: msg.header.prefix_len,
            peer,
        })
    }
}

/// A unicast route (serialisable: the agent records what it installed, to remove it after a
/// crash).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Route {
    /// Destination network address.
    pub destination: IpAddr,
    /// Destination prefix length.
    pub prefix_len: u8,
    /// Output interface index.
    pub oif: Option<u32>,
    /// Next hop (same family as the destination).
    pub gateway: Option<IpAddr>,
    /// Preferred source address (`src`).
    pub source: Option<IpAddr>,
    /// Metric / priority.
    pub metric: Option<u32>,
    /// Routing table; `None` is the main table.
    pub table: Option<u32>,
}

impl Route {
    /// `destination/prefix_len dev oif`, no gateway, main table.
    pub fn via_dev(destination: IpAddr, prefix_len: u8, oif: u32) -> Self {
        Self {
            destination,
            prefix_len,
            oif: Some(oif),
            gateway: None,
            source: None,
            metric: None,
            table: None,
        }
    }

    fn to_message(self) -> Result<RouteMessage> {
        check_prefix(self.destination, self.prefix_len)?;
        let invalid = |ip| NetlinkError::InvalidPrefix(ip, self.prefix_len);
        let mut b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(self.destination, self.prefix_len)
            .map_err(|_| invalid(self.destination))?;
        if let Some(gw) = self.gateway {
            if gw.is_ipv4() != self.destination.is_ipv4() {
                return Err(invalid(gw));
            }
            b = b.gateway(gw).map_err(|_| invalid(gw))?;
        } else if self.destination.is_ipv4() {
            // Same as `ip route add … dev X` without `via`: the destination is on-link.
            b = b.scope(RouteScope::Link);
        }
        if let Some(src) = self.source {
            b = b.pref_source(src).map_err(|_| invalid(src))?;
        }
        if let Some(oif) = self.oif {
            b = b.output_interface(oif);
        }
        if let Some(metric) = self.metric {
            b = b.priority(metric);
        }
        if let Some(table) = self.table {
            b = b.table_id(table);
        }
        Ok(b.build())
    }

    fn from_message(msg: &RouteMessage) -> Option<Self> {
        let mut r = Route {
            destination: unspecified(msg.header.address_family)?,
            prefix_len: msg.header.destination_prefix_length,
            oif: None,
            gateway: None,
            source: None,
            metric: None,
            table: Some(u32::from(msg.header.table)),
        };
        for attr in &msg.attributes {
            match attr {
                RouteAttribute::Destination(a) => r.destination = route_ip(a)?,
                RouteAttribute::Gateway(a) => r.gateway = route_ip(a),
                RouteAttribute::PrefSource(a) => r.source = route_ip(a),
                RouteAttribute::Oif(i) => r.oif = Some(*i),
                RouteAttribute::Priority(p) => r.metric = Some(*p),
                RouteAttribute::Table(t) => r.table = Some(*t),
                _ => {}
            }
        }
        if r.table == Some(u32::from(RouteHeader::RT_TABLE_MAIN)) {
            r.table = None;
        }
        Some(r)
    }

    /// The routing table number (`None` means main, 254).
    pub fn table_id(&self) -> u32 {
        self.table.unwrap_or(u32::from(RouteHeader::RT_TABLE_MAIN))
    }

    /// True if this route (as read back) matches `wanted` (as installed): fields left `None` in
    /// `wanted` are not compared.
    pub fn matches(&self, wanted: &Route) -> bool {
        self.destination == wanted.destination
            && self.prefix_len == wanted.prefix_len
            && self.table_id() == wanted.table_id()
            && (wanted.oif.is_none() || self.oif == wanted.oif)
            && (wanted.gateway.is_none() || self.gateway == wanted.gateway)
            && (wanted.source.is_none() || self.source == wanted.source)
            && (wanted.metric.is_none() || self.metric == wanted.metric)
    }
}

/// Basic link facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// MTU.
    pub mtu: Option<u32>,
    /// IFF_UP (administratively up).
    pub up: bool,
    /// IFF_LOWER_UP (carrier).
    pub lower_up: bool,
}

impl LinkInfo {
    fn from_message(msg: &LinkMessage) -> Self {
        let mut info = LinkInfo {
            index: msg.header.index,
            name: String::new(),
            mtu: None,
            up: msg.header.flags.contains(LinkFlags::Up),
            lower_up: msg.header.flags.contains(LinkFlags::LowerUp),
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => info.name.clone_from(n),
                LinkAttribute::Mtu(m) => info.mtu = Some(*m),
                _ => {}
            }
        }
        info
    }
}

/// Result of a kernel route lookup (`ip route get DEST`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteLookup {
    /// Output interface.
    pub oif: u32,
    /// Next hop, if not on-link.
    pub gateway: Option<IpAddr>,
    /// Source address the kernel would use.
    pub source: Option<IpAddr>,
    /// MTU of the path: the route's MTU metric (or cached PMTU) if set, else the link MTU.
    pub mtu: Option<u32>,
}

fn family_of(ip: IpAddr) -> rtnetlink::packet_route::AddressFamily {
    use rtnetlink::packet_route::AddressFamily;
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

fn unspecified(family: rtnetlink::packet_route::AddressFamily) -> Option<IpAddr> {
    use rtnetlink::packet_route::AddressFamily;
    match family {
        AddressFamily::Inet => Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        AddressFamily::Inet6 => Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
        _ => None,
    }
}

fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

fn check_prefix(ip: IpAddr, prefix_len: u8) -> Result<()> {
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if prefix_len > max {
        return Err(NetlinkError::InvalidPrefix(ip, prefix_len));
    }
    Ok(())
}

/// A netlink (NETLINK_ROUTE) connection. Cheap to clone; the connection task ends when the last
/// clone (and every [`InstalledConfig`] made from it) is dropped.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink").finish_non_exhaustive()
    }
}

impl Netlink {
    /// Opens a netlink socket in the calling thread's network namespace and spawns its
    /// connection task on the current tokio runtime.
    pub fn new() -> Result<Self> {
        require_runtime()?;
        let (conn, handle, _messages) = rtnetlink::new_connection()?;
        tokio::spawn(conn);
        Ok(Self { handle })
    }

    /// The underlying rtnetlink handle, for requests this module does not wrap.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Looks a link up by name.
    pub async fn link_by_name(&self, name: &str) -> Result<LinkInfo> {
        let mut s = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match s.next().await {
            Some(Ok(msg)) => Ok(LinkInfo::from_message(&msg)),
            Some(Err(e)) if is_no_device(&e) => Err(NetlinkError::NoSuchLink(name.to_string())),
            Some(Err(e)) => Err(e.into()),
            None => Err(NetlinkError::NoSuchLink(name.to_string())),
        }
    }

    /// Looks a link up by index.
    pub async fn link_by_index(&self, index: u32) -> Result<LinkInfo> {
        let mut s = self.handle.link().get().match_index(index).execute();
        match s.next().await {
            Some(Ok(msg)) => Ok(LinkInfo::from_message(&msg)),
            Some(Err(e)) if is_no_device(&e) => Err(NetlinkError::NoSuchLink(index.to_string())),
            Some(Err(e)) => Err(e.into()),
            None => Err(NetlinkError::NoSuchLink(index.to_string())),
        }
    }

    /// Brings a link up or down.
    pub async fn set_link_up(&self, index: u32, up: bool) -> Result<()> {
        let b = LinkUnspec::new_with_index(index);
        let msg = if up { b.up() } else { b.down() }.build();
        self.handle.link().set(msg).execute().await?;
        Ok(())
    }

    /// Sets a link's MTU.
    pub async fn set_mtu(&self, index: u32, mtu: u32) -> Result<()> {
        let msg = LinkUnspec::new_with_index(index).mtu(mtu).build();
        self.handle.link().set(msg).execute().await?;
        Ok(())
    }

    /// Adds an address (fails with EEXIST if present).
    pub async fn add_address(&self, addr: &IfAddress) -> Result<()> {
        addr.validate()?;
        let mut req = self
            .handle
            .address()
            .add(addr.index, addr.local, addr.prefix_len);
        *req.message_mut() = addr.to_message();
        req.execute().await?;
        Ok(())
    }

    /// Removes an address.
    pub async fn del_address(&self, addr: &IfAddress) -> Result<()> {
        addr.validate()?;
        self.handle
            .address()
            .del(addr.to_message())
            .execute()
            .await?;
        Ok(())
    }

    /// Lists addresses, optionally of one link only.
    pub async fn addresses(&self, index: Option<u32>) -> Result<Vec<IfAddress>> {
        let mut req = self.handle.address().get();
        if let Some(index) = index {
            req = req.set_link_index_filter(index);
        }
        let mut s = req.execute();
        let mut out = Vec::new();
        while let Some(msg) = s.next().await {
            if let Some(a) = IfAddress::from_message(&msg?) {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// Adds a route (fails with EEXIST if an identical one exists).
    pub async fn add_route(&self, route: &Route) -> Result<()> {
        let msg = route.to_message()?;
        self.handle.route().add(msg).execute().await?;
        Ok(())
    }

    /// Removes a route.
    pub async fn del_route(&self, route: &Route) -> Result<()> {
        let msg = route.to_message()?;
        self.handle.route().del(msg).execute().await?;
        Ok(())
    }

    /// Lists unicast routes of one family (`ipv6`), all tables.
    pub async fn routes(&self, ipv6: bool) -> Result<Vec<Route>> {
        let builder = if ipv6 {
            RouteMessageBuilder::<Ipv6Addr>::new().build()
        } else {
            RouteMessageBuilder::<Ipv4Addr>::new().build()
        };
        let mut s = self.handle.route().get(builder).execute();
        let mut out = Vec::new();
        while let Some(msg) = s.next().await {
            let msg = msg?;
            if msg.header.kind != RouteType::Unicast {
                continue;
            }
            if let Some(r) = Route::from_message(&msg) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Asks the kernel which route it would use for `destination` (`ip route get`), including
    /// the path MTU: the route's MTU metric or cached PMTU if any, else the output link's MTU.
    pub async fn route_to(&self, destination: IpAddr) -> Result<RouteLookup> {
        let full = if destination.is_ipv4() { 32 } else { 128 };
        let msg = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(destination, full)
            .map_err(|_| NetlinkError::InvalidPrefix(destination, full))?
            .build();
        let mut s = self.handle.route().get(msg).execute();
        let reply = match s.next().await {
            Some(r) => r?,
            None => return Err(NetlinkError::NoRoute(destination)),
        };
        let mut oif = None;
        let mut lookup = RouteLookup {
            oif: 0,
            gateway: None,
            source: None,
            mtu: None,
        };
        for attr in &reply.attributes {
            match attr {
                RouteAttribute::Oif(i) => oif = Some(*i),
                RouteAttribute::Gateway(a) => lookup.gateway = route_ip(a),
                RouteAttribute::PrefSource(a) => lookup.source = route_ip(a),
                RouteAttribute::Metrics(ms) => {
                    for m in ms {
                        if let RouteMetric::Mtu(mtu) = m {
                            lookup.mtu = Some(*mtu);
                        }
                    }
                }
                _ => {}
            }
        }
        lookup.oif = oif.ok_or(NetlinkError::NoRoute(destination))?;
        if lookup.mtu.is_none() {
            lookup.mtu = self.link_by_index(lookup.oif).await?.mtu;
        }
        Ok(lookup)
    }

    /// Starts an empty record of installed configuration on this connection.
    pub fn session(&self) -> InstalledConfig {
        InstalledConfig {
            nl: self.clone(),
            installed: Vec::new(),
        }
    }
}

fn require_runtime() -> Result<()> {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => Ok(()),
        Err(_) => Err(io::Error::other("netlink needs a tokio runtime").into()),
    }
}

fn is_no_device(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m)
        if m.code.map(|c| c.get()) == Some(-libc::ENODEV))
}

/// One item a session installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// An interface address.
    Address(IfAddress),
    /// A route.
    Route(Route),
}

/// Records every address and route a session added so [`teardown`](Self::teardown) removes
/// exactly those, newest first, and nothing else.
///
/// Dropping a non-empty record without calling `teardown` spawns the same teardown on the
/// current tokio runtime (never blocking the dropping thread); if there is no runtime, or the
/// runtime shuts down first, the entries stay and a warning is logged. Prefer the explicit call.
#[derive(Debug)]
pub struct InstalledConfig {
    nl: Netlink,
    installed: Vec<Installed>,
}

impl InstalledConfig {
    /// Adds an address and records it.
    pub async fn add_address(&mut self, addr: IfAddress) -> Result<()> {
        self.nl.add_address(&addr).await?;
        self.installed.push(Installed::Address(addr));
        Ok(())
    }

    /// Adds a route and records it.
    pub async fn add_route(&mut self, route: Route) -> Result<()> {
        self.nl.add_route(&route).await?;
        self.installed.push(Installed::Route(route));
        Ok(())
    }

    /// Removes a route this record added, and forgets it (gone already counts as removed).
    pub async fn remove_route(&mut self, route: &Route) -> Result<()> {
        match self.nl.del_route(route).await {
            Err(e) if !e.is_already_gone() => return Err(e),
            _ => {}
        }
        self.installed.retain(|i| *i != Installed::Route(*route));
        Ok(())
    }

    /// What is currently recorded, oldest first.
    pub fn installed(&self) -> &[Installed] {
        &self.installed
    }

    /// Removes everything recorded, newest first. Items already gone (e.g. removed with their
    /// interface) count as removed. Returns the first real error after trying every item.
    pub async fn teardown(mut self) -> Result<()> {
        let items = std::mem::take(&mut self.installed);
        remove_all(&self.nl, items).await
    }
}

async fn remove_all(nl: &Netlink, items: Vec<Installed>) -> Result<()> {
    let mut first_err = None;
    for item in items.into_iter().rev() {
        let res = match &item {
            Installed::Address(a) => nl.del_address(a).await,
            Installed::Route(r) => nl.del_route(r).await,
        };
        match res {
            Ok(()) => {}
            Err(e) if e.is_already_gone() => {}
            Err(e) => {
                tracing::warn!(?item, error = %e, "teardown: could not remove");
                first_err.get_or_insert(e);
            }
        }
    }
    first_err.map_or(Ok(()), Err)
}

impl Drop for InstalledConfig {
    fn drop(&mut self) {
        if self.installed.is_empty() {
            return;
        }
        let items = std::mem::take(&mut self.installed);
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                let nl = self.nl.clone();
                rt.spawn(async move {
                    let _ = remove_all(&nl, items).await;
                });
            }
            Err(_) => {
                tracing::warn!(
                    ?items,
                    "InstalledConfig dropped outside a runtime; left in place"
                );
            }
        }
    }
}

/// A network change, simplified for the agent's policy core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetEvent {
    /// A link appeared or changed (flags, name, MTU).
    LinkChanged(LinkInfo),
    /// A link was removed.
    LinkRemoved {
        /// Its former index.
        index: u32,
    },
    /// An address was added.
    AddressAdded(IfAddress),
    /// An address was removed.
    AddressRemoved(IfAddress),
    /// A route was added or replaced.
    RouteAdded(Route),
    /// A route was removed.
    RouteRemoved(Route),
}

/// Stream of [`NetEvent`]s from the RTMGRP_LINK, IPV4/IPV6_IFADDR and IPV4/IPV6_ROUTE groups.
pub struct NetworkMonitor {
    messages: UnboundedReceiver<(
        NetlinkMessage<RouteNetlinkMessage>,
        rtnetlink::sys::SocketAddr,
    )>,
    // Keeps the connection alive; it has nothing to send.
    _handle: Handle,
}

impl std::fmt::Debug for NetworkMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetworkMonitor").finish_non_exhaustive()
    }
}

impl NetworkMonitor {
    /// Subscribes in the calling thread's network namespace; spawns the connection task on the
    /// current tokio runtime.
    pub fn new() -> Result<Self> {
        let groups = [
            MulticastGroup::Link,
            MulticastGroup::Ipv4Ifaddr,
            MulticastGroup::Ipv6Ifaddr,
            MulticastGroup::Ipv4Route,
            MulticastGroup::Ipv6Route,
        ];
        require_runtime()?;
        let (conn, handle, messages) = rtnetlink::new_multicast_connection(&groups)?;
        tokio::spawn(conn);
        Ok(Self {
            messages,
            _handle: handle,
        })
    }

    /// Next event; `None` when the socket closed. Messages that map to no event are skipped.
    pub async fn next(&mut self) -> Option<NetEvent> {
        StreamExt::next(self).await
    }
}

impl futures::Stream for NetworkMonitor {
    type Item = NetEvent;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<NetEvent>> {
        loop {
            match self.messages.poll_next_unpin(cx) {
                std::task::Poll::Ready(Some((msg, _))) => {
                    if let Some(ev) = to_event(msg) {
                        return std::task::Poll::Ready(Some(ev));
                    }
                }
                std::task::Poll::Ready(None) => return std::task::Poll::Ready(None),
                std::task::Poll::Pending => return std::task::Poll::Pending,
            }
        }
    }
}

fn to_event(msg: NetlinkMessage<RouteNetlinkMessage>) -> Option<NetEvent> {
    let NetlinkPayload::InnerMessage(inner) = msg.payload else {
        return None;
    };
    match inner {
        RouteNetlinkMessage::NewLink(l) => Some(NetEvent::LinkChanged(LinkInfo::from_message(&l))),
        RouteNetlinkMessage::DelLink(l) => Some(NetEvent::LinkRemoved {
            index: l.header.index,
        }),
        RouteNetlinkMessage::NewAddress(a) => {
            IfAddress::from_message(&a).map(NetEvent::AddressAdded)
        }
        RouteNetlinkMessage::DelAddress(a) => {
            IfAddress::from_message(&a).map(NetEvent::AddressRemoved)
        }
        RouteNetlinkMessage::NewRoute(r) if r.header.kind == RouteType::Unicast => {
            Route::from_message(&r).map(NetEvent::RouteAdded)
        }
        RouteNetlinkMessage::DelRoute(r) if r.header.kind == RouteType::Unicast => {
            Route::from_message(&r).map(NetEvent::RouteRemoved)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
