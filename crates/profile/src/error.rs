//! Diagnostics: every error and warning names the file, the line and column and the element.

use std::fmt;

/// A 1-based line and column (columns count characters, like roxmltree's `TextPos`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

/// Why a profile was refused. Each documented rule has its own variant so callers and tests can
/// match on the rule rather than on message text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("file is not valid UTF-8 or UTF-16 text")]
    Encoding,
    #[error("malformed XML: {0}")]
    Xml(String),
    #[error(
        "the document is <{found}>, expected <VPNProfile>, <SyncML> or an escaped &lt;VPNProfile&gt;"
    )]
    WrongRoot { found: String },
    #[error("unknown element <{name}> inside <{parent}>")]
    UnknownElement { name: String, parent: String },
    #[error("<{name}> may appear only once inside <{parent}>")]
    DuplicateElement { name: String, parent: String },
    #[error("required element <{name}> is missing")]
    MissingElement { name: String },
    #[error("<{name}> must contain text, not child elements")]
    UnexpectedChildElements { name: String },
    #[error("\"{value}\" is not a boolean (expected true or false)")]
    InvalidBool { value: String },
    #[error("\"{value}\" is not a number in {min}..={max}")]
    InvalidNumber { value: String, min: u64, max: u64 },
    #[error("\"{value}\" is not one of: {allowed}")]
    InvalidValue {
        value: String,
        allowed: &'static str,
    },
    #[error("\"{value}\" is not an IP address")]
    InvalidAddress { value: String },
    #[error("\"{value}\" is not a valid DNS name")]
    InvalidDnsName { value: String },
    #[error("\"{value}\" is not a valid server (expected host or host;FriendlyName)")]
    InvalidServer { value: String },
    #[error("\"{value}\" is not a valid port range list (expected e.g. 80,1000-2000)")]
    InvalidPortRange { value: String },
    #[error("invalid profile name \"{value}\": {why}")]
    InvalidProfileName { value: String, why: &'static str },
    #[error("the profile has no <NativeProfile>: aovpn only runs the built-in IKEv2 client")]
    MissingNativeProfile,
    #[error(
        "protocol {protocol} is not supported: aovpn speaks IKEv2 only (set <NativeProtocolType>IKEv2</NativeProtocolType>)"
    )]
    UnsupportedProtocol { protocol: String },
    #[error("<ProtocolList> names no Ikev2 entry: aovpn speaks IKEv2 only")]
    ProtocolListWithoutIkev2,
    #[error(
        "a device tunnel requires <NativeProtocolType>IKEv2</NativeProtocolType>, found {found}"
    )]
    DeviceTunnelRequiresIkev2 { found: String },
    #[error("a device tunnel requires <MachineMethod>Certificate</MachineMethod>")]
    DeviceTunnelRequiresMachineCertificate,
    #[error(
        "a device tunnel requires <RoutingPolicyType>SplitTunnel</RoutingPolicyType> (ForceTunnel is not supported)"
    )]
    DeviceTunnelRequiresSplitTunnel,
    #[error("a device tunnel must be a device-scope profile, not user scope")]
    DeviceTunnelRequiresDeviceScope,
    #[error(
        "only one device tunnel may exist per machine; \"{existing}\" is already one (remove it first)"
    )]
    SecondDeviceTunnel { existing: String },
    #[error("the LockDown profile \"{existing}\" forbids adding other profiles (remove it first)")]
    LockDownProfileExists { existing: String },
    #[error("<LockDown> is allowed only in device-scope profiles")]
    LockDownRequiresDeviceScope,
    #[error("<Authentication> must contain <UserMethod> or <MachineMethod>")]
    MissingAuthenticationMethod,
    #[error("<Authentication> must contain either <UserMethod> or <MachineMethod>, not both")]
    ConflictingAuthenticationMethods,
    #[error("<UserMethod>MSChapv2</UserMethod> is not available with IKEv2 (use EAP)")]
    MsChapV2NotForIkev2,
    #[error("<UserMethod>EAP</UserMethod> requires <Eap><Configuration>")]
    EapWithoutConfiguration,
    #[error(
        "EAP method {found} is not supported: aovpn authenticates users with EAP-TLS (type 13) only"
    )]
    UnsupportedEapMethod { found: String },
    #[error(
        "TrustedRootCA {found:?} is not a certificate thumbprint (40 hexadecimal digits, SHA-1)"
    )]
    BadTrustedRootCa { found: String },
    #[error(
        "<CryptographySuite> is missing <{field}>: Windows proposes exactly the configured set, so every field is needed"
    )]
    IncompleteCryptographySuite { field: &'static str },
    #[error(
        "AuthenticationTransformConstants {integrity} must pair with CipherTransformConstants {expected}, found {cipher}"
    )]
    GcmMismatch {
        integrity: String,
        cipher: String,
        expected: String,
    },
    #[error("algorithm {value} is not supported by aovpn ({why})")]
    UnsupportedAlgorithm { value: String, why: &'static str },
    #[error("PrefixSize {prefix} is out of range for an {family} address (max {max})")]
    PrefixSizeOutOfRange {
        prefix: u8,
        family: &'static str,
        max: u8,
    },
    #[error("<ExclusionRoute>true</ExclusionRoute> works only with SplitTunnel")]
    ExclusionRouteRequiresSplitTunnel,
    #[error("port ranges are allowed only with Protocol 6 (TCP) or 17 (UDP)")]
    PortRangesRequireTcpOrUdp,
    #[error(
        "per-application traffic filters cannot be enforced on Linux; the profile is refused rather than run more open than written"
    )]
    AppFilterNotSupported,
    #[error(
        "Claims (Windows security descriptors) cannot be enforced on Linux; the profile is refused rather than run more open than written"
    )]
    ClaimsFilterNotSupported,

    #[error("SyncML document has no VPNv2 .../ProfileXML item")]
    SyncMlWithoutProfile,
    #[error("SyncML document carries more than one VPNv2 ProfileXML item")]
    SyncMlMultipleProfiles,
    #[error(
        "per-node VPNv2 setting {uri} is not supported; deliver the whole profile as .../ProfileXML"
    )]
    SyncMlPerNodeSetting { uri: String },
    #[error("the SyncML URI says {uri_scope} scope but {requested} scope was requested")]
    ScopeConflict {
        uri_scope: &'static str,
        requested: &'static str,
    },
}

/// Things that are valid on Windows but that aovpn keeps without acting on them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WarningKind {
    #[error("<{name}> has no meaning on Linux; kept and ignored")]
    WindowsOnly { name: String },
    #[error("{0}")]
    Ignored(&'static str),
    /// Meaningful on Linux too, but aovpn does not do it (yet): the plan says so as well.
    #[error("not applied on Linux: {0}")]
    NotApplied(&'static str),
}

/// One error, located in the file it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileError {
    pub file: String,
    pub pos: Pos,
    /// Path of the element, e.g. `VPNProfile/Route[2]/PrefixSize` (list indexes count from 1).
    pub element: String,
    pub kind: ErrorKind,
}

impl fmt::Display for ProfileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.pos.line, self.pos.col)?;
        if !self.element.is_empty() {
            write!(f, "{}: ", self.element)?;
        }
        write!(f, "{}", self.kind)
    }
}

impl std::error::Error for ProfileError {}

/// One warning, located like an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileWarning {
    pub file: String,
    pub pos: Pos,
    pub element: String,
    pub kind: WarningKind,
}

impl fmt::Display for ProfileWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: warning: ",
            self.file, self.pos.line, self.pos.col
        )?;
        if !self.element.is_empty() {
            write!(f, "{}: ", self.element)?;
        }
        write!(f, "{}", self.kind)
    }
}

/// All errors of one document, in file order. `Display` prints one `FILE:LINE:COL: message` per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileErrors(pub Vec<ProfileError>);

impl fmt::Display for ProfileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProfileErrors {}

impl ProfileErrors {
    /// The error kinds, for tests and callers that branch on the rule.
    pub fn kinds(&self) -> Vec<&ErrorKind> {
        self.0.iter().map(|e| &e.kind).collect()
    }
}
