//! `aovpn lab netmgr` (hidden): the lab's stand-in for DHCP in the client namespace.

use std::net::Ipv4Addr;
use std::time::Duration;

use anyhow::{Result, anyhow};
use labnet::netns::lab as addr;

/// The lab's DHCP stand-in: whenever the client's link is up and has no default route, it
/// puts the router's back (a real machine's DHCP client or NetworkManager does this).
pub(crate) fn netmgr() -> Result<()> {
    use netio::netlink::{Netlink, Route};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let nl = Netlink::new().map_err(|e| anyhow!("netlink: {e}"))?;
        loop {
            if let Ok(link) = nl.link_by_name(addr::CLIENT_IF).await
                && link.up
                && link.lower_up
            {
                let routes = nl.routes(false).await.unwrap_or_default();
                if !routes
                    .iter()
                    .any(|r| r.prefix_len == 0 && r.table.is_none())
                {
                    let mut route =
                        Route::via_dev(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0, link.index);
                    route.gateway = Some(std::net::IpAddr::V4(addr::CLIENT_LINK_PEER));
                    match nl.add_route(&route).await {
                        Ok(()) => eprintln!(
                            "netmgr: {} is up: default route via {} restored",
                            addr::CLIENT_IF,
                            addr::CLIENT_LINK_PEER
                        ),
                        Err(e) => eprintln!("netmgr: default route: {e}"),
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}
