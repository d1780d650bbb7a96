//! What the lab hands its daemons: the two VPNv2 profiles and the corporate DNS zone.

use crate::{APP_HOST, CORP_DNS, CORP_DOMAIN, GATEWAY_NAME, MGMT_HOSTS, state};

/// The corporate DNS server: the zone with the lab's hosts, updatable with `key`.
pub(crate) fn corp_dns(key: String) -> labnet::bind::BindConfig {
    labnet::bind::BindConfig {
        dir: state().join("corp-dns"),
        listen: CORP_DNS.into(),
        zone: CORP_DOMAIN.into(),
        records: vec![
            ("mgmt".into(), MGMT_HOSTS[0].into()),
            ("app".into(), APP_HOST.into()),
        ],
        key,
    }
}

/// The seed document's device-tunnel profile, with the lab's gateway and management hosts.
pub(crate) fn device_profile() -> String {
    format!(
        r#"<VPNProfile>
  <NativeProfile>
<Servers>{GATEWAY_NAME}</Servers>
<NativeProtocolType>IKEv2</NativeProtocolType>
<Authentication>
  <MachineMethod>Certificate</MachineMethod>
</Authentication>
<RoutingPolicyType>SplitTunnel</RoutingPolicyType>
 <!-- disable the addition of a class based route for the assigned IP address on the VPN interface -->
<DisableClassBasedDefaultRoute>true</DisableClassBasedDefaultRoute>
  </NativeProfile>
  <!-- use host routes(/32) to prevent routing conflicts -->
  <Route>
<Address>{}</Address>
<PrefixSize>32</PrefixSize>
  </Route>
  <Route>
<Address>{}</Address>
<PrefixSize>32</PrefixSize>
  </Route>
<!-- need to specify always on = true -->
  <AlwaysOn>true</AlwaysOn>
<!-- new node to specify that this is a device tunnel -->
 <DeviceTunnel>true</DeviceTunnel>
<!--new node to register client IP address in DNS to enable manage out -->
<RegisterDNS>true</RegisterDNS>
</VPNProfile>
"#,
        MGMT_HOSTS[0], MGMT_HOSTS[1]
    )
}

/// A user-tunnel profile for the whole network behind the gateway.
pub(crate) fn user_profile() -> String {
    format!(
        r#"<VPNProfile>
  <AlwaysOn>true</AlwaysOn>
  <DnsSuffix>corp.aolab.example</DnsSuffix>
  <DomainNameInformation>
    <DomainName>.corp.aolab.example</DomainName>
    <DnsServers>10.1.0.53</DnsServers>
  </DomainNameInformation>
  <NativeProfile>
    <Servers>{GATEWAY_NAME};aolab gateway</Servers>
    <NativeProtocolType>IKEv2</NativeProtocolType>
    <Authentication>
      <UserMethod>Eap</UserMethod>
      <Eap>
        <Configuration>
          <EapHostConfig xmlns="http://www.microsoft.com/provisioning/EapHostConfig">
            <EapMethod>
              <Type xmlns="http://www.microsoft.com/provisioning/EapCommon">13</Type>
              <VendorId xmlns="http://www.microsoft.com/provisioning/EapCommon">0</VendorId>
              <VendorType xmlns="http://www.microsoft.com/provisioning/EapCommon">0</VendorType>
              <AuthorId xmlns="http://www.microsoft.com/provisioning/EapCommon">0</AuthorId>
            </EapMethod>
            <Config xmlns="http://www.microsoft.com/provisioning/EapHostConfig">
              <Eap xmlns="http://www.microsoft.com/provisioning/BaseEapConnectionPropertiesV1">
                <Type>13</Type>
                <EapType xmlns="http://www.microsoft.com/provisioning/EapTlsConnectionPropertiesV1">
                  <CredentialsSource><CertificateStore><SimpleCertSelection>true</SimpleCertSelection></CertificateStore></CredentialsSource>
                  <ServerValidation><DisableUserPromptForServerValidation>true</DisableUserPromptForServerValidation><ServerNames></ServerNames></ServerValidation>
                  <DifferentUsername>false</DifferentUsername>
                </EapType>
              </Eap>
            </Config>
          </EapHostConfig>
        </Configuration>
      </Eap>
    </Authentication>
    <RoutingPolicyType>SplitTunnel</RoutingPolicyType>
    <DisableClassBasedDefaultRoute>true</DisableClassBasedDefaultRoute>
  </NativeProfile>
  <Route>
    <Address>10.1.0.0</Address>
    <PrefixSize>16</PrefixSize>
  </Route>
</VPNProfile>
"#
    )
}
