//! Configuration of the engine: credentials, proposals, timers, and the per-role settings.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ike_wire::{GatewayIdentity, TrafficSelector};
use ipnet::IpNet;
use ipsec_crypto::Signer;

use crate::identity::{IkeId, PeerValidator};
use crate::proposal::{EspProposal, IkeProposal};

/// Our identity, private key and certificate chain.
#[derive(Clone)]
pub struct LocalCredentials {
    /// Identity sent in IDi / IDr.
    pub id: IkeId,
    /// Private key for AUTH signatures (and EAP-TLS on a gateway).
    pub key: Arc<dyn Signer>,
    /// Certificate chain as DER: end entity first, then intermediates (no root needed).
    pub chain: Vec<Vec<u8>>,
}

impl fmt::Debug for LocalCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCredentials")
            .field("id", &self.id)
            .field("key", &self.key)
            .field("chain_len", &self.chain.len())
            .finish()
    }
}

/// How we choose the AUTH method for our own signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMethodPolicy {
    /// RFC 7427 (method 14) when the peer sent SIGNATURE_HASH_ALGORITHMS with a usable hash,
    /// otherwise the classic method for the key (1 for RSA, 9 / 10 for ECDSA).
    #[default]
    Auto,
    /// Always the classic method (1 / 9 / 10), as Windows machine-certificate setups do.
    Classic,
    /// Always method 14 (fails when the peer advertises no usable hash).
    DigitalSignature,
}

/// Retransmission of our requests (RFC 7296 2.1): `initial`, doubling up to `max_timeout`,
/// `tries` transmissions in total, then the SA fails with a timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetransmitConfig {
    /// First timeout.
    pub initial: Duration,
    /// Upper bound for one timeout.
    pub max_timeout: Duration,
    /// Transmissions in total (first send included).
    pub tries: u32,
}

impl Default for RetransmitConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max_timeout: Duration::from_secs(8),
            tries: 5,
        }
    }
}

/// Settings shared by both roles.
#[derive(Debug, Clone)]
pub struct IkeConfig {
    /// Our credentials.
    pub local: LocalCredentials,
    /// Validates the peer's certificate and identity.
    pub validator: Arc<dyn PeerValidator>,
    /// IKE proposals, preferred first.
    pub ike_proposals: Vec<IkeProposal>,
    /// ESP proposals, preferred first.
    pub esp_proposals: Vec<EspProposal>,
    /// AUTH method choice.
    pub auth_method: AuthMethodPolicy,
    /// Send SIGNATURE_HASH_ALGORITHMS (RFC 7427) in IKE_SA_INIT. Windows does not; turning it
    /// off makes the peer use the classic AUTH methods.
    pub signature_hash_algorithms: bool,
    /// Accept and produce RSA signatures over SHA-1 (AUTH method 1, and RFC 7427 with SHA-1):
    /// the stock Windows set needs it. Even then an RFC 7427 SHA-1 signature is refused from
    /// a peer that announced a SHA-2 hash (RFC 8247 3.2). Default false.
    pub allow_sha1_signatures: bool,
    /// Offer and use IKE fragmentation (RFC 7383).
    pub fragmentation: bool,
    /// Largest IP packet for IKE messages; bigger encrypted messages are fragmented when both
    /// sides support it. Default 1280.
    pub fragment_mtu: usize,
    /// Retransmission timers.
    pub retransmit: RetransmitConfig,
    /// Fake a NAT-D hash so that both sides detect a NAT and use UDP encapsulation on the
    /// NAT-T port (our data plane is ESP-in-UDP only). Default true. In both roles the fake
    /// says "the initiator is behind a NAT": the initiator fakes its source hash, the responder
    /// the destination hash (so Windows clients, which refuse a gateway behind NAT by default,
    /// still float).
    pub force_encap: bool,
    /// IKE port (500).
    pub ike_port: u16,
    /// NAT-T port (4500); datagrams on it carry the 4-byte non-ESP marker.
    pub natt_port: u16,
    /// Nonce length in bytes (32).
    pub nonce_len: usize,
    /// Responder: drop an IKE SA that is not authenticated within this time. Initiator: give
    /// up on establishing after it.
    pub establish_timeout: Duration,
    /// Send an empty INFORMATIONAL after this long without hearing from the peer (IKE or,
    /// via [`crate::IkeSa::note_peer_alive`], ESP). `None` disables dead peer detection.
    pub dpd_interval: Option<Duration>,
    /// Lifetime of the IKE SA: it is rekeyed (CREATE_CHILD_SA, RFC 7296 1.3.2) at a random
    /// point between 80 % and 90 % of it and deleted when it runs out. `None`: never.
    pub ike_lifetime: Option<Duration>,
    /// Lifetime of a Child SA: rekeyed (RFC 7296 1.3.3) between 80 % and 90 % of it, deleted
    /// when it runs out. `None`: never (the data plane's sequence limits can still ask for a
    /// rekey with [`crate::IkeSa::rekey_child_sa`]).
    pub child_lifetime: Option<Duration>,
}

impl IkeConfig {
    /// Defaults for everything but credentials and validator.
    pub fn new(local: LocalCredentials, validator: Arc<dyn PeerValidator>) -> Self {
        Self {
            local,
            validator,
            ike_proposals: IkeProposal::defaults(),
            esp_proposals: EspProposal::defaults(),
            auth_method: AuthMethodPolicy::Auto,
            signature_hash_algorithms: true,
            allow_sha1_signatures: false,
            fragmentation: true,
            fragment_mtu: 1280,
            retransmit: RetransmitConfig::default(),
            force_encap: true,
            ike_port: 500,
            natt_port: 4500,
            nonce_len: 32,
            establish_timeout: Duration::from_secs(30),
            dpd_interval: None,
            ike_lifetime: Some(Duration::from_secs(8 * 3600)),
            child_lifetime: Some(Duration::from_secs(3600)),
        }
    }
}

/// What the initiator (agent) asks for.
#[derive(Debug, Clone)]
pub struct InitiatorConfig {
    /// Shared settings.
    pub ike: IkeConfig,
    /// IDr to send (optional; strongSwan and Windows gateways accept its absence).
    pub remote_id: Option<IkeId>,
    /// Request an IPv4 virtual address (and IPv4 DNS servers) with CP.
    pub request_ipv4: bool,
    /// Request an IPv6 virtual address (and IPv6 DNS servers) with CP.
    pub request_ipv6: bool,
    /// TSi we propose (ours). Default 0.0.0.0/0, narrowed by the responder to the vIP.
    pub ts_local: Vec<TrafficSelector>,
    /// TSr we propose (what we want to reach). Default 0.0.0.0/0.
    pub ts_remote: Vec<TrafficSelector>,
    /// Send N(INITIAL_CONTACT) in IKE_AUTH.
    pub initial_contact: bool,
    /// Send N(MOBIKE_SUPPORTED) in IKE_AUTH.
    pub mobike: bool,
    /// Authenticate with EAP-TLS inside IKE_AUTH (RFC 7296 2.16) instead of an AUTH
    /// signature: the certificate and key of [`IkeConfig::local`] are used inside TLS.
    pub eap_tls: Option<EapTlsClient>,
    /// Announce REDIRECT_SUPPORTED in IKE_SA_INIT and follow a gateway's REDIRECT (RFC 5685):
    /// the SA then ends with [`crate::FailureReason::Redirected`], and the caller starts a new
    /// one to the gateway named, with `redirected_from` set. The new gateway must authenticate
    /// as the one dialled (the same `remote_id` and validator): a redirect moves the tunnel,
    /// never whom it trusts. Off by default: a caller that does not reconnect elsewhere on
    /// that failure would come back to the same gateway and be redirected forever.
    pub follow_redirects: bool,
    /// The gateway that redirected us here: sent as REDIRECTED_FROM instead of
    /// REDIRECT_SUPPORTED (with `follow_redirects` only).
    pub redirected_from: Option<GatewayIdentity>,
}

/// The initiator's EAP-TLS (RFC 5216 with TLS 1.2, RFC 9190 with TLS 1.3).
#[derive(Debug, Clone)]
pub struct EapTlsClient {
    /// Sent as EAP-Response/Identity (Windows sends the user's UPN).
    pub identity: String,
    /// The TLS server's certificate must carry one of these names (the profile's
    /// ServerValidation/ServerNames, else the name dialled)...
    pub server_names: Vec<IkeId>,
    /// ...and pass this validator (the roots it trusts, serverAuth).
    pub server_validator: Arc<dyn PeerValidator>,
    /// Offer TLS 1.3 besides TLS 1.2.
    pub tls13: bool,
}

impl InitiatorConfig {
    /// Full-tunnel IPv4 defaults.
    pub fn new(ike: IkeConfig) -> Self {
        Self {
            ike,
            remote_id: None,
            request_ipv4: true,
            request_ipv6: false,
            ts_local: vec![TrafficSelector::ANY_V4],
            ts_remote: vec![TrafficSelector::ANY_V4],
            initial_contact: true,
            mobike: true,
            eap_tls: None,
            follow_redirects: false,
            redirected_from: None,
        }
    }
}

/// What the responder (gateway) grants.
#[derive(Debug, Clone)]
pub struct ResponderConfig {
    /// Shared settings.
    pub ike: IkeConfig,
    /// Local traffic selectors (the networks behind the gateway); TSr is narrowed to them.
    pub local_ts: Vec<TrafficSelector>,
    /// DNS servers pushed in CP replies.
    pub dns_servers: Vec<IpAddr>,
    /// Internal DNS domains (RFC 8598) pushed to initiators that ask for them: names under
    /// them are resolved by `dns_servers`.
    pub dns_domains: Vec<String>,
    /// Subnets pushed as INTERNAL_IP4/6_SUBNET (split-tunnel routes for Windows).
    pub pushed_subnets: Vec<IpNet>,
    /// Refuse IKE_AUTH without a CP request (FAILED_CP_REQUIRED).
    pub require_virtual_ip: bool,
    /// Echo MOBIKE_SUPPORTED when the initiator sends it.
    pub mobike: bool,
    /// Demand a COOKIE once this many half-open SAs exist (0 = always).
    pub cookie_threshold: usize,
    /// Drop new IKE_SA_INIT requests once this many half-open SAs exist.
    pub half_open_limit: usize,
    /// Half-open SAs one source (an IPv4 address, an IPv6 /64) may hold (strongSwan's
    /// block_threshold). Beyond it the source must echo a COOKIE, so requests spoofed in its
    /// name cannot lock it out; and it may hold no more than this many whose requests did
    /// echo one, so one host, even one that echoes COOKIEs, cannot fill the table.
    pub half_open_per_source: usize,
    /// Established IKE SAs one peer identity may hold; the oldest is deleted when a newer one
    /// goes beyond this.
    pub max_sas_per_identity: usize,
    /// Largest datagram accepted from a peer that has not authenticated (IKE_SA_INIT, and
    /// everything to a half-open SA; strongSwan's default is 10,000 bytes).
    pub max_unauthenticated_datagram: usize,
    /// Rotate the COOKIE secret after this long (the previous secret stays valid one period).
    pub cookie_secret_lifetime: Duration,
    /// Accept clients that authenticate with EAP-TLS (RFC 5216) inside IKE_AUTH, as Windows
    /// user tunnels do: an IKE_AUTH request without AUTH starts EAP, the user certificate is
    /// checked by [`IkeConfig::validator`] like a certificate in CERT. Default true.
    pub eap_tls: bool,
    /// Offer TLS 1.3 (RFC 9190) to EAP-TLS clients besides TLS 1.2. Default true.
    pub eap_tls13: bool,
    /// Relay EAP to an authentication server instead of running EAP-TLS here: each
    /// EAP-Response comes out as [`crate::Event::EapPassThrough`] and the answer goes back
    /// with [`crate::Endpoint::eap_answer`]. Default false.
    pub eap_pass_through: bool,
}

impl ResponderConfig {
    /// Defaults: local TS 0.0.0.0/0, no DNS, cookies above 64 half-open SAs, at most 4096
    /// half-open SAs and 5 per source address, unauthenticated datagrams up to 10,000 bytes,
    /// 4 IKE SAs per peer identity.
    pub fn new(ike: IkeConfig) -> Self {
        Self {
            ike,
            local_ts: vec![TrafficSelector::ANY_V4],
            dns_servers: Vec::new(),
            dns_domains: Vec::new(),
            pushed_subnets: Vec::new(),
            require_virtual_ip: false,
            mobike: false,
            cookie_threshold: 64,
            half_open_limit: 4096,
            half_open_per_source: 5,
            max_sas_per_identity: 4,
            max_unauthenticated_datagram: 10_000,
            cookie_secret_lifetime: Duration::from_secs(300),
            eap_tls: true,
            eap_tls13: true,
            eap_pass_through: false,
        }
    }
}

/// Address family of a virtual IP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressFamily {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// What a responder gives the peers of one policy group (Azure's "user groups and address
/// pools"): the networks behind it (TSr is narrowed to them and they are pushed as routes),
/// DNS, and which address pool. The validator chooses it when it accepts the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPolicy {
    /// The group's name; the address pool is asked for this group's addresses.
    pub group: String,
    pub local_ts: Vec<TrafficSelector>,
    pub dns_servers: Vec<IpAddr>,
    pub dns_domains: Vec<String>,
    pub pushed_subnets: Vec<IpNet>,
}

/// Source of virtual IPs for CP replies; the gateway implements it over its lease store.
pub trait AddressPool: Send {
    /// An address for `peer` in `family` from the pool of its policy `group` (`None`: the
    /// default pool), or `None` when that pool is exhausted (the client gets
    /// INTERNAL_ADDRESS_FAILURE).
    fn allocate(
        &mut self,
        peer: &IkeId,
        group: Option<&str>,
        family: AddressFamily,
    ) -> Option<IpAddr>;
    /// Like [`AddressPool::allocate`] for a peer that sent INITIAL_CONTACT: its other IKE
    /// SAs are deleted right after this one is up, so a pool that gives concurrent SAs of one
    /// peer different addresses hands this one the address they hold.
    fn allocate_replacing(
        &mut self,
        peer: &IkeId,
        group: Option<&str>,
        family: AddressFamily,
    ) -> Option<IpAddr> {
        self.allocate(peer, group, family)
    }
    /// Returns an address when the IKE SA that held it is gone.
    fn release(&mut self, peer: &IkeId, addr: IpAddr);
}
