//! Windows VPNv2 ProfileXML: typed model, validation, connection plan and profile store.
//!
//! A profile arrives as plain ProfileXML, as the XML-escaped string devicecert.ps1 produces, or
//! inside an MDM SyncML message; [`ParsedProfile::parse`] reads all three, keeping positions in
//! the original file. [`ParsedProfile::validate`] applies the documented rules, [`plan::plan`]
//! turns a valid profile into what the agent will do, and [`store`] keeps profiles on disk (the
//! only module here that touches files).

pub mod error;
pub mod model;
pub mod parse;
pub mod plan;
pub mod serialize;
pub mod store;
mod text;
pub mod validate;

pub use error::{ErrorKind, Pos, ProfileError, ProfileErrors, ProfileWarning, WarningKind};
pub use model::*;
pub use parse::{CspUri, ParsedProfile, SourceForm, Spans};
pub use validate::check_profile_name;
