//! The message window of an IKE SA (RFC 7296 2.1-2.3, window size 1 both ways): our one
//! outstanding request and its retransmissions, the one request of the peer we take next,
//! our last response for the peer's retransmissions of its request, and the reassembly of
//! fragmented messages (RFC 7383).

use std::time::{Duration, Instant};

use ike_wire::{FragmentPosition, PayloadType, Reassembler, ReassemblyLimits, ReassemblyStatus};

use super::RequestKind;
use crate::config::RetransmitConfig;

/// Our outstanding request.
#[derive(Debug)]
struct Pending {
    message_id: u32,
    kind: RequestKind,
    datagrams: Vec<Vec<u8>>,
    /// Transmissions so far, the first one included.
    sent: u32,
    deadline: Instant,
}

/// What our outstanding request needs when the timer runs.
#[derive(Debug)]
pub(super) enum Retransmission {
    /// Nothing: no request, or its time has not come.
    NotDue,
    /// All tries are used up; the request of this kind is given up.
    Exhausted(RequestKind),
    /// Send these datagrams again.
    Resend(Vec<Vec<u8>>),
}

/// Message IDs, retransmissions, the cached response and fragment reassembly of one IKE SA
/// (or of the one a rekey replaced).
#[derive(Debug)]
pub(super) struct MessageWindow {
    next_request_id: u32,
    pending: Option<Pending>,
    expected_request_id: u32,
    /// Our response to the peer's last request, with its message ID.
    cached_response: Option<(u32, Vec<Vec<u8>>)>,
    reassembler: Reassembler,
}

impl MessageWindow {
    /// A window at message ID 0 both ways, reassembling within `limits`.
    pub(super) fn new(limits: ReassemblyLimits) -> Self {
        Self {
            next_request_id: 0,
            pending: None,
            expected_request_id: 0,
            cached_response: None,
            reassembler: Reassembler::new(limits),
        }
    }

    /// Starts over for the IKE SA a rekey put in place of ours (message IDs from 0, RFC 7296
    /// 2.18) and returns the replaced SA's window, which still answers the peer's
    /// retransmissions there. An outstanding request of ours stays in this window.
    pub(super) fn restart(&mut self) -> Self {
        let pending = self.pending.take();
        let replaced = std::mem::replace(self, Self::new(ReassemblyLimits::default()));
        self.pending = pending;
        replaced
    }

    // ---------------------------------------------------------------- our requests

    /// The message ID our next request takes.
    pub(super) fn next_request_id(&self) -> u32 {
        self.next_request_id
    }

    /// Takes the next message ID for a request that is sent once and not awaited.
    #[cfg(any(test, fuzzing))]
    pub(super) fn take_request_id(&mut self) -> u32 {
        let id = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1);
        id
    }

    /// `datagrams`, our request `message_id`, went out at `now`: it is retransmitted from
    /// `now + first_timeout` on until answered, and the next request takes the next ID.
    pub(super) fn start_request(
        &mut self,
        now: Instant,
        message_id: u32,
        kind: RequestKind,
        datagrams: Vec<Vec<u8>>,
        first_timeout: Duration,
    ) {
        self.next_request_id = message_id.wrapping_add(1);
        self.pending = Some(Pending {
            message_id,
            kind,
            datagrams,
            sent: 1,
            deadline: now + first_timeout,
        });
    }

    /// A request of ours is outstanding (window size 1: no other may start).
    pub(super) fn request_outstanding(&self) -> bool {
        self.pending.is_some()
    }

    /// A response with `message_id` answers our outstanding request.
    pub(super) fn awaits(&self, message_id: u32) -> bool {
        self.pending
            .as_ref()
            .is_some_and(|p| p.message_id == message_id)
    }

    /// Our outstanding request is over (answered, or the SA is going): returns its kind.
    pub(super) fn take_request(&mut self) -> Option<RequestKind> {
        self.pending.take().map(|p| p.kind)
    }

    /// When the outstanding request is retransmitted next.
    pub(super) fn retransmit_deadline(&self) -> Option<Instant> {
        self.pending.as_ref().map(|p| p.deadline)
    }

    /// Retransmits the outstanding request when due, with exponential backoff. `path_lost`:
    /// there is no path to the peer, so the request never runs out of tries (the caller
    /// bounds the outage); `peer_lost_sa`: the peer hinted that it lost the SA, so the wait
    /// after this try is short.
    pub(super) fn retransmission(
        &mut self,
        now: Instant,
        policy: RetransmitConfig,
        path_lost: bool,
        peer_lost_sa: bool,
    ) -> Retransmission {
        let Some(p) = self.pending.as_mut() else {
            return Retransmission::NotDue;
        };
        if p.deadline > now {
            return Retransmission::NotDue;
        }
        if p.sent >= policy.tries && !path_lost {
            let kind = p.kind;
            self.pending = None;
            return Retransmission::Exhausted(kind);
        }
        let shift = p.sent.min(16);
        let timeout = if peer_lost_sa {
            // One short last chance for the peer to prove it still has the SA.
            policy.initial.saturating_mul(2)
        } else {
            policy
                .initial
                .saturating_mul(1u32 << shift)
                .min(policy.max_timeout)
        };
        p.sent = (p.sent + 1).min(policy.tries);
        p.deadline = now + timeout;
        Retransmission::Resend(p.datagrams.clone())
    }

    /// The path is back: the outstanding request gets one more full try, at once.
    pub(super) fn one_more_try(&mut self, now: Instant, tries: u32) {
        if let Some(p) = self.pending.as_mut() {
            p.sent = p.sent.min(tries.saturating_sub(1));
            p.deadline = now;
        }
    }

    /// The outstanding request's next transmission, due now, is its last.
    pub(super) fn last_try_now(&mut self, now: Instant, tries: u32) {
        if let Some(p) = self.pending.as_mut() {
            p.sent = p.sent.max(tries.saturating_sub(1));
            p.deadline = now;
        }
    }

    // ---------------------------------------------------------------- the peer's requests

    /// `message_id` is the peer's next request.
    pub(super) fn expects_request(&self, message_id: u32) -> bool {
        message_id == self.expected_request_id
    }

    /// The peer's next request was taken (answered or refused): the one after it is next.
    pub(super) fn accept_request(&mut self) {
        self.expected_request_id = self.expected_request_id.wrapping_add(1);
    }

    /// Our last response answered the peer's request `message_id`: another copy of that
    /// request is a retransmission.
    pub(super) fn has_answered(&self, message_id: u32) -> bool {
        self.cached_response
            .as_ref()
            .is_some_and(|(id, _)| *id == message_id)
    }

    /// Keeps `datagrams`, our response to the peer's request `message_id`, for its
    /// retransmissions.
    pub(super) fn cache_response(&mut self, message_id: u32, datagrams: Vec<Vec<u8>>) {
        self.cached_response = Some((message_id, datagrams));
    }

    /// Our last response, to send again.
    pub(super) fn cached_response(&self) -> Option<&[Vec<u8>]> {
        self.cached_response.as_ref().map(|(_, d)| d.as_slice())
    }

    // ---------------------------------------------------------------- fragments

    /// Adds a decrypted fragment; the whole message's first payload type and payload chain
    /// once its last fragment is in.
    pub(super) fn reassemble(
        &mut self,
        message_id: u32,
        position: FragmentPosition,
        first_payload: PayloadType,
        plaintext: &[u8],
    ) -> Option<(PayloadType, Vec<u8>)> {
        match self
            .reassembler
            .insert(message_id, position, first_payload, plaintext)
        {
            Ok(ReassemblyStatus::Complete(r)) => Some((r.first_payload, r.chain)),
            _ => None,
        }
    }

    /// Reassembles within `limits` from now on (fragments held so far are dropped).
    pub(super) fn set_reassembly_limits(&mut self, limits: ReassemblyLimits) {
        self.reassembler = Reassembler::new(limits);
    }
}
