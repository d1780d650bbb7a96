//! Windows VPNv2 ProfileXML: typed model, validation, connection plan, client packages.
//!
//! A profile arrives as plain ProfileXML, as the XML-escaped string devicecert.ps1 produces, or
//! inside an MDM SyncML message; [`ParsedProfile::parse`] reads all three, keeping positions in
//! the original file. [`ParsedProfile::validate`] applies the documented rules, [`plan::plan`]
//! turns a valid profile into what the agent will do. [`vpn_settings`] and [`client_package`] read
//! and write the VPN client configuration package (Azure's zip and ours) as bytes. Nothing here
//! touches files: the agent's `profile_store` keeps profiles on disk.
//!
//! May depend on: nothing of ours (a leaf, pure).
//! Start reading: `parse.rs`, `validate.rs`, `plan.rs`.

pub mod client_package;
pub mod error;
pub mod model;
pub mod parse;
pub mod plan;
pub mod serialize;
mod text;
pub mod validate;
pub mod vpn_settings;

pub use error::{ErrorKind, Pos, ProfileError, ProfileErrors, ProfileWarning, WarningKind};
pub use model::*;
pub use parse::{CspUri, ParsedProfile, SourceForm, Spans};
pub use validate::check_profile_name;
