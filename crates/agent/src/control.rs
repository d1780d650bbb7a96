//! The agent's control socket protocol: one JSON object per line over a Unix stream socket
//! (default [`DEFAULT_SOCKET`]), like rasdial talking to RasMan. Each request is checked against
//! the caller's credentials as the kernel reports them (see `service`):
//!
//! - root and members of the configured admin group see and control every tunnel;
//! - any other user sees their own user tunnels and the device tunnel, controls only their own;
//! - a user's key helper registers on the same socket ([`Request::RegisterHelper`]), then the
//!   connection carries signature requests from the agent and profile updates from the helper.

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::connection::ConnectionStatus;
use crate::supervisor::State;

/// Where the agent listens unless configured otherwise.
pub const DEFAULT_SOCKET: &str = "/run/aovpn/agent.sock";

/// Longest line either side accepts (a helper's profiles and certificate chain fit easily).
pub use netio::control::MAX_LINE;

/// Most profiles one user's helper may hand over.
pub const MAX_USER_PROFILES: usize = 64;

/// A profile as a helper hands it over: its store name and the ProfileXML text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileText {
    pub name: String,
    pub xml: String,
}

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Every profile the caller may see, with its state.
    List,
    /// One profile's (or every visible profile's) state and tunnel details.
    Status {
        name: Option<String>,
        /// For administrators: the uid whose profile is meant.
        user: Option<u32>,
    },
    /// Connect a profile (ends a disconnect hold).
    Connect { name: String, user: Option<u32> },
    /// Disconnect a profile; an AlwaysOn one stays down until connected again.
    Disconnect { name: String, user: Option<u32> },
    /// Read the system profile store again now (it is also rescanned every few seconds).
    Reload,
    /// The caller is its user's key helper: it holds the user's certificate chain and key, and
    /// hands over the user's profiles. The connection stays open in helper mode.
    RegisterHelper {
        chain_pem: String,
        profiles: Vec<ProfileText>,
    },
}

/// The agent's answer to a [`Request`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<ProfileView>,
}

impl Reply {
    pub fn ok() -> Self {
        Self {
            ok: true,
            ..Self::default()
        }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Self {
            ok: false,
            error: Some(message.into()),
            ..Self::default()
        }
    }
}

/// One profile as a client sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileView {
    pub name: String,
    /// `device` or the owner's user name (or `uid N` without a passwd entry).
    pub owner: String,
    pub uid: Option<u32>,
    pub device_tunnel: bool,
    pub always_on: bool,
    pub state: State,
    /// The tunnel's details while it runs (status requests only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<ConnectionStatus>,
    /// Recent attempts, failed rounds, the trusted-network match (status requests only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<crate::supervisor::History>,
}

/// Messages on a helper connection, agent to helper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ToHelper {
    /// Sign `data` (base64) with the user's key using `scheme` (a `SignatureScheme` name).
    Sign {
        id: u64,
        scheme: String,
        data: String,
    },
}

/// Messages on a helper connection, helper to agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum FromHelper {
    /// The answer to [`ToHelper::Sign`]: a base64 signature or why there is none.
    Signature {
        id: u64,
        #[serde(default)]
        signature: Option<String>,
        #[serde(default)]
        error: Option<String>,
    },
    /// The user's profiles changed (the whole set).
    Profiles { profiles: Vec<ProfileText> },
}

pub use netio::control::read_line;

/// One request, one reply, over a fresh connection (what the CLI does).
pub fn call(socket: &Path, request: &Request) -> io::Result<Reply> {
    netio::control::call(socket, request, "the agent (is `aovpn agent` running?)")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_a_stable_wire_form() {
        let r = Request::Disconnect {
            name: "Corp".into(),
            user: None,
        };
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(text, r#"{"op":"disconnect","name":"Corp","user":null}"#);
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), r);
        let list: Request = serde_json::from_str(r#"{"op":"list"}"#).unwrap();
        assert_eq!(list, Request::List);
        assert!(serde_json::from_str::<Request>(r#"{"op":"format_disk"}"#).is_err());
    }
}
