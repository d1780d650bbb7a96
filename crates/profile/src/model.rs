//! The typed VPNv2 ProfileXML tree. Optional leaves stay `Option` so a profile round-trips with
//! exactly the elements it had; the accessor methods apply Windows' documented defaults.

use std::fmt;
use std::net::IpAddr;

/// Scope of a profile: `./Device/...` (machine-wide, root-owned) or `./User/...`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Device,
    User,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Device => "device",
            Scope::User => "user",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        match s.to_ascii_lowercase().as_str() {
            "device" => Some(Scope::Device),
            "user" => Some(Scope::User),
            _ => None,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value spelled with a fixed Windows name (matched case-insensitively, written canonically).
pub trait WindowsName: Sized + Copy + 'static {
    /// The accepted spellings, for error messages.
    const ALLOWED: &'static str;
    const ALL: &'static [Self];
    fn as_str(self) -> &'static str;
    fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
    }
}

macro_rules! windows_name {
    ($(#[$m:meta])* $name:ident { $v0:ident => $t0:literal $(, $v:ident => $t:literal)* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(clippy::upper_case_acronyms)]
        pub enum $name { $v0 $(, $v)* }
        impl WindowsName for $name {
            const ALLOWED: &'static str = concat!($t0 $(, ", ", $t)*);
            const ALL: &'static [Self] = &[$name::$v0 $(, $name::$v)*];
            fn as_str(self) -> &'static str {
                match self { $name::$v0 => $t0 $(, $name::$v => $t)* }
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

windows_name!(
    /// `RoutingPolicyType`.
    RoutingPolicy { SplitTunnel => "SplitTunnel", ForceTunnel => "ForceTunnel" }
);
windows_name!(
    /// `NativeProtocolType`.
    NativeProtocol {
        Pptp => "PPTP", L2tp => "L2TP", Ikev2 => "IKEv2", Automatic => "Automatic",
        Sstp => "SSTP", ProtocolList => "ProtocolList",
    }
);
windows_name!(
    /// `ProtocolList/NativeProtocol/Type`.
    ListedProtocol { Pptp => "Pptp", L2tp => "L2tp", Ikev2 => "Ikev2", Sstp => "Sstp" }
);
windows_name!(
    /// `Authentication/UserMethod`.
    UserMethod { Eap => "EAP", MsChapV2 => "MSChapv2" }
);
windows_name!(
    /// `Authentication/MachineMethod`.
    MachineMethod { Certificate => "Certificate" }
);
windows_name!(
    /// `DataEncryption` (Windows 11).
    DataEncryption { None => "None", Require => "Require", Max => "Max", Optional => "Optional" }
);
windows_name!(
    /// `TrafficFilter/Direction`.
    Direction { Outbound => "Outbound", Inbound => "Inbound" }
);
windows_name!(
    /// `CryptographySuite/EncryptionMethod` (IKE SA cipher).
    EncryptionMethod {
        Des => "DES", Des3 => "DES3", Aes128 => "AES128", Aes192 => "AES192", Aes256 => "AES256",
        AesGcm128 => "AES_GCM_128", AesGcm256 => "AES_GCM_256",
    }
);
windows_name!(
    /// `CryptographySuite/IntegrityCheckMethod` (IKE SA integrity and PRF).
    IntegrityCheckMethod { Md5 => "MD5", Sha196 => "SHA196", Sha256 => "SHA256", Sha384 => "SHA384" }
);
windows_name!(
    /// `CryptographySuite/DHGroup` (IKE SA key exchange).
    DhGroupSetting {
        None => "None", Group1 => "Group1", Group2 => "Group2", Group14 => "Group14",
        Ecp256 => "ECP256", Ecp384 => "ECP384", Group24 => "Group24",
    }
);
windows_name!(
    /// `CryptographySuite/CipherTransformConstants` (ESP cipher).
    CipherTransform {
        Des => "DES", Des3 => "DES3", Aes128 => "AES128", Aes192 => "AES192", Aes256 => "AES256",
        GcmAes128 => "GCMAES128", GcmAes192 => "GCMAES192", GcmAes256 => "GCMAES256", None => "None",
    }
);
windows_name!(
    /// `CryptographySuite/AuthenticationTransformConstants` (ESP integrity).
    AuthTransform {
        Md596 => "MD596", Sha196 => "SHA196", Sha256128 => "SHA256128", GcmAes128 => "GCMAES128",
        GcmAes192 => "GCMAES192", GcmAes256 => "GCMAES256", None => "None",
    }
);
windows_name!(
    /// `CryptographySuite/PfsGroup` (Child SA key exchange; `PFSMM` = same as the IKE group).
    PfsGroupSetting {
        None => "None", Pfs1 => "PFS1", Pfs2 => "PFS2", Pfs2048 => "PFS2048", Ecp256 => "ECP256",
        Ecp384 => "ECP384", PfsMm => "PFSMM", Pfs24 => "PFS24",
    }
);

/// An element kept verbatim (its source text), for Windows-only subtrees aovpn does not act on
/// and for the EAP configuration, which belongs to the EAP engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawXml(pub String);

/// An IP prefix `addr/len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl Prefix {
    /// The longest prefix of the address family (32 or 128).
    pub fn max_len(addr: IpAddr) -> u8 {
        if addr.is_ipv4() { 32 } else { 128 }
    }

    /// Host prefix (/32 or /128).
    pub fn host(addr: IpAddr) -> Prefix {
        Prefix {
            addr,
            len: Prefix::max_len(addr),
        }
    }

    /// The same prefix with host bits cleared (a length beyond the family is clamped).
    pub fn network(self) -> Prefix {
        let len = self.len.min(Prefix::max_len(self.addr));
        let addr = match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        };
        Prefix { addr, len }
    }

    pub fn contains(self, addr: IpAddr) -> bool {
        addr.is_ipv4() == self.addr.is_ipv4()
            && Prefix {
                addr,
                len: self.len,
            }
            .network()
                == self.network()
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// One `Servers` entry: `host` or `host;FriendlyName`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub host: String,
    pub friendly_name: Option<String>,
}

impl Server {
    /// The friendly name, defaulting to the host like Windows' Get does.
    pub fn display_name(&self) -> &str {
        self.friendly_name.as_deref().unwrap_or(&self.host)
    }
}

/// `Proxy`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Proxy {
    pub auto_config_url: Option<String>,
    /// `Manual/Server`: `host[:port]`.
    pub manual_server: Option<String>,
}

/// `DomainNameInformation` (one NRPT rule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainNameInformation {
    /// FQDN, `.suffix` (namespace) or `.` (everything).
    pub domain_name: String,
    pub dns_servers: Vec<IpAddr>,
    pub web_proxy_servers: Option<String>,
    pub auto_trigger: Option<bool>,
    pub persistent: Option<bool>,
}

/// A `LocalPortRanges`/`RemotePortRanges` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

/// A `LocalAddressRanges`/`RemoteAddressRanges` entry: CIDR or `a-b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressRange {
    Prefix(Prefix),
    Range(IpAddr, IpAddr),
}

/// `TrafficFilter`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrafficFilter {
    pub app_id: Option<String>,
    pub claims: Option<String>,
    pub protocol: Option<u8>,
    pub local_port_ranges: Vec<PortRange>,
    pub remote_port_ranges: Vec<PortRange>,
    pub local_address_ranges: Vec<AddressRange>,
    pub remote_address_ranges: Vec<AddressRange>,
    pub routing_policy_type: Option<RoutingPolicy>,
    pub direction: Option<Direction>,
}

/// `Route`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub address: IpAddr,
    pub prefix_size: u8,
    pub exclusion_route: Option<bool>,
    pub metric: Option<u32>,
}

impl Route {
    pub fn is_exclusion(&self) -> bool {
        self.exclusion_route.unwrap_or(false)
    }

    pub fn prefix(&self) -> Prefix {
        Prefix {
            addr: self.address,
            len: self.prefix_size,
        }
        .network()
    }
}

/// `NativeProfile/ProtocolList`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProtocolList {
    pub protocols: Vec<ListedProtocol>,
    pub retry_time_in_hours: Option<u32>,
}

/// `NativeProfile/CryptographySuite`: one fixed IKE + ESP proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CryptographySuite {
    pub authentication_transform_constants: Option<AuthTransform>,
    pub cipher_transform_constants: Option<CipherTransform>,
    pub pfs_group: Option<PfsGroupSetting>,
    pub dh_group: Option<DhGroupSetting>,
    pub integrity_check_method: Option<IntegrityCheckMethod>,
    pub encryption_method: Option<EncryptionMethod>,
}

/// `NativeProfile/Authentication`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Authentication {
    pub user_method: Option<UserMethod>,
    pub machine_method: Option<MachineMethod>,
    /// The whole `<Eap>` element, verbatim.
    pub eap: Option<RawXml>,
    /// The reserved `<Certificate>` element, verbatim.
    pub certificate: Option<RawXml>,
}

/// `NativeProfile`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeProfile {
    pub servers: Vec<Server>,
    pub routing_policy_type: Option<RoutingPolicy>,
    pub native_protocol_type: Option<NativeProtocol>,
    pub protocol_list: Option<ProtocolList>,
    pub l2tp_psk: Option<String>,
    pub disable_class_based_default_route: Option<bool>,
    pub plumb_ikev2_ts_as_routes: Option<bool>,
    pub cryptography_suite: Option<CryptographySuite>,
    pub authentication: Authentication,
}

impl NativeProfile {
    /// SplitTunnel unless ForceTunnel is set (Windows 10's default).
    pub fn routing_policy(&self) -> RoutingPolicy {
        self.routing_policy_type
            .unwrap_or(RoutingPolicy::SplitTunnel)
    }
}

/// The whole `VPNProfile` document.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VpnProfile {
    pub profile_name: Option<String>,
    pub edp_mode_id: Option<String>,
    pub remember_credentials: Option<bool>,
    pub always_on: Option<bool>,
    pub always_on_active: Option<bool>,
    pub dns_suffix: Vec<String>,
    pub trusted_network_detection: Vec<String>,
    pub disable_advanced_options_edit_button: Option<bool>,
    pub disable_disconnect_button: Option<bool>,
    pub lock_down: Option<bool>,
    pub device_tunnel: Option<bool>,
    pub register_dns: Option<bool>,
    pub by_pass_for_local: Option<bool>,
    pub require_vpn_client_app_ui: Option<bool>,
    pub data_encryption: Option<DataEncryption>,
    pub disable_ikev2_fragmentation: Option<bool>,
    pub ipv4_interface_metric: Option<u32>,
    pub ipv6_interface_metric: Option<u32>,
    pub network_outage_time: Option<u32>,
    pub private_network: Option<bool>,
    pub use_ras_credentials: Option<bool>,
    pub proxy: Option<Proxy>,
    pub domain_name_information: Vec<DomainNameInformation>,
    pub traffic_filters: Vec<TrafficFilter>,
    /// `AppTrigger/App/Id` values (Windows-only: app launch triggers).
    pub app_triggers: Vec<String>,
    pub native_profile: Option<NativeProfile>,
    pub routes: Vec<Route>,
    /// `APNBinding`, `DeviceCompliance`, `PluginProfile`: kept verbatim, in document order.
    pub windows_only: Vec<RawXml>,
}

impl VpnProfile {
    pub fn is_device_tunnel(&self) -> bool {
        self.device_tunnel.unwrap_or(false)
    }

    /// A device tunnel is always on whatever `AlwaysOn` says.
    pub fn is_always_on(&self) -> bool {
        self.always_on.unwrap_or(false) || self.is_device_tunnel()
    }

    pub fn servers(&self) -> &[Server] {
        self.native_profile
            .as_ref()
            .map_or(&[], |n| n.servers.as_slice())
    }
}
