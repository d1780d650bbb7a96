//! The IKE SA's keys, from IKE_SA_INIT (and again from each IKE SA rekey) on: the algorithms
//! negotiated, the secrets derived (SK_d for Child SAs and rekeys, SK_pi/SK_pr for AUTH) and
//! the two SK ciphers that protect its messages. They come and go together.

use ipsec_crypto::{IkeSaKeys, SharedSecret, SkCipher};

use super::IkeSa;
use super::error::SaError;
use crate::proposal::IkeAlgorithms;

/// What IKE_SA_INIT (or a rekey) keys an IKE SA with.
#[derive(Debug)]
pub(super) struct SaKeys {
    pub(super) algs: IkeAlgorithms,
    pub(super) secrets: IkeSaKeys,
    /// Protects what we send.
    pub(super) sk_out: SkCipher,
    /// Opens what the peer sends.
    pub(super) sk_in: SkCipher,
}

/// The nonces and SPIs a key derivation covers.
pub(super) struct Exchanged<'a> {
    pub(super) ni: &'a [u8],
    pub(super) nr: &'a [u8],
    pub(super) spis: (u64, u64),
    /// We are the original initiator of the IKE SA these keys are for.
    pub(super) initiator: bool,
}

impl IkeSa {
    /// The SA's keys; they exist from IKE_SA_INIT on.
    pub(super) fn keys(&self) -> Result<&SaKeys, SaError> {
        self.keys.as_ref().ok_or(SaError::internal("no keys"))
    }
}

impl SaKeys {
    /// Keys of a new IKE SA (RFC 7296 2.14).
    pub(super) fn derive(
        algs: IkeAlgorithms,
        shared: &[u8],
        x: &Exchanged<'_>,
    ) -> Result<Self, SaError> {
        let suite = algs.suite();
        let secrets = IkeSaKeys::derive(
            &suite,
            shared,
            x.ni,
            x.nr,
            &x.spis.0.to_be_bytes(),
            &x.spis.1.to_be_bytes(),
        )?;
        Self::with_secrets(algs, secrets, x.initiator)
    }

    /// Keys of the IKE SA that replaces this one (RFC 7296 2.18: from this SA's SK_d).
    pub(super) fn rekeyed(
        &self,
        algs: IkeAlgorithms,
        shared: &SharedSecret,
        x: &Exchanged<'_>,
    ) -> Result<Self, SaError> {
        let secrets = IkeSaKeys::derive_rekey(
            self.algs.prf,
            self.secrets.sk_d.as_bytes(),
            &algs.suite(),
            shared.as_bytes(),
            x.ni,
            x.nr,
            &x.spis.0.to_be_bytes(),
            &x.spis.1.to_be_bytes(),
        )?;
        Self::with_secrets(algs, secrets, x.initiator)
    }

    fn with_secrets(
        algs: IkeAlgorithms,
        secrets: IkeSaKeys,
        initiator: bool,
    ) -> Result<Self, SaError> {
        let (sk_out, sk_in) = secrets.sk_ciphers(&algs.suite(), initiator)?;
        Ok(Self {
            algs,
            secrets,
            sk_out,
            sk_in,
        })
    }
}
