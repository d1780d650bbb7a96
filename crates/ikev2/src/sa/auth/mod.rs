//! IKE_AUTH for both roles: identities, certificates, AUTH signatures, CP, the first Child
//! SA with TS narrowing and its keys.
//!
//! [`signature`] makes and checks the AUTH payload, [`initiator`] and [`responder`] run the
//! exchange for each role (EAP included), [`child`] negotiates the first Child SA.

use std::time::Instant;

use crate::event::IkeSaInfo;
use crate::sa::{IkeSa, Role};

mod child;
mod initiator;
mod responder;
mod signature;

impl IkeSa {
    /// What [`crate::Event::IkeSaEstablished`] reports; `None` if the peer is not
    /// authenticated yet (no identity, chain or AUTH method recorded).
    fn established_info(&self, subject: String, now: Instant) -> Option<IkeSaInfo> {
        Some(IkeSaInfo {
            spi_i: self.spi_i,
            spi_r: self.spi_r,
            initiator: self.role == Role::Initiator,
            peer_id: self.peer.id.clone()?,
            peer_subject: subject,
            peer_chain: self.peer.chain.clone()?,
            peer_auth_method: self.peer.auth_method?,
            initial_contact: self.peer.initial_contact,
            algorithms: self.keys.as_ref()?.algs,
            local: self.path.local,
            remote: self.path.remote,
            nat_detected: self.nat_detected,
            eap_tls: self.peer.eap_tls.clone(),
            group: self.peer.policy.as_ref().map(|p| p.group.clone()),
            handshake: self.started.map_or(std::time::Duration::ZERO, |t| {
                now.saturating_duration_since(t)
            }),
        })
    }
}
