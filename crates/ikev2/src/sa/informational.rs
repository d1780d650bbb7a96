//! INFORMATIONAL requests from the peer: Delete, liveness, AUTHENTICATION_FAILED, MOBIKE.

use ike_wire::{Delete, ExchangeType, NotifyType, Payload, Payloads, ProtocolId};

use super::IkeSa;
use crate::datagram::Path;
use crate::event::CloseReason;
use crate::failure::FailureReason;

impl IkeSa {
    pub(super) fn process_informational(
        &mut self,
        message_id: u32,
        path: Path,
        payloads: &[Payload],
    ) {
        if payloads.notify(NotifyType::AUTHENTICATION_FAILED).is_some() {
            // The initiator did not accept our AUTH.
            self.send_response(ExchangeType::INFORMATIONAL, message_id, &[]);
            let n = NotifyType::AUTHENTICATION_FAILED;
            self.fail(FailureReason::PeerNotify(n), None, Some(n));
            return;
        }
        let mut reply = self.mobility_reply(path, payloads);
        let mut ike_deleted = false;
        for p in payloads {
            let Payload::Delete(d) = p else {
                continue;
            };
            if d.protocol == ProtocolId::IKE {
                ike_deleted = true;
            } else if d.protocol == ProtocolId::ESP {
                for spi_in in self.children.deleted_by_peer(&d.spis) {
                    // Our own Delete of it may have crossed this one: RFC 7296 1.4.1 still
                    // wants it in the reply.
                    reply.push(Payload::Delete(Delete::esp(&[spi_in])));
                    self.child_gone(spi_in);
                }
            }
        }
        if ike_deleted {
            self.send_response(ExchangeType::INFORMATIONAL, message_id, &[]);
            self.close(CloseReason::PeerDelete);
            return;
        }
        self.send_response(ExchangeType::INFORMATIONAL, message_id, &reply);
    }
}
